"""A local run's search, streamed once by the launcher, and the run cut into slices of bounded size.

Beam's local runner keeps a job's elements in the launching process, so a local run is a series of jobs, one per
slice (``pipeline.local.local_slices``), over one plan made here. The search stage's keyword rules and
de-duplication run here in one pass over the sources in order, the first copy of each id and URL remembered in an
on-disk SQLite index: the Beam stage's decisions (``pipeline.search``) in memory that does not grow with the
catalog. A slice closes once its estimated outcomes reach ``slice_outcomes`` (a candidate counts 1 plus the clips
its declared duration gives, ``UNKNOWN_DURATION_S`` when none). The plan (``plan.json`` and per-slice Parquet
under ``<output>/slices/``) is reused by a rerun with the same inputs. On Dataflow the run is one job and the
Beam search stage does this work on the workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.io import storage
from pipeline.runtime import progress
from pipeline.search import dropped, duplicate_detail, normalise_url, read_source_task
from pipeline.sources import Source
from schemas import SCHEMA_VERSION, CandidateVideo, Outcome, Record, from_table, reasons, to_table
from schemas.clip_format import CLIP_SECONDS
from schemas.site_usage import SiteUsage

SLICES_DIR = "slices"
PLAN_FILE = "plan.json"
CANDIDATES_FILE = "candidates.parquet"
SEARCH_OUTCOMES_FILE = "search_outcomes.parquet"
SITE_USAGE_FILE = "site_usage.json"  # in the first slice: what the plan's searches cost each site
SLICE_OUTCOMES = 50_000  # estimated outcomes per slice: a local job holds about 2 KB per outcome (docs/pipeline.md)
UNKNOWN_DURATION_S = 1200.0  # a candidate that declares no duration is counted as a 20-minute video
BATCH_ROWS = 2_000  # rows written to a slice's files at a time


def slices_dir(output_dir: str) -> str:
    return FileSystems.join(output_dir, SLICES_DIR)


def slice_name(index: int) -> str:
    return f"s{index:05d}"


def slice_dir(output_dir: str, index: int) -> str:
    return FileSystems.join(slices_dir(output_dir), slice_name(index))


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """One slice: what the launcher put in it, and the outcomes it expects from it by estimate."""

    index: int
    candidates: int
    search_outcomes: int
    estimated_outcomes: int


@dataclasses.dataclass(frozen=True)
class Plan:
    slice_outcomes: int
    slices: tuple[SlicePlan, ...]
    deferred_searches: int = 0  # search tasks the site's breaker deferred: a rerun searches again

    @property
    def candidates(self) -> int:
        return sum(s.candidates for s in self.slices)

    @property
    def search_outcomes(self) -> int:
        return sum(s.search_outcomes for s in self.slices)

    def to_json(self) -> bytes:
        body = {"schema_version": SCHEMA_VERSION, "slice_outcomes": self.slice_outcomes,
                "slices": [dataclasses.asdict(s) for s in self.slices], "deferred_searches": self.deferred_searches}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Plan:
        body = json.loads(data)
        return cls(body["slice_outcomes"], tuple(SlicePlan(**s) for s in body["slices"]),
                   body.get("deferred_searches", 0))


def estimated_outcomes(candidate: CandidateVideo) -> int:
    """The outcomes a candidate will produce if it is cut: its own and one per clip of its declared duration."""
    duration = candidate.duration_s if candidate.duration_s is not None else UNKNOWN_DURATION_S
    return 1 + math.ceil(max(duration, 0.0) / CLIP_SECONDS)


class _FirstCopies:
    """The first candidate seen per video id and per normalised URL, in a SQLite file on local disk."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        for table in ("ids", "urls"):
            self.db.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, source TEXT, video_id TEXT, url TEXT)")

    def first(self, table: str, key: str, candidate: CandidateVideo) -> tuple[str, str, str] | None:
        """The first copy's (source, video id, url) when ``key`` was seen; else remember ``candidate``."""
        row = self.db.execute(f"SELECT source, video_id, url FROM {table} WHERE key = ?", (key,)).fetchone()  # noqa: S608
        if row is None:
            self.db.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",  # noqa: S608 - table is one of two names
                            (key, candidate.source, candidate.video_id, candidate.url))
        return row

    def close(self) -> None:
        self.db.close()


def searched(sources: list[Source], rules, index: _FirstCopies) -> Iterator[CandidateVideo | Outcome]:
    """Every source's items in order, each as the candidate that goes on or the search's outcome for it."""
    for s_index, source in enumerate(sources):
        source.setup()
        for t_index, task in enumerate(source.tasks()):
            for item in read_source_task(source, s_index, t_index, task):
                if isinstance(item, Outcome):
                    yield item
                    continue
                candidate = item[1]
                verdict = rules.check(candidate)
                if verdict:
                    yield dropped(candidate, *verdict)
                    continue
                first = index.first("ids", candidate.video_id, candidate)
                if first is None:
                    first = index.first("urls", normalise_url(candidate.url), candidate)
                    what = "URL"
                else:
                    what = "video id"
                yield candidate if first is None else dropped(candidate, reasons.DUPLICATE,
                                                              duplicate_detail(what, *first))


