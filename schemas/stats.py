"""``stats.json``: what a run's audit says about the run, as typed records, with one writer and one reader.

The audit (``pipeline.audit``) assembles a ``Stats`` and writes it with ``Stats.to_json``; every reader (report,
console summary, exit status, ``finalize``, the merge of local slices, ``python -m pipeline audit``) uses
``Stats.from_json`` and then only attributes. The file carries ``schema_version``: a file without one, with
another major version or missing a part is refused in one line (``RecordError``); a newer minor version's added
keys are ignored. Encoding: keys sorted, two-space indent, UTF-8, a final newline; zero outcome counts, funnel
columns that do not apply at a stage, ``tables`` before they are counted and the conservation ``note`` of a
known verdict are left out. ``Stats.from_json(s.to_json()) == s``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Self

from schemas.base import RecordError, check_schema_version
from schemas.reasons import ITEM_CLIP, ITEM_VIDEO, OUTCOMES
from schemas.version import SCHEMA_VERSION

STATS_FILE = "stats.json"  # in the run's output (or a local slice's audit directory)


def _field(data: dict, key: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{STATS_FILE}: {where} must be a JSON object, got {type(data).__name__}")
    if key not in data:
        raise RecordError(f"{STATS_FILE}: {where} has no '{key}'")
    return data[key]


def _flat(record_type: type, data: dict, where: str):
    """A record whose JSON object holds exactly its fields, by name."""
    return record_type(*(_field(data, f.name, where) for f in dataclasses.fields(record_type)))


def _outcome_counts(counts: VideoCounts | ClipCounts) -> dict[str, int]:
    """The outcome counts that are not zero (the audit counts an outcome only where it occurred)."""
    return {o: n for o in OUTCOMES if (n := getattr(counts, o))}


@dataclasses.dataclass(frozen=True)
class VideoCounts:
    """Candidate videos and how they ended (search failures are no videos: see ``SearchFailures``)."""

    candidates: int
    kept: int = 0
    dropped: int = 0
    failed: int = 0

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, **_outcome_counts(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(_field(data, "candidates", "videos"), **{o: data.get(o, 0) for o in OUTCOMES})


@dataclasses.dataclass(frozen=True)
class ClipCounts:
    """Clips cut and how they ended."""

    cut: int
    kept: int = 0
    dropped: int = 0
    failed: int = 0

    def to_dict(self) -> dict:
        return {"cut": self.cut, **_outcome_counts(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(_field(data, "cut", "clips"), **{o: data.get(o, 0) for o in OUTCOMES})


@dataclasses.dataclass(frozen=True)
class SearchFailures:
    """Search inputs that could not be read (a bad catalog row or file, a failed query), by reason family."""

    count: int
    by_reason: dict[str, int]

    def to_dict(self) -> dict:
        return {"count": self.count, "by_reason": dict(self.by_reason)}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        where = "search_failures"
        return cls(_field(data, "count", where), dict(_field(data, "by_reason", where)))


@dataclasses.dataclass(frozen=True)
class Hours:
    candidate_video: float  # hours of candidate video (search failures aside)
    kept_clips: float  # hours of kept clips

    def to_dict(self) -> dict:
        return {"candidate_video": self.candidate_video, "kept_clips": self.kept_clips}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(_field(data, "candidate_video", "hours"), _field(data, "kept_clips", "hours"))


@dataclasses.dataclass(frozen=True)
class Flow:
    """Items of one kind entering a stage (decided there or later) and leaving it (decided later, or kept)."""

    items_in: int
    items_out: int
    hours_in: float
    hours_out: float

    def to_dict(self, kind: str) -> dict:
        return {f"{kind}s_in": self.items_in, f"{kind}s_out": self.items_out,
                f"{kind}_hours_in": self.hours_in, f"{kind}_hours_out": self.hours_out}

    @classmethod
    def from_dict(cls, data: dict, kind: str, stage: str) -> Self | None:
        if f"{kind}s_in" not in data:
            return None
        where = f"funnel row '{stage}'"
        return cls(*(_field(data, key, where) for key in
                     (f"{kind}s_in", f"{kind}s_out", f"{kind}_hours_in", f"{kind}_hours_out")))


@dataclasses.dataclass(frozen=True)
class FunnelRow:
    """One stage of the funnel: its video and clip flows (None where the stage does not follow that kind), the
    count per ``kind:outcome:reason`` decided there, and at search the inputs that could not be read."""

    stage: str
    reasons: dict[str, int]
    video: Flow | None = None
    clip: Flow | None = None
    search_failures: int | None = None

    def flows(self) -> list[tuple[str, Flow]]:
        """``(kind, flow)`` for the kinds this stage follows, videos first."""
        return [(kind, flow) for kind, flow in ((ITEM_VIDEO, self.video), (ITEM_CLIP, self.clip))
                if flow is not None]

    def to_dict(self) -> dict:
        out: dict = {"stage": self.stage}
        for kind, flow in self.flows():
            out.update(flow.to_dict(kind))
        out["reasons"] = dict(self.reasons)
        if self.search_failures is not None:
            out["search_failures"] = self.search_failures
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        stage = _field(data, "stage", "a funnel row")
        return cls(stage, dict(_field(data, "reasons", f"funnel row '{stage}'")),
                   Flow.from_dict(data, ITEM_VIDEO, stage), Flow.from_dict(data, ITEM_CLIP, stage),
                   data.get("search_failures"))


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """How the quality stage decides: the model directory (None: no classifier, clips pass unscored), the
    threshold in effect, the decision rule and its margin."""

    classifier: str | None = None
    threshold: float | None = None
    rule: str | None = None
    margin: float | None = None


@dataclasses.dataclass(frozen=True)
class QualityStats:
    """What the quality stage did: its settings, and the clips it scored, passed unscored, failed, dropped."""

    settings: QualitySettings
    clips_in: int
    clips_scored: int
    clips_unscored: int
    clips_failed: int
    clips_dropped_low_quality: int

    def to_dict(self) -> dict:
        counts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        return {**dataclasses.asdict(self.settings), **counts}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        settings = _flat(QualitySettings, data, "quality")
        return cls(settings, *(_field(data, f.name, "quality") for f in dataclasses.fields(cls)
                               if f.name != "settings"))


class ReasonKey(typing.NamedTuple):
    """A key of ``Stats.reason_counts``: items that ended ``outcome`` at ``stage`` for a reason of ``family``
    (its text: ``kind:stage:outcome:family``)."""

    kind: str
    stage: str
    outcome: str
    family: str

    def text(self) -> str:
        return ":".join(self)

    @classmethod
    def parse(cls, text: str) -> Self:
        return cls(*text.split(":", 3))


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Counts on fixed bins (``edges``), one list of counts per group (``kept``, ``dropped``, ...)."""

    edges: list[float]
    counts: dict[str, list[int]]

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), **{group: list(c) for group, c in self.counts.items()}}

    @classmethod
    def from_dict(cls, data: dict, name: str) -> Self:
        edges = _field(data, "edges", f"histogram '{name}'")
        return cls(list(edges), {group: list(c) for group, c in data.items() if group != "edges"})

    def total(self) -> int:
        return sum(sum(c) for c in self.counts.values())


