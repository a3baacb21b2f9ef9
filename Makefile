# The two commands of the README. Both set everything up on a fresh machine
# (idempotent, venv and caches under ~/.cache/recoil) and then run.
SHELL := /bin/bash
VENV := $(or $(RECOIL_HOME),$(HOME)/.cache/recoil)/venv

.PHONY: demo test lint setup mutation

setup:
	@scripts/setup.sh >/dev/null

demo: setup
	$(VENV)/bin/recoil demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(VENV)/bin/pytest -q --durations=15  # the slowest tests, to keep CI well under 30 minutes

# Mutation testing of the pure modules (docs/testing.md); installs mutmut on first use
# into its own venv. One module at a time: make mutation MODULES=learner/loss.py
mutation: setup
	scripts/mutation.sh $(MODULES)
