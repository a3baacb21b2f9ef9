"""Every listening command binds to loopback unless told otherwise.

Read from the real parser (``recoil.cli.build_parser``) and from ``StreamsConfig``:
changing any default bind address to ``0.0.0.0`` (or a default URL to a non-loopback
host) fails here, whatever the integration tests happen to pass on.
"""

from __future__ import annotations

import argparse
import dataclasses
from urllib.parse import urlsplit

import pytest

from recoil.cli import build_parser
from streams.config import StreamsConfig

LOOPBACK = "127.0.0.1"

# (command, option dest) of every address a command binds; kept explicit so that
# renaming or dropping one is noticed here rather than silently unchecked.
BIND_OPTIONS = [
    ("serve", "host"),
    ("worker", "web_host"),
    ("worker", "metrics_host"),
    ("learn", "metrics_host"),
    ("simulate", "metrics_host"),
    ("broker", "host"),
]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # complete(): also the options a command adds only when it is used (recoil learn's)
    return {name: p.complete() for name, p in sub.choices.items()}


def _defaults(command: str) -> dict[str, object]:
    return {a.dest: a.default for a in _subcommands()[command]._actions}


@pytest.mark.parametrize(
    ("command", "dest"), BIND_OPTIONS, ids=[f"{c}.{d}" for c, d in BIND_OPTIONS]
)
def test_each_listening_command_binds_loopback_by_default(command: str, dest: str) -> None:
    defaults = _defaults(command)
    assert dest in defaults, f"recoil {command} has no --{dest.replace('_', '-')} any more"
    assert defaults[dest] == LOOPBACK
    # and parsing a command line without the option gives the same (no set_defaults override)
    required = {"serve": ["--store", "s"], "learn": ["--store", "s"]}
    args = build_parser().parse_args([command, *required.get(command, [])])
    assert getattr(args, dest) == LOOPBACK


def test_no_command_has_a_non_loopback_host_or_url_default() -> None:
    checked = 0
    for command, parser in _subcommands().items():
        for action in parser._actions:
            default = action.default
            if not isinstance(default, str) or not default:
                continue
            if action.dest.endswith("host"):
                assert default == LOOPBACK, f"recoil {command} --{action.dest}: {default}"
                checked += 1
            elif default.startswith(("http://", "https://")):
                host = urlsplit(default).hostname
                assert host == LOOPBACK, f"recoil {command} --{action.dest}: {default}"
                checked += 1
    assert checked >= len(BIND_OPTIONS)


def test_streams_config_binds_loopback_by_default() -> None:
    config = StreamsConfig()
    assert config.web_host == LOOPBACK
    assert config.metrics_host == LOOPBACK
    hosts = {f.name for f in dataclasses.fields(StreamsConfig) if f.name.endswith("host")}
    assert hosts == {"web_host", "metrics_host"}
