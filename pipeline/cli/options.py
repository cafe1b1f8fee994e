"""Command-line options declared once, on the config dataclass field they fill.

A field set by a flag says so in its metadata (``option``): the flag, help, argparse type/action/choices/metavar
and, when the flag's units differ, ``to_field``. ``add_options`` adds the flags (one group per config) and
``build`` makes the config from the parsed namespace; a field may be ``derived`` from its config's flags, and a
nested config with options (``SiteAccessConfig.breaker``) joins the same group. ``build`` reads only its own
config's flags, so a stage cannot read another's; shared options live in one config ``run`` hands to each
(``SiteAccessConfig``). Flags keep argparse's own ``dest``, so help and errors read as hand-written ones.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

_OPTION = "pipeline.option"
_DERIVED = "pipeline.derived"
_NESTED = "pipeline.nested"
Parsed = Mapping[str, Any]  # flag ("--clip-fps") -> its parsed value, for the flags of one config


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag: what ``add_argument`` gets, and how its value becomes the field's."""

    name: str  # "--clip-size"
    argparse_kwargs: dict[str, Any]  # help, type, action, choices, metavar, default, required, ...
    to_field: Callable[[Any, Parsed], Any] | None = None  # (parsed value, all flags of the config) -> field value

    @property
    def dest(self) -> str:
        return self.argparse_kwargs.get("dest") or self.name.lstrip("-").replace("-", "_")


def option(flag: str, help: str, *, default: Any = dataclasses.MISSING,
           default_factory: Any = dataclasses.MISSING, flag_default: Any = dataclasses.MISSING,
           to_field: Callable[[Any, Parsed], Any] | None = None, **argparse_kwargs: Any) -> Any:
    """A dataclass field set by ``flag``. The flag's default is the field's unless ``flag_default`` says
    otherwise (a flag in seconds filling a field in frames); ``to_field`` converts the parsed value."""
    kwargs = dict(argparse_kwargs, help=help)
    action = kwargs.get("action")
    if not kwargs.get("required"):
        if flag_default is not dataclasses.MISSING:
            kwargs["default"] = flag_default
        elif action in ("store_true", "store_false"):  # argparse's own default (False / True) must be the field's
            if default is not dataclasses.MISSING and default != (action == "store_false"):
                raise ValueError(f"{flag}: a {action} flag cannot fill a field defaulting to {default!r}")
        elif default is not dataclasses.MISSING:
            kwargs["default"] = default
        else:
            kwargs["default"] = None
    meta = {_OPTION: Flag(flag, kwargs, to_field)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def derived(from_flags: Callable[[Parsed], Any], *, default: Any = dataclasses.MISSING,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field without a flag of its own, computed from the flags of its config (``build``)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_DERIVED: from_flags})


def nested(cls: type) -> Any:
    """A dataclass field holding a ``cls`` config whose flags belong to the enclosing config (its group)."""
    return dataclasses.field(default_factory=cls, metadata={_NESTED: cls})


def flags(cls: type) -> list[Flag]:
    """The flags of config class ``cls`` and of the option-bearing configs nested in it, in field order."""
    found = []
    for field in dataclasses.fields(cls):
        if _OPTION in field.metadata:
            found.append(field.metadata[_OPTION])
        elif _nested(field) is not None:
            found.extend(flags(_nested(field)))
    return found


def add_options(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """Add ``cls``'s flags to ``parser``: in an argument group named ``title``, or ungrouped when None."""
    target = parser.add_argument_group(title) if title is not None else parser
    for flag in flags(cls):
        target.add_argument(flag.name, **flag.argparse_kwargs)


def build(cls: type, ns: argparse.Namespace, **overrides: Any) -> Any:
    """The ``cls`` config for a namespace parsed by a parser ``add_options(parser, cls)`` built; fields in
    ``overrides`` are taken as given (a value another config decides, e.g. the shared ``site``)."""
    return _build(cls, {flag.name: getattr(ns, flag.dest) for flag in flags(cls)}, overrides)


def _build(cls: type, parsed: Parsed, overrides: Mapping[str, Any]) -> Any:
    values = dict(overrides)
    for field in dataclasses.fields(cls):
        if field.name in values:
            continue
        if _OPTION in field.metadata:
            flag = field.metadata[_OPTION]
            value = parsed[flag.name]
            values[field.name] = flag.to_field(value, parsed) if flag.to_field else value
        elif _DERIVED in field.metadata:
            values[field.name] = field.metadata[_DERIVED](parsed)
        elif _nested(field) is not None:
            values[field.name] = _build(_nested(field), parsed, {})
    return cls(**values)


def _nested(field: dataclasses.Field) -> type | None:
    return field.metadata.get(_NESTED)