class _SliceWriter:
    """Writes one slice's two files a batch at a time (``storage.atomic_create``: complete or absent)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.stack = contextlib.ExitStack()
        self.pending: dict[type[Record], list[Record]] = {CandidateVideo: [], Outcome: []}
        self.writers: dict[type[Record], pq.ParquetWriter] = {}
        self.counts = {CandidateVideo: 0, Outcome: 0}

    def add(self, record: Record) -> None:
        kind = type(record)
        self.pending[kind].append(record)
        self.counts[kind] += 1
        if len(self.pending[kind]) >= BATCH_ROWS:
            self._flush(kind)

    def _flush(self, kind: type[Record]) -> None:
        if kind not in self.writers:
            name = CANDIDATES_FILE if kind is CandidateVideo else SEARCH_OUTCOMES_FILE
            stream = self.stack.enter_context(storage.atomic_create(FileSystems.join(self.directory, name)))
            self.writers[kind] = self.stack.enter_context(pq.ParquetWriter(stream, kind.arrow_schema()))
        self.writers[kind].write_table(to_table(self.pending[kind], kind))
        self.pending[kind] = []

    def close(self) -> None:
        with self.stack:
            for kind in (CandidateVideo, Outcome):
                self._flush(kind)  # every slice has both files, empty or not


def make_plan(output_dir: str, sources: list[Source], rules, slice_outcomes: int = SLICE_OUTCOMES,
              progress_dir: str = "") -> Plan:
    """Search ``sources`` with ``rules`` in one streamed pass and write the slices and ``plan.json`` (last);
    each item read is tallied for the progress line (``progress.PLANNED``)."""
    if slice_outcomes < 1:
        raise ValueError(f"slice_outcomes must be >= 1, got {slice_outcomes}")
    slices: list[SlicePlan] = []
    deferred = 0
    with tempfile.TemporaryDirectory(prefix="genie-search-index-") as tmp:
        index = _FirstCopies(os.path.join(tmp, "first_copies.sqlite"))
        writer, weight = None, 0
        try:
            for item in searched(sources, rules, index):
                if writer is None:
                    writer, weight = _SliceWriter(slice_dir(output_dir, len(slices))), 0
                writer.add(item)
                deferred += isinstance(item, Outcome) and reasons.reason_family(item.reason) == reasons.DEFERRED
                progress.count(progress_dir, progress.PLANNED)
                weight += estimated_outcomes(item) if isinstance(item, CandidateVideo) else 1
                if weight >= slice_outcomes:
                    slices.append(_closed(writer, len(slices), weight))
                    writer = None
            if writer is not None or not slices:  # a run with nothing to search still has one (empty) slice
                writer = writer or _SliceWriter(slice_dir(output_dir, len(slices)))
                slices.append(_closed(writer, len(slices), weight))
        finally:
            index.close()
            progress.flush(progress_dir)
    usage = [u.to_row() for source in sources for u in source.site_usage()]
    storage.write_bytes(FileSystems.join(slice_dir(output_dir, 0), SITE_USAGE_FILE),
                        (json.dumps(usage, sort_keys=True) + "\n").encode("utf-8"))
    plan = Plan(slice_outcomes, tuple(slices), deferred)
    storage.write_bytes(FileSystems.join(slices_dir(output_dir), PLAN_FILE), plan.to_json())
    return plan


def _closed(writer: _SliceWriter, index: int, weight: int) -> SlicePlan:
    writer.close()
    return SlicePlan(index, writer.counts[CandidateVideo], writer.counts[Outcome], weight)


def read_plan(output_dir: str) -> Plan | None:
    """The plan an earlier run of the same inputs wrote, or None (also when a search of it was deferred:
    the site was blocking, so the rerun searches again)."""
    path = FileSystems.join(slices_dir(output_dir), PLAN_FILE)
    plan = Plan.from_json(storage.read_bytes(path)) if storage.exists(path) else None
    return plan if plan is not None and not plan.deferred_searches else None


def read_site_usage(directory: str) -> list[SiteUsage]:
    """What the plan's searches cost each site (the first slice's job hands it to the audit), else none."""
    path = FileSystems.join(directory, SITE_USAGE_FILE)
    return [SiteUsage.from_row(r) for r in json.loads(storage.read_bytes(path))] if storage.exists(path) else []


def read_slice(directory: str, kind: type[Record]) -> Iterator[Record]:
    """A slice's candidates or search outcomes, a batch at a time."""
    path = FileSystems.join(directory, CANDIDATES_FILE if kind is CandidateVideo else SEARCH_OUTCOMES_FILE)
    parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))  # one slice: bounded by --slice-outcomes
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        yield from from_table(pa.Table.from_batches([batch]), kind)
