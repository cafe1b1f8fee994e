"""Catalog files of candidate videos: JSON Lines, CSV or Parquet (by extension), local or ``gs://``.

A row has ``id`` and ``url`` and optionally ``title``, ``description``, ``channel``, ``duration_s`` and
``actions`` (a ground-truth actions sidecar). The demo corpus writes such files, and an earlier crawl's
``CandidateVideo`` rows can be fed back (``video_id``/``actions_url``/``duration`` are accepted as aliases).
Relative ``url``/``actions`` paths are relative to the catalog file's directory and become absolute
(``file://`` URLs for videos, plain paths for sidecars) so that workers need no working directory.
Other fields are kept verbatim in ``CandidateVideo.extra``.

A row that cannot be parsed becomes a ``failed`` Outcome (``bad_catalog_row``) naming the file and line,
and the rest of the file is still read; a file that cannot be read at all becomes one ``search_error``.
Text must be valid UTF-8 all the way to the record: an undecodable JSON line or CSV row, and a JSON string
with a lone surrogate escape (``"\\ud800"``, which decodes to a Python str that no UTF-8 writer accepts), are
bad rows here, not crashes in the Parquet and shard writers at the end of the run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.sources.base import Source, search_failure
from schemas import CandidateVideo, Outcome, RecordError, reasons
from schemas.base import utf8_problem

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ALIASES = {"video_id": "id", "actions_url": "actions", "duration": "duration_s"}
_KNOWN = {"id", "url", "title", "description", "channel", "duration_s", "actions", "source", "query", "extra"}
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class CatalogRowError(ValueError):
    """A catalog row that cannot become a candidate; the message says which field and why."""


def _is_local(path: str) -> bool:
    return not _SCHEME.match(path) or path.startswith("file://")


def catalog_dir(catalog_path: str) -> str:
    """The directory relative paths in ``catalog_path`` are resolved against (absolute when local)."""
    if _is_local(catalog_path):
        local = catalog_path[len("file://"):] if catalog_path.startswith("file://") else catalog_path
        return str(Path(local).resolve().parent)
    return catalog_path.rsplit("/", 1)[0]


def resolve(value: str, base_dir: str, as_url: bool) -> str:
    """A URL or path from a row, absolute: URLs are kept, local paths resolved against ``base_dir``."""
    if _SCHEME.match(value):
        return value
    if _SCHEME.match(base_dir):  # remote catalog: join like a URL
        return value if value.startswith("/") else f"{base_dir.rstrip('/')}/{value}"
    path = Path(base_dir, os.path.expanduser(value)).resolve()
    return path.as_uri() if as_url else str(path)


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CatalogRowError(f"{key!r} must be a string, got {value!r}")
    return value


def _duration(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise CatalogRowError(f"'duration_s' must be a number of seconds, got {value!r}")
    try:
        duration = float(value)
    except (TypeError, ValueError):
        raise CatalogRowError(f"'duration_s' must be a number of seconds, got {value!r}") from None
    if not math.isfinite(duration) or duration < 0:
        raise CatalogRowError(f"'duration_s' must be a finite number >= 0, got {value!r}")
    return duration


def _jsonable(value: Any) -> Any:
    """Extra fields as JSON can hold them (Parquet timestamps and the like become strings)."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def row_to_candidate(row: Any, base_dir: str, source: str = "catalog") -> CandidateVideo:
    """One catalog row as a ``CandidateVideo``; raises ``CatalogRowError`` naming the bad field."""
    if not isinstance(row, dict):
        raise CatalogRowError(f"expected an object with 'id' and 'url', got {type(row).__name__}")
    row = {_ALIASES.get(k, k): v for k, v in row.items()}
    for key, value in row.items():  # before any path handling: os.fsencode would raise on a lone surrogate
        for text in (key, value):
            if isinstance(text, str) and utf8_problem(text):
                raise CatalogRowError(f"{key!r} is not encodable as UTF-8 ({utf8_problem(text)}), got {text!r}")
    video_id = row.get("id")
    if isinstance(video_id, int) and not isinstance(video_id, bool):
        video_id = str(video_id)
    if not isinstance(video_id, str) or not video_id.strip():
        raise CatalogRowError(f"'id' must be a non-empty string, got {video_id!r}")
    url = _text(row, "url").strip()
    if not url:
        raise CatalogRowError("'url' is missing or empty")
    actions = _text(row, "actions").strip()
    extra = {k: v for k, v in row.items() if k not in _KNOWN}
    if isinstance(row.get("extra"), dict):
        extra = {**row["extra"], **extra}
    try:
        return CandidateVideo(
            video_id=video_id,
            source=source,
            url=resolve(url, base_dir, as_url=True),
            title=_text(row, "title"),
            description=_text(row, "description"),
            channel=_text(row, "channel"),
            duration_s=_duration(row.get("duration_s")),
            query=_text(row, "query"),
            actions_url=resolve(actions, base_dir, as_url=False) if actions else "",
            extra=_jsonable(extra),
        )
    except RecordError as exc:
        raise CatalogRowError(str(exc)) from None


