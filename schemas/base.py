"""A small base for the records stages exchange: typed dataclasses with a derived pyarrow schema.

Why not plain dicts: every stage boundary is a place where a field can be misspelt or mistyped, so each record
declares its fields once and the pyarrow schema, JSON and Parquet-row (de)serialisation and validation derive
from that. Field types: ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``dict`` (a JSON string in Parquet),
``list[int]``, ``list[str]``, another ``Record`` (an Arrow struct), and ``X | None`` of any of those.

Strings must encode as UTF-8 (JSON admits lone surrogates that do not), so a hostile catalog row is one recorded
bad row at construction, not a crash much later. Every serialised form carries ``schema_version``: readers accept
the same MAJOR (a newer minor only adds optional fields) and refuse any other with a ``RecordError`` naming both;
unversioned data (hand-written catalogs, other tools' tables) is accepted.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import re
import types
import typing
from typing import Any, ClassVar, Self

import pyarrow as pa

from schemas.version import SCHEMA_VERSION


class RecordError(ValueError):
    """A record field holds a value it may not: the message names the record, the field and the value."""


_VERSION = re.compile(r"^([0-9]+)(?:\.[0-9]+)*$")


def check_schema_version(found: Any, record: str) -> None:
    """Refuse data whose schema MAJOR version differs from ``SCHEMA_VERSION`` (``None``: unversioned, accepted)."""
    if found is None:
        return
    if isinstance(found, bytes):
        found = found.decode("utf-8", "replace")
    match = _VERSION.match(found) if isinstance(found, str) else None
    if match is None:
        raise RecordError(f"{record}: schema_version must look like 'MAJOR.MINOR', got {_short(found)}")
    ours = SCHEMA_VERSION.split(".", 1)[0]
    if match.group(1).lstrip("0") != ours.lstrip("0"):
        raise RecordError(f"{record}: written with schema version {found}, this code reads major version {ours} "
                          f"(schema {SCHEMA_VERSION}); convert the data or use a matching release")


def utf8_problem(text: str) -> str:
    """'' when ``text`` has a UTF-8 form, else what stops it (a lone surrogate from a ``"\\ud800"`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{exc.reason} at position {exc.start}: {text[exc.start:exc.end]!r}"
    return ""


def _check_utf8(where: str, text: str) -> None:
    problem = utf8_problem(text)
    if problem:
        raise RecordError(f"{where}: not encodable as UTF-8 ({problem}), got {_short(text)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@functools.cache  # called for every field of every record built: the answer depends on the annotation only
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _arrow_type(tp: Any) -> pa.DataType:
    if isinstance(tp, type) and issubclass(tp, Record):
        return pa.struct([pa.field(f.name, *_arrow_field_args(f.type)) for f in tp.fields()])
    if tp is str:
        return pa.string()
    if tp is int:
        return pa.int64()
    if tp is float:
        return pa.float64()
    if tp is bool:
        return pa.bool_()
    if tp is bytes:
        return pa.binary()
    if tp is dict or typing.get_origin(tp) is dict:
        return pa.string()
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return pa.list_(_arrow_type(inner))
    raise TypeError(f"unsupported record field type {tp!r}")


def _arrow_field_args(tp: Any) -> tuple[pa.DataType, bool]:
    inner, optional = _unwrap_optional(tp)
    return _arrow_type(inner), optional


def _check(record: str, name: str, tp: Any, value: Any) -> Any:
    """Validate (and lightly coerce: int -> float, list -> list) one value; returns the stored value."""
    inner, optional = _unwrap_optional(tp)
    where = f"{record}.{name}"
    if value is None:
        if optional:
            return None
        raise RecordError(f"{where}: a value is required, got None")
    if isinstance(inner, type) and issubclass(inner, Record):
        if isinstance(value, dict):
            return inner.from_dict(value)
        if not isinstance(value, inner):
            raise RecordError(f"{where}: expected {inner.__name__}, got {_short(value)}")
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{where}: expected a number, got {_short(value)}")
        if not math.isfinite(value):
            raise RecordError(f"{where}: expected a finite number, got {_short(value)}")
        return float(value)
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RecordError(f"{where}: expected an integer, got {_short(value)}")
        return int(value)
    if inner in (str, bool, bytes):
        if not isinstance(value, inner):
            raise RecordError(f"{where}: expected {inner.__name__}, got {_short(value)}")
        if inner is str:
            _check_utf8(where, value)
        return value
    if inner is dict or typing.get_origin(inner) is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected a mapping, got {_short(value)}")
        try:
            text = json.dumps(value, ensure_ascii=False)  # the form to_row stores
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: must be JSON-serialisable ({exc})") from None
        _check_utf8(where, text)
        return value
    if typing.get_origin(inner) is list:
        (item_tp,) = typing.get_args(inner)
        if not isinstance(value, list | tuple):
            raise RecordError(f"{where}: expected a list, got {_short(value)}")
        return [_check(record, f"{name}[{i}]", item_tp, v) for i, v in enumerate(value)]
    raise TypeError(f"unsupported record field type {tp!r}")


class Record:
    """Base of every record type. Subclasses are ``@dataclasses.dataclass(frozen=True)``."""

    KIND: ClassVar[str] = "record"

    @classmethod
    @functools.cache
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        """The dataclass fields with their types resolved. Cached per class: resolving the annotations
        (``typing.get_type_hints``) took ~90 us, and every record's construction and row conversion asks."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            f.type = hints[f.name]
            out.append(f)
        return tuple(out)

    @classmethod
    @functools.cache
    def arrow_schema(cls) -> pa.Schema:
        """The Parquet/Arrow schema of this record, tagged with the schema version."""
        return pa.schema(
            [pa.field(f.name, *_arrow_field_args(f.type)) for f in cls.fields()],
            metadata={b"schema_version": str(SCHEMA_VERSION).encode(), b"record": cls.__name__.encode()},
        )

    def __post_init__(self) -> None:
        for f in self.fields():
            object.__setattr__(self, f.name, _check(type(self).__name__, f.name, f.type, getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Record-specific rules beyond types; raise ``RecordError`` naming the field and value."""

    def fail(self, field: str, message: str) -> typing.NoReturn:
        raise RecordError(f"{type(self).__name__}.{field}: {message} (got {_short(getattr(self, field))})")

    # ---- (de)serialisation -------------------------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        """A dict matching ``arrow_schema()`` (dicts become JSON strings, nested records dicts)."""
        row = {}
        for f in self.fields():
            value = getattr(self, f.name)
            inner, _ = _unwrap_optional(f.type)
            if isinstance(value, Record):
                value = value.to_row()
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True, ensure_ascii=False)
            row[f.name] = value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        values = {}
        known = {f.name: f for f in cls.fields()}
        for name, f in known.items():
            if name not in row:
                continue
            value = row[name]
            inner, _ = _unwrap_optional(f.type)
            if value is not None and (inner is dict or typing.get_origin(inner) is dict) and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise RecordError(f"{cls.__name__}.{name}: not valid JSON ({exc})") from None
            if value is not None and isinstance(inner, type) and issubclass(inner, Record):
                value = inner.from_row(value)
            values[name] = value
        return cls._construct(values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes become base64 strings)."""
        out = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if isinstance(value, Record):
                value = value.to_dict()
            elif isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii")
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {_short(data)}")
        values = {}
        for f in cls.fields():
            if f.name not in data:
                continue
            value = data[f.name]
            inner, _ = _unwrap_optional(f.type)
            if inner is bytes and isinstance(value, str):
                value = base64.b64decode(value)
            values[f.name] = value
        return cls._construct(values)

    @classmethod
    def _construct(cls, values: dict[str, Any]) -> Self:
        try:
            return cls(**values)
        except TypeError as exc:  # a missing required field
            raise RecordError(f"{cls.__name__}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{cls.__name__}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            check_schema_version(data.pop("schema_version", None), cls.__name__)
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


def to_table(records: typing.Iterable[Record], record_type: type[Record]) -> pa.Table:
    """Records of one type as an Arrow table with that type's schema (empty tables keep the schema)."""
    schema = record_type.arrow_schema()
    rows = [r.to_row() for r in records]
    return pa.Table.from_pylist(rows, schema=schema)


def from_table(table: pa.Table, record_type: type[Record]) -> list[Record]:
    """Records from a table; refuses a table whose ``schema_version`` metadata has another major version."""
    metadata = table.schema.metadata or {}
    check_schema_version(metadata.get(b"schema_version"), record_type.__name__)
    return [record_type.from_row(row) for row in table.to_pylist()]