@dataclasses.dataclass(frozen=True)
class Histograms:
    video_minutes: Histogram  # candidate videos' durations, kept and dropped/failed
    quality_score: Histogram  # scored clips' quality scores, kept and dropped

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(*(Histogram.from_dict(_field(data, f.name, "histograms"), f.name)
                     for f in dataclasses.fields(cls)))


@dataclasses.dataclass(frozen=True)
class FailureExample:
    """One failed item, as the report lists it (``detail`` cut to a bounded length)."""

    item_kind: str
    item_id: str
    stage: str
    reason: str
    detail: str


@dataclasses.dataclass(frozen=True)
class ThumbnailPick:
    """A clip the report draws: its key and its quality score (None: not scored)."""

    clip_key: str
    quality_score: float | None


@dataclasses.dataclass(frozen=True)
class Conservation:
    """The conservation law's verdict: ``ok`` None (with a ``note``) when it is unknown."""

    ok: bool | None
    num_violations: int | None
    violations: list[str]
    note: str | None = None

    def to_dict(self) -> dict:
        out = {"ok": self.ok, "num_violations": self.num_violations, "violations": list(self.violations)}
        if self.note is not None:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(_field(data, "ok", "conservation"), _field(data, "num_violations", "conservation"),
                   list(_field(data, "violations", "conservation")), data.get("note"))


@dataclasses.dataclass(frozen=True)
class SiteCost:
    """What one site cost the run: its job-wide budget (None: unthrottled), the requests sent, the seconds they
    waited on the budget and paused for the breaker, the items its breaker deferred."""

    job_qps: float | None
    requests: int = 0
    waited_s: float = 0.0
    paused_s: float = 0.0
    deferred: int = 0


@dataclasses.dataclass(frozen=True)
class Deferred:
    """Items that ended ``deferred`` (a blocking site's breaker was open): a rerun finishes them."""

    videos: int
    search_queries: int


