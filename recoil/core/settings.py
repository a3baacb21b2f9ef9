"""Command-line flags derived from a config dataclass: one definition per setting.

A setting is a dataclass field declared with :func:`setting`: its default and its
help text live there, once. From the class, :func:`add_arguments` adds one
argparse option per setting, :func:`from_args` builds the (validated) config from
the parsed arguments, and :func:`to_flags` writes an instance back as the flags
that rebuild it -- what a parent passes to a child process. Fields declared
without :func:`setting` are not on the command line.

How a field becomes a flag:

* ``--name-with-dashes`` (or ``flag=``), dest = the field name, ``type`` from the
  annotation (``int``, ``float``, ``str``, ``Path``; ``X | None`` as ``X``), and
  ``choices`` from a ``Literal``;
* a ``bool`` that defaults to True is ``--no-NAME`` (its help says what turning it
  off does); one that defaults to False is ``--NAME``;
* a ``tuple[str, ...]`` is one comma-separated value (``--arms a,b``);
* ``empty_is_none=True``: the flag's ``''`` means None;
* a field without a default is a required flag, unless ``cli_default`` gives one
  (the command then completes the config, e.g. a directory below another);
* anything else (a nested config, other tuples) needs ``custom=``: a :class:`Custom` that
  adds its own options, reads them back and writes them.

A value the config rejects (``ValueError``, so also ``ConfigError``) comes back as
:class:`ConfigError` naming the flag of each setting the message mentions.

This module imports nothing of recoil but the error type: every part can use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from recoil.core.errors import ConfigError

C = TypeVar("C")
_KEY = "recoil.setting"


@dataclass(frozen=True)
class Custom:
    """How a setting that is not one plain flag reaches the command line."""

    add: Callable[[Any], None]  # (parser or group) -> None: adds its options
    parse: Callable[[argparse.Namespace], object]  # parsed arguments -> the field's value
    flags: Callable[[Any], list[str]]  # the field's value -> the flags that give it back


@dataclass(frozen=True)
class _Setting:
    help: str
    flag: str | None
    empty_is_none: bool
    cli_default: object
    custom: Custom | None
    group: str | None
    argparse: Mapping[str, Any]


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    flag: str | None = None,
    empty_is_none: bool = False,
    cli_default: object = MISSING,
    custom: Custom | None = None,
    group: str | None = None,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field that is also a command-line flag (see the module docstring).

    ``group`` names an argparse argument group to put the flag in; other keyword
    arguments (``metavar``, ``choices``, ``type``) go to ``add_argument`` as they are.
    """
    meta = _Setting(help, flag, empty_is_none, cli_default, custom, group, argparse_kwargs)
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_KEY: meta})
    return dataclasses.field(default=default, metadata={_KEY: meta})


@dataclass(frozen=True)
class _Flag:
    """One setting of a class, resolved: its field, its metadata, its value type."""

    field: dataclasses.Field[Any]
    meta: _Setting
    kind: Any  # int, float, str, Path, bool, _comma_separated, or a tuple of Literal choices

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def default(self) -> object:
        if self.meta.cli_default is not MISSING:
            return self.meta.cli_default
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return MISSING

    @property
    def option(self) -> str:
        if self.meta.flag:
            return self.meta.flag
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.kind is bool and self.default is True else f"--{dashed}"


def _flags(config_class: type, only: Iterable[str] | None = None) -> list[_Flag]:
    """The settings of ``config_class`` (those named in ``only``, when given)."""
    hints = typing.get_type_hints(config_class)
    wanted = None if only is None else set(only)
    found = []
    for f in dataclasses.fields(config_class):
        meta = f.metadata.get(_KEY)
        if meta is not None and (wanted is None or f.name in wanted):
            found.append(_Flag(f, meta, _kind(hints[f.name])))
    if wanted is not None and len(found) != len(wanted):
        unknown = wanted - {f.name for f in found}
        raise TypeError(f"{config_class.__name__} has no settings {sorted(unknown)}")
    return found


