"""The files monitoring/ generates from code (rules, dashboards, catalogue.md, the Kubernetes
manifests): one YAML style for all of them, and one writer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


class BlockDumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the YAML reads like PromQL."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


BlockDumper.add_representer(str, _str)


def to_yaml(doc: Any, header: str) -> str:
    """``doc`` as block YAML in the order given (never wrapped), after ``header``."""
    return header + yaml.dump(doc, Dumper=BlockDumper, sort_keys=False, width=1_000_000)


def write(files: dict[Path, str]) -> int:
    """Write each generated file (creating its folder); the exit status of a ``main``."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