@dataclasses.dataclass(frozen=True)
class TableParts:
    """A per-item table as written: its part files and their rows."""

    parts: int
    rows: int



@dataclasses.dataclass(frozen=True)
class Stats:
    """A run's ``stats.json``."""

    videos: VideoCounts
    search_failures: SearchFailures
    clips: ClipCounts
    hours: Hours
    shards: int  # shards written
    funnel: list[FunnelRow]  # one row per stage, in the stages' order
    quality: QualityStats
    reason_counts: dict[str, int]  # items not kept, per ``ReasonKey`` (its text)
    histograms: Histograms
    failure_examples: dict[str, list[FailureExample]]  # per ``kind:stage:reason``, the smallest item ids
    thumbnails: dict[str, list[ThumbnailPick]]  # per report group, the sampled clips
    conservation: Conservation
    sites: dict[str, SiteCost]  # per site (this run's traffic: not part of the identity promise)
    deferred: Deferred
    tables: dict[str, TableParts] | None = None  # per table directory (outcomes/, manifest/)

    def reasons_by_key(self) -> list[tuple[ReasonKey, int]]:
        """``reason_counts`` with their keys parsed, in the file's order."""
        return [(ReasonKey.parse(key), n) for key, n in self.reason_counts.items()]

    def to_json(self) -> bytes:
        """The bytes of ``stats.json``."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """A ``Stats`` from the bytes of a ``stats.json``; ``RecordError`` (one line) for one it cannot trust."""
        try:
            parsed = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecordError(f"{STATS_FILE}: not valid JSON ({exc})") from None
        return cls.from_dict(parsed)

    def to_dict(self) -> dict:
        out = {
            "schema_version": SCHEMA_VERSION,
            "videos": self.videos.to_dict(),
            "search_failures": self.search_failures.to_dict(),
            "clips": self.clips.to_dict(),
            "hours": self.hours.to_dict(),
            "shards": self.shards,
            "funnel": [row.to_dict() for row in self.funnel],
            "quality": self.quality.to_dict(),
            "reason_counts": dict(self.reason_counts),
            "histograms": self.histograms.to_dict(),
            "failure_examples": {g: [dataclasses.asdict(e) for e in examples]
                                 for g, examples in self.failure_examples.items()},
            "thumbnails": {g: [dataclasses.asdict(p) for p in picks] for g, picks in self.thumbnails.items()},
            "conservation": self.conservation.to_dict(),
            "sites": {site: dataclasses.asdict(cost) for site, cost in self.sites.items()},
            "deferred": dataclasses.asdict(self.deferred),
        }
        if self.tables is not None:
            out["tables"] = {name: dataclasses.asdict(t) for name, t in self.tables.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        if not isinstance(data, dict):
            raise RecordError(f"{STATS_FILE}: expected a JSON object, got {type(data).__name__}")
        if "schema_version" not in data:
            raise RecordError(f"{STATS_FILE}: no schema_version: not written by this pipeline's audit")
        check_schema_version(data["schema_version"], STATS_FILE)
        tables = data.get("tables")
        return cls(
            videos=VideoCounts.from_dict(_field(data, "videos", "the file")),
            search_failures=SearchFailures.from_dict(_field(data, "search_failures", "the file")),
            clips=ClipCounts.from_dict(_field(data, "clips", "the file")),
            hours=Hours.from_dict(_field(data, "hours", "the file")),
            shards=_field(data, "shards", "the file"),
            funnel=[FunnelRow.from_dict(row) for row in _field(data, "funnel", "the file")],
            quality=QualityStats.from_dict(_field(data, "quality", "the file")),
            reason_counts=dict(_field(data, "reason_counts", "the file")),
            histograms=Histograms.from_dict(_field(data, "histograms", "the file")),
            failure_examples={g: [_flat(FailureExample, e, f"failure example of '{g}'") for e in examples]
                              for g, examples in _field(data, "failure_examples", "the file").items()},
            thumbnails={g: [_flat(ThumbnailPick, p, f"thumbnail of '{g}'") for p in picks]
                        for g, picks in _field(data, "thumbnails", "the file").items()},
            conservation=Conservation.from_dict(_field(data, "conservation", "the file")),
            sites={site: _flat(SiteCost, cost, f"site '{site}'")
                   for site, cost in _field(data, "sites", "the file").items()},
            deferred=_flat(Deferred, _field(data, "deferred", "the file"), "deferred"),
            tables=None if tables is None else {name: _flat(TableParts, t, f"table '{name}'")
                                                for name, t in tables.items()},
        )