def _kind(annotation: Any) -> Any:
    """The flag's value type: ``X | None`` is X, a Literal is its tuple of choices."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (str, ...):
        return _comma_separated
    return annotation


def _comma_separated(text: str) -> tuple[str, ...]:
    """A ``tuple[str, ...]`` setting on the command line: ``a,b,c``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(
    parser: argparse.ArgumentParser,
    config_class: type,
    defaults: Mapping[str, object] | None = None,
    only: Iterable[str] | None = None,
) -> None:
    """One option per setting of ``config_class`` (or of those in ``only``), in field order.

    ``defaults`` replaces a setting's default for this command only.
    """
    # A group another class's settings opened is joined, not opened twice.
    groups: dict[str | None, Any] = {g.title: g for g in parser._action_groups}
    for flag in _flags(config_class, only):
        target: Any = parser
        if flag.meta.group:
            if flag.meta.group not in groups:
                groups[flag.meta.group] = parser.add_argument_group(flag.meta.group)
            target = groups[flag.meta.group]
        if flag.meta.custom is not None:
            flag.meta.custom.add(target)
            continue
        default = (defaults or {}).get(flag.name, flag.default)
        kwargs: dict[str, Any] = {"dest": flag.name, "help": flag.meta.help or None}
        if flag.kind is bool:
            kwargs["action"] = "store_false" if default is True else "store_true"
        else:
            if default is MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = default
            if isinstance(flag.kind, tuple):
                kwargs["choices"] = list(flag.kind)
            elif flag.kind is not str:
                kwargs["type"] = flag.kind
        if flag.meta.flag:  # a flag named otherwise than its field: its metavar too
            kwargs["metavar"] = flag.meta.flag.lstrip("-").replace("-", "_").upper()
        kwargs.update(flag.meta.argparse)
        target.add_argument(flag.option, **kwargs)


def from_args(
    config_class: type[C],
    args: argparse.Namespace,
    only: Iterable[str] | None = None,
    **values: Any,
) -> C:
    """``config_class`` built from the parsed settings; ``values`` add or replace fields.

    ``only``: the settings :func:`add_arguments` was given (the others keep their
    defaults). A value the class rejects raises :class:`ConfigError` naming its flag.
    """
    flags = _flags(config_class, only)
    kwargs: dict[str, Any] = {}
    for flag in flags:
        if flag.name in values:
            continue
        if flag.meta.custom is not None:
            kwargs[flag.name] = flag.meta.custom.parse(args)
            continue
        value = getattr(args, flag.name)
        if flag.meta.empty_is_none and value == "":
            value = None
        kwargs[flag.name] = value
    kwargs.update(values)
    try:
        return config_class(**kwargs)
    except ValueError as exc:
        raise ConfigError(_naming_flags(str(exc), flags)) from None


def _naming_flags(message: str, flags: Iterable[_Flag]) -> str:
    named = [f.option for f in flags if re.search(rf"\b{re.escape(f.name)}\b", message)]
    return f"{message} (set by {', '.join(named)})" if named else message


def to_flags(config: object, exclude: Iterable[str] = ()) -> list[str]:
    """The flags that make :func:`from_args` build ``config`` again (settings only)."""
    skip = set(exclude)
    argv: list[str] = []
    for flag in _flags(type(config)):
        if flag.name in skip:
            continue
        value = getattr(config, flag.name)
        if flag.meta.custom is not None:
            argv += flag.meta.custom.flags(value)
        elif flag.kind is bool:
            if value != flag.default:
                argv.append(flag.option)
        elif value is None:
            if flag.meta.empty_is_none:
                argv.append(f"{flag.option}=")
            elif flag.default is not None:
                raise ValueError(f"{flag.name}=None has no flag ({flag.option} takes a value)")
        else:
            text = ",".join(value) if flag.kind is _comma_separated else str(value)
            argv.append(f"{flag.option}={text}")  # one word: a value may start with '-'
    return argv


def option(config_class: type, name: str) -> str:
    """The flag of setting ``name`` (for messages that tell users what to change)."""
    for flag in _flags(config_class):
        if flag.name == name:
            return flag.option
    raise KeyError(name)


def differing_settings(kept: object, given: object) -> list[str]:
    """The settings where ``given`` differs from ``kept`` (two configs of one class), as
    "--flag KEPT (given GIVEN)": for a message when a saved config wins over the flags."""
    if type(kept) is not type(given):
        raise TypeError(f"{type(kept).__name__} and {type(given).__name__} are not one class")
    return [
        f"{flag.option} {getattr(kept, flag.name)} (given {getattr(given, flag.name)})"
        for flag in _flags(type(kept))
        if getattr(kept, flag.name) != getattr(given, flag.name)
    ]


class CommandParser(argparse.ArgumentParser):
    """A parser that adds some options only when it is used (:meth:`defer`).

    ``recoil`` builds every command's parser at start; a command whose settings live
    in a module with heavy imports (torch) defers them, so that only running that
    command, or asking for its ``--help``, pays for the import.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add)

    def complete(self) -> CommandParser:
        """Add the deferred options now (tests read the options of every command)."""
        while self._deferred:
            self._deferred.pop(0)(self)
        return self

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


def add_command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
    raw: bool = False,
    deferred: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand's parser that runs ``handler``.

    ``raw`` keeps the description's line breaks; ``deferred`` adds options when the
    command is used (:class:`CommandParser`; ``sub`` must make such parsers).
    """
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, formatter_class=formatter
    )
    parser.set_defaults(handler=handler)
    if deferred is not None:
        if not isinstance(parser, CommandParser):
            raise TypeError(
                f"{name}: deferred options need add_subparsers(parser_class=CommandParser)"
            )
        parser.defer(deferred)
    return parser