def _jsonl_rows(stream) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, CatalogRowError(f"not valid UTF-8 ({exc})")
            continue
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, CatalogRowError(f"not valid JSON ({exc})")


_UNDECODED = re.compile("[\udc80-\udcff]")  # how ``surrogateescape`` keeps a byte that is not UTF-8


def _undecodable(text: str) -> str:
    """'' when ``text`` came from valid UTF-8, else which byte did not (``surrogateescape`` kept it as U+DCxx)."""
    found = _UNDECODED.search(text)
    return f"byte 0x{ord(found.group()) - 0xDC00:02x} at character {found.start()}" if found else ""


def _csv_rows(stream) -> Iterator[tuple[int, Any]]:
    """Rows of a CSV file with their (last) physical line number.

    Bytes that are not UTF-8 are kept aside (``surrogateescape``) instead of replaced, so the row holding them
    becomes a ``bad_catalog_row`` like an undecodable JSON line, not a candidate with a silently mangled title
    or id. A header that does not decode makes the whole file unreadable (every row's keys would be wrong).
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise ValueError(f"the header line is not valid CSV ({exc})") from None
    for name in header:
        if _undecodable(name):
            raise ValueError(f"the header line is not valid UTF-8 ({_undecodable(name)} of column {name!r})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, CatalogRowError(f"not valid CSV ({exc})")
            continue
        if None in row:  # more cells than header columns
            yield reader.line_num, CatalogRowError(f"{len(row[None])} cell(s) beyond the header's columns")
            continue
        bad = next(((k, _undecodable(v)) for k, v in row.items() if v is not None and _undecodable(v)), None)
        if bad is not None:
            yield reader.line_num, CatalogRowError(f"not valid UTF-8 ({bad[1]} of column {bad[0]!r})")
            continue
        yield reader.line_num, {k: v for k, v in row.items() if v is not None}


def _parquet_rows(stream) -> Iterator[tuple[int, Any]]:
    table = pq.read_table(stream)
    yield from enumerate(table.to_pylist(), start=1)


class CatalogSource(Source):
    """Reads catalog files; one read task per file."""

    name = "catalog"

    def __init__(self, paths: list[str] | tuple[str, ...]) -> None:
        self.paths = [str(p) for p in paths]

    def tasks(self) -> list[str]:
        return list(self.paths)

    def read(self, task: str) -> Iterator[CandidateVideo | Outcome]:
        name = task.rstrip("/").rsplit("/", 1)[-1]
        name = name if name.strip() else "catalog"  # an Outcome needs a non-blank item id
        kind = FORMATS.get(os.path.splitext(name)[1].lower())
        if kind is None:
            yield search_failure(name, reasons.SEARCH_ERROR,
                                 f"{task}: unknown catalog format (expected one of {', '.join(sorted(FORMATS))})")
            return
        unit = "row" if kind == "parquet" else "line"
        base_dir = catalog_dir(task)
        try:
            with FileSystems.open(task, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
                rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[kind](stream)
                for number, row in rows:
                    try:
                        if isinstance(row, CatalogRowError):
                            raise row
                        candidate = row_to_candidate(row, base_dir, self.name)
                    except CatalogRowError as exc:
                        candidate = search_failure(f"{name}:{unit}{number}", reasons.BAD_CATALOG_ROW,
                                                   f"{task} {unit} {number}: {exc}")
                    except Exception as exc:  # noqa: BLE001 - one odd row must not cost the rest of the file
                        candidate = search_failure(f"{name}:{unit}{number}", reasons.BAD_CATALOG_ROW,
                                                   f"{task} {unit} {number}: {type(exc).__name__}: {exc}")
                    yield candidate
        except Exception as exc:  # noqa: BLE001 - a missing/unreadable file is a recorded failure, not a crash
            yield search_failure(name, reasons.SEARCH_ERROR, f"cannot read catalog {task}: {type(exc).__name__}: {exc}")
