# The two commands of the README. Both set everything up on a fresh machine
# (idempotent, venv and caches under ~/.cache/recoil) and then run.
SHELL := /bin/bash
VENV := $(or $(RECOIL_HOME),$(HOME)/.cache/recoil)/venv

.PHONY: demo test lint setup

setup:
	@scripts/setup.sh >/dev/null

demo: setup
	$(VENV)/bin/recoil demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q
