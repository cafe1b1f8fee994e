"""Audit of a run: every item's fate, the per-stage funnel, and the conservation law that nothing was lost.

Conservation: every candidate video and every clip cut ends in exactly one ``Outcome``. Items are registered
where they are born; per item id the audit compares births with outcomes (a keyed sum folded by
``balance_of``), and any difference is a violation naming the item and its last stage: the run fails on one.
Everything else in ``stats.json`` comes from combiners with bounded accumulators (``OutcomeStatsFn``,
``GroupSampleFn``, ``KeyCountsFn``), so a worker's memory does not grow with the number of items; the same
functions run in memory for tests and over a finished run's tables for ``python -m pipeline audit``.
Search failures are items of the law but not videos: ``stats.json`` counts them apart (``search_failures``).
The counts also feed Beam counters (``outcomes/<stage>``) while the job runs. Nothing in ``stats.json``
depends on timing or ordering, so a rerun on the same inputs writes the same file.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import heapq
import logging
import typing
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from pipeline.audit import report
from pipeline.audit.report import FAILURE_EXAMPLES_PER_REASON
from pipeline.runtime import progress
from schemas import Outcome, reasons
from schemas.stats import (
    ClipCounts,
    Conservation,
    Deferred,
    FailureExample,
    Flow,
    FunnelRow,
    Histogram,
    Histograms,
    Hours,
    QualitySettings,
    QualityStats,
    ReasonKey,
    SearchFailures,
    SiteCost,
    Stats,
    TableParts,
    ThumbnailPick,
    VideoCounts,
)

log = logging.getLogger(__name__)

VIDEO_STAGES = (reasons.STAGE_SEARCH, reasons.STAGE_DOWNLOAD, reasons.STAGE_SEGMENT)
CLIP_STAGES = (reasons.STAGE_SEGMENT, reasons.STAGE_QUALITY, reasons.STAGE_SHARD)
MAX_LISTED_VIOLATIONS = 50
DETAIL_CHARS = 300  # of each listed failure's detail
# The report's histograms: fixed bins, so workers count into them and partial counts add up.
VIDEO_MINUTES = "video_minutes"
QUALITY_SCORE = "quality_score"
HISTOGRAMS = {
    VIDEO_MINUTES: (tuple(float(x) for x in np.logspace(-1, 3, 25)), ("kept", "dropped/failed")),
    QUALITY_SCORE: (tuple(float(x) for x in np.linspace(0, 1, 21)), ("kept", "dropped")),
}
# outcomes/ parts are sorted on every field (nulls first): the order of ``outcome_sort_key``
OUTCOME_SORT_COLUMNS = ["item_kind", "video_id", "item_id", "stage", "outcome", "reason", "detail", "duration_s",
                        "quality_score"]


@dataclasses.dataclass(frozen=True)
class Registration:
    """An item seen entering ``stage``; ``born`` marks the one place each item is counted into existence.

    ``search_failure`` marks a search input that never became a candidate (see ``is_search_failure``): it
    is held to the law like any item but not counted as a candidate video.
    """

    item_kind: str
    item_id: str
    stage: str
    born: bool
    search_failure: bool = False


def stage_index(stage: str) -> int:
    return reasons.STAGES.index(stage)


def is_search_failure(o: Outcome) -> bool:
    """A search input that could not be read (bad catalog row or file, failed query): not a video.

    The search stage fails only inputs it cannot read (``pipeline.sources.base.search_failure``); every
    other search outcome is a rule or duplicate drop of a real candidate.
    """
    return o.item_kind == reasons.ITEM_VIDEO and o.stage == reasons.STAGE_SEARCH and o.outcome == reasons.FAILED


def outcome_sort_key(o: Outcome) -> tuple:
    """A total order over outcomes (every field, None first), so ``outcomes.parquet`` never depends on the
    order Beam delivered them in, even for two outcomes of one id that differ only in detail or score."""
    def num(x: float | None) -> tuple[int, float]:
        return (0, 0.0) if x is None else (1, float(x))

    return (o.item_kind, o.video_id, o.item_id, o.stage, o.outcome, o.reason, o.detail, num(o.duration_s),
            num(o.quality_score))


# ---- conservation: a keyed sum ------------------------------------------------------------------------
def conservation_event(item: Registration | Outcome) -> tuple[tuple[str, str], tuple]:
    """``((kind, id), (births, outcomes, stage reached, "stage:outcome" or None))`` for one record: a birth
    counts +1 item, an outcome +1 decision; the law holds for a key when the two sums are equal."""
    if isinstance(item, Registration):
        return (item.item_kind, item.item_id), (1 if item.born else 0, 0, stage_index(item.stage), None)
    return (item.item_kind, item.item_id), (0, 1, -1, f"{item.stage}:{item.outcome}")


MAX_LABELS = 8  # outcome labels kept per item for its violation message


def balance_of(events: Iterable[tuple]) -> tuple:
    """An item's (births, outcomes, furthest stage it entered, its outcome labels) from its events
    (``conservation_event``); the labels are capped, so the result is bounded whatever the input."""
    born = decided = 0
    stage, labels = -1, []
    for b, d, s, label in events:
        born, decided, stage = born + b, decided + d, max(stage, s)
        if label is not None:
            labels.append(label)
    return born, decided, stage, tuple(sorted(labels)[:MAX_LABELS])


def violation(key: tuple[str, str], balance: tuple) -> str | None:
    """The message for an item whose outcome count differs from its birth count; None when the law holds."""
    kind, item = key
    born, decided, stage, labels = balance
    if born == decided:
        return None
    if decided == 0:
        reached = reasons.STAGES[stage] if stage >= 0 else "?"
        return f"{kind} {item!r}: reached stage '{reached}' and no stage gave it an outcome"
    if born == 0:
        return f"{kind} {item!r}: outcome(s) {list(labels)} but no stage registered it"
    return f"{kind} {item!r}: {decided} outcomes {list(labels)} for {born} item(s)"


def decided_and_kept(agg: OutcomeTallies) -> tuple[int, int]:
    """(outcomes decided, clips kept) from ``OutcomeStatsFn``'s cells: what the written tables must hold."""
    decided = kept = 0
    for cell, tally in agg.cells():
        decided += tally.count
        if cell.kind == reasons.ITEM_CLIP and cell.outcome == reasons.KEPT:
            kept += tally.count
    return decided, kept


def table_violations(outcomes: int, kept_clips: int, tables: dict[str, TableParts],
                     shard_index: list[dict]) -> list[str]:
    """What the written tables must hold, checked from their row counts: every outcome the run decided is a
    row of outcomes/, every kept clip a row of manifest/ and a sample of a shard in the index. A difference
    means rows were lost (or doubled) on their way to the files: the run fails as for any violation."""
    problems = []
    for name, expected, what in (("outcomes", outcomes, "outcomes decided"), ("manifest", kept_clips, "clips kept")):
        table = tables.get(name)
        if table is not None and table.rows != expected:
            problems.append(f"table {name}/: {table.rows} rows written for {expected} {what}")
    in_shards = sum(s["clips"] for s in shard_index)
    if in_shards != kept_clips:
        problems.append(f"shards: {in_shards} samples in the shard index for {kept_clips} clips kept")
    return problems


def conservation_block(num_violations: int, listed: Iterable[str]) -> Conservation:
    return Conservation(num_violations == 0, num_violations, list(listed)[:MAX_LISTED_VIOLATIONS])


def conservation_violations(registrations: Iterable[Registration], outcomes: Iterable[Outcome]) -> list[str]:
    """Every violation message, sorted by item (in memory: tests and small runs; the run uses ``Conservation``)."""
    events: dict = collections.defaultdict(list)
    for item in [*registrations, *outcomes]:
        key, event = conservation_event(item)
        events[key].append(event)
    return [m for key in sorted(events) if (m := violation(key, balance_of(events[key])))]


# ---- aggregates over outcomes (combiners: bounded accumulators, exact and order-free) ---------------------
def _micro(seconds: float | None) -> int:
    """Durations are summed as integer microseconds: a float sum would depend on the order Beam merges in."""
    return round((seconds or 0.0) * 1_000_000)


def _hours(micro_s: int) -> float:
    return round(micro_s / 1_000_000 / 3600.0, 6)


def _bin(edges: tuple[float, ...], value: float) -> int:
    """The histogram bin of ``value``; values outside the edges count in the first or last bin."""
    return min(max(bisect.bisect_right(edges, value) - 1, 0), len(edges) - 2)


class Cell(typing.NamedTuple):
    """What ``OutcomeStatsFn`` counts outcomes by: everything in ``stats.json`` about outcomes derives from it."""

    kind: str  # reasons.ITEM_VIDEO / ITEM_CLIP
    stage: str
    outcome: str  # kept / dropped / failed
    reason: str
    search_failure: bool  # an input that never became a candidate (an unreadable row, a failed query)
    scored: bool  # the clip has a quality score


class Tally(typing.NamedTuple):
    """What a ``Cell`` counts: its outcomes and their summed duration (integer microseconds, see ``_micro``)."""

    count: int
    micro_s: int

    def plus(self, other: Tally) -> Tally:
        return Tally(self.count + other.count, self.micro_s + other.micro_s)


@dataclasses.dataclass
class OutcomeTallies:
    """``OutcomeStatsFn``'s accumulator: a ``Tally`` per ``Cell``, and per histogram of ``HISTOGRAMS`` the counts
    per group on its fixed bins. Bounded: cells are combinations of codes, bins are fixed."""

    tallies: dict[Cell, Tally] = dataclasses.field(default_factory=dict)
    histograms: dict[str, dict[str, list[int]]] = dataclasses.field(default_factory=lambda: {
        name: {group: [0] * (len(edges) - 1) for group in groups} for name, (edges, groups) in HISTOGRAMS.items()})

    def count(self, cell: Cell, tally: Tally) -> None:
        self.tallies[cell] = self.tallies.get(cell, Tally(0, 0)).plus(tally)

    def cells(self) -> list[tuple[Cell, Tally]]:
        """(cell, tally) per cell, in a fixed order; cells come back as ``Cell`` whatever carried them."""
        return [(Cell._make(cell), Tally._make(tally)) for cell, tally in sorted(self.tallies.items())]


class OutcomeStatsFn(beam.CombineFn):
    """Outcomes -> count and duration per (kind, stage, outcome, reason, search failure?, scored?) cell, and
    the report's two histograms on fixed bins. Everything in ``stats.json`` about outcomes derives from it."""

    def create_accumulator(self):
        return OutcomeTallies()

    def add_input(self, acc: OutcomeTallies, o: Outcome):
        search_failure = is_search_failure(o)
        acc.count(Cell(o.item_kind, o.stage, o.outcome, o.reason, search_failure, o.quality_score is not None),
                  Tally(1, _micro(o.duration_s)))
        if o.item_kind == reasons.ITEM_VIDEO and o.duration_s and not search_failure:
            group = "kept" if o.outcome == reasons.KEPT else "dropped/failed"
            acc.histograms[VIDEO_MINUTES][group][_bin(HISTOGRAMS[VIDEO_MINUTES][0], o.duration_s / 60)] += 1
        if o.item_kind == reasons.ITEM_CLIP and o.quality_score is not None:
            group = "kept" if o.outcome == reasons.KEPT else "dropped"
            acc.histograms[QUALITY_SCORE][group][_bin(HISTOGRAMS[QUALITY_SCORE][0], o.quality_score)] += 1
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = next(accs)
        for acc in accs:
            for cell, tally in acc.tallies.items():
                out.count(cell, tally)
            for name, groups in acc.histograms.items():
                for group, bins in groups.items():
                    into = out.histograms[name]
                    into[group] = [a + b for a, b in zip(into[group], bins, strict=True)]
        return out

    def extract_output(self, acc):
        return acc


def outcome_aggregates(outcomes: Iterable[Outcome]) -> OutcomeTallies:
    """``OutcomeStatsFn`` over an in-memory or streamed iterable: the same code the run's combiner runs."""
    fn = OutcomeStatsFn()
    acc = fn.create_accumulator()
    for o in outcomes:
        acc = fn.add_input(acc, o)
    return fn.extract_output(acc)


class GroupSampleFn(beam.CombineFn):
    """``(group, rank, value)`` -> ``{group: [value, ...]}``: the ``n`` values of smallest rank per group.

    A deterministic, bounded sample (n per group; groups are reason codes or outcome groups, a bounded set):
    failure examples and the report's thumbnail picks. Ranks must be totally ordered (ties only between equal
    values)."""

    def __init__(self, n: int):
        self.n = n

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        group, rank, value = item
        kept = acc.setdefault(group, [])
        kept.append((rank, value))
        if len(kept) > 2 * self.n:
            acc[group] = heapq.nsmallest(self.n, kept, key=lambda rv: rv[0])
        return acc

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for group, kept in acc.items():
                out[group] = heapq.nsmallest(self.n, out.get(group, []) + kept, key=lambda rv: rv[0])
        return out

    def extract_output(self, acc):
        return {group: [v for _, v in heapq.nsmallest(self.n, kept, key=lambda rv: rv[0])]
                for group, kept in sorted(acc.items())}


def sample_locally(n: int, items: Iterable[tuple]) -> dict:
    fn = GroupSampleFn(n)
    acc = fn.create_accumulator()
    for item in items:
        acc = fn.add_input(acc, item)
    return fn.extract_output(fn.merge_accumulators([acc]))


def failure_example(o: Outcome):
    """``(reason group, rank, example)`` for a failed outcome: the report's failure table samples these."""
    if o.outcome == reasons.FAILED:
        yield (f"{o.item_kind}:{o.stage}:{o.reason}", (o.item_id, outcome_sort_key(o)),
               FailureExample(o.item_kind, o.item_id, o.stage, o.reason, o.detail[:DETAIL_CHARS]))


class KeyCountsFn(beam.CombineFn):
    """Keys -> ``{key: count}`` over a small key set (births by kind)."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, key):
        acc[key] += 1
        return acc

    def merge_accumulators(self, accs):
        out = collections.Counter()
        for acc in accs:
            out.update(acc)
        return out

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


MAX_LISTED_SITES = 50  # sites listed by name in stats.json (most requests first); the rest are summed
MAX_TRACKED_SITES = 1000  # sites a SiteUsageFn accumulator keeps by name before it sums the smallest
OTHER_SITES = "(other hosts)"  # no host name has parentheses


class SiteUsageFn(beam.CombineFn):
    """``SiteUsage`` records -> ``{site: SiteCost}``: one entry per site (YouTube, a named host, each other
    host). Bounded: beyond ``MAX_TRACKED_SITES`` sites (a catalog with a host per video) the ones with fewest
    requests are summed under ``OTHER_SITES``; the totals stay exact."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, usage):
        _add(acc, usage.site, SiteCost(usage.job_qps, usage.requests, usage.waited_s, usage.paused_s,
                                       usage.deferred))
        return _bounded(acc)

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for site, cost in acc.items():
                _add(out, site, cost)
            out = _bounded(out)
        return out

    def extract_output(self, acc):
        return acc


def _add(acc: dict[str, SiteCost], site: str, cost: SiteCost) -> None:
    """Add ``cost`` to ``site``'s entry; the entry keeps the budget (``job_qps``) it was first seen with."""
    into = acc.get(site, SiteCost(cost.job_qps))
    acc[site] = dataclasses.replace(into, requests=into.requests + cost.requests,
                                    waited_s=into.waited_s + cost.waited_s, paused_s=into.paused_s + cost.paused_s,
                                    deferred=into.deferred + cost.deferred)


def _bounded(acc: dict[str, SiteCost], keep: int | None = None) -> dict[str, SiteCost]:
    """``acc`` with at most ``keep`` (default ``MAX_TRACKED_SITES``) named sites, most requests first, and the
    rest summed under ``OTHER_SITES``."""
    keep = MAX_TRACKED_SITES if keep is None else keep
    named = [kv for kv in acc.items() if kv[0] != OTHER_SITES]
    if len(named) <= keep:
        return acc
    ranked = sorted(named, key=lambda kv: (-kv[1].requests, kv[0]))
    out = dict(ranked[:keep])
    for site in (OTHER_SITES, *(site for site, _ in ranked[keep:])):
        if site in acc:
            _add(out, OTHER_SITES, dataclasses.replace(acc[site], job_qps=None))
    return out


def sites_block(usage: dict[str, SiteCost]) -> dict[str, SiteCost]:
    """``stats.json``'s ``sites``: per site, its job-wide budget (``job_qps``, None: unthrottled), the requests
    sent and the seconds they waited on the budget (``waited_s``) and paused for the breaker (``paused_s``),
    the items its breaker deferred. The ``MAX_LISTED_SITES`` sites with most requests are listed by name; the
    others are summed under ``OTHER_SITES``."""
    bounded = _bounded(dict(usage), MAX_LISTED_SITES)
    return {site: dataclasses.replace(cost, waited_s=round(cost.waited_s, 3), paused_s=round(cost.paused_s, 3))
            for site, cost in sorted(bounded.items())}


SUMMARY_SITES = 5  # sites the run's console summary names (most requests first); stats.json lists more


def sites_summary(sites: dict[str, SiteCost]) -> list[str]:
    """The summary's lines for ``stats.json``'s ``sites``: per site, the requests sent, the time they waited on
    its budget and paused while it was blocking, the items its breaker deferred."""
    ranked = sorted(sites.items(), key=lambda kv: (-kv[1].requests, kv[0]))
    lines = []
    for name, s in ranked[:SUMMARY_SITES]:
        budget = f"budget {s.job_qps:g}/s" if s.job_qps is not None else "no budget"
        line = f"  site      {name}: {s.requests} request(s), {s.waited_s:.1f} s waited ({budget})"
        if s.paused_s:
            line += f", {s.paused_s:.1f} s paused (blocked)"
        if s.deferred:
            line += f", {s.deferred} deferred"
        lines.append(line)
    if len(ranked) > SUMMARY_SITES:
        lines.append(f"  site      ... {len(ranked) - SUMMARY_SITES} more in stats.json (sites)")
    return lines


def birth_kind(r: Registration) -> str | None:
    """What a born registration counts as in stats.json: a candidate video, a search failure or a cut clip."""
    if not r.born:
        return None
    if r.search_failure:
        return "search_failure"
    return r.item_kind


# ---- stats.json ------------------------------------------------------------------------------------------
def funnel(agg: OutcomeTallies) -> list[FunnelRow]:
    """Per stage: items in and out, hours in and out, and the count per (outcome, reason) decided there.

    An item is *in* a stage when its final outcome was decided there or later, and *out* when it went on
    (decided later, or kept there). Videos are followed to segmentation, clips from segmentation on. Search
    failures are not videos: the search row counts them as ``search_failures`` (and under ``reasons``).
    """
    cells = agg.cells()
    rows = []
    for stage in reasons.STAGES:
        here = stage_index(stage)
        flows: dict[str, Flow] = {}
        for kind, stages in ((reasons.ITEM_VIDEO, VIDEO_STAGES), (reasons.ITEM_CLIP, CLIP_STAGES)):
            if stage not in stages:
                continue
            items = [(c, t) for c, t in cells
                     if c.kind == kind and stage_index(c.stage) >= here and not c.search_failure]
            out = [(c, t) for c, t in items if stage_index(c.stage) > here or c.outcome == reasons.KEPT]
            flows[kind] = Flow(sum(t.count for _, t in items), sum(t.count for _, t in out),
                               _hours(sum(t.micro_s for _, t in items)), _hours(sum(t.micro_s for _, t in out)))
        decided: collections.Counter = collections.Counter()
        for c, t in cells:
            if c.stage == stage and c.outcome != reasons.KEPT:
                decided[f"{c.kind}:{c.outcome}:{c.reason}"] += t.count
        search_failures = (sum(t.count for c, t in cells if c.search_failure) if stage == reasons.STAGE_SEARCH
                           else None)
        rows.append(FunnelRow(stage, dict(sorted(decided.items())), flows.get(reasons.ITEM_VIDEO),
                              flows.get(reasons.ITEM_CLIP), search_failures))
    return rows


def quality_stats(agg: OutcomeTallies, settings: QualitySettings | None = None) -> QualityStats:
    """What the quality stage did: which model and threshold, and how many clips it scored, passed unscored,
    failed or dropped. A run without ``--classifier`` says so here (``classifier`` null, every clip that
    reached the stage ``clips_unscored``) instead of only in a Beam counter."""
    here = stage_index(reasons.STAGE_QUALITY)
    reached = [(c, t.count) for c, t in agg.cells() if c.kind == reasons.ITEM_CLIP and stage_index(c.stage) >= here]
    at_quality = [(c, n) for c, n in reached if c.stage == reasons.STAGE_QUALITY]
    scored = sum(n for c, n in reached if c.scored)
    failed = sum(n for c, n in at_quality if c.outcome == reasons.FAILED)
    return QualityStats(
        settings=settings or QualitySettings(),
        clips_in=sum(n for _, n in reached),
        clips_scored=scored,
        clips_unscored=sum(n for _, n in reached) - scored - failed,
        clips_failed=failed,
        clips_dropped_low_quality=sum(n for c, n in at_quality
                                      if reasons.reason_family(c.reason) == reasons.LOW_QUALITY),
    )


def deferred_counts(reason_counts: list[tuple[ReasonKey, int]]) -> Deferred:
    """Items that ended ``deferred``, from the counts per reason (``Stats.reasons_by_key``). Deferred search
    queries are search failures, not videos."""
    videos = queries = 0
    for key, count in reason_counts:
        if key.family != reasons.DEFERRED:
            continue
        if key.stage == reasons.STAGE_SEARCH:
            queries += count
        elif key.kind == reasons.ITEM_VIDEO:
            videos += count
    return Deferred(videos=videos, search_queries=queries)


def assemble_stats(agg: OutcomeTallies, births: dict, conservation: Conservation,
                   failure_examples: dict[str, list[FailureExample]], thumbnails: dict[str, list[ThumbnailPick]],
                   num_shards: int, quality: QualitySettings | None = None,
                   tables: dict[str, TableParts] | None = None, sites: dict[str, SiteCost] | None = None) -> Stats:
    """``stats.json`` from the aggregates only: ``agg`` (``OutcomeStatsFn``), ``births`` (``KeyCountsFn`` of
    ``birth_kind``), the conservation verdict, the bounded samples, the shard count, the quality stage's
    settings (``Quality.settings``; None: no classifier), the per-item tables' part counts and what each site
    cost (``SiteUsageFn``; the ``sites`` block: this run's traffic, not part of the identity promise)."""
    totals: dict = {reasons.ITEM_VIDEO: collections.Counter(), reasons.ITEM_CLIP: collections.Counter()}
    by_reason: collections.Counter = collections.Counter()
    failures: collections.Counter = collections.Counter()
    video_micro = kept_clip_micro = 0
    for c, t in agg.cells():
        if c.search_failure:
            failures[reasons.reason_family(c.reason)] += t.count
        else:
            totals[c.kind][c.outcome] += t.count
        if c.kind == reasons.ITEM_VIDEO and not c.search_failure:
            video_micro += t.micro_s
        if c.kind == reasons.ITEM_CLIP and c.outcome == reasons.KEPT:
            kept_clip_micro += t.micro_s
        if c.outcome != reasons.KEPT:
            by_reason[ReasonKey(c.kind, c.stage, c.outcome, reasons.reason_family(c.reason))] += t.count
    histograms = Histograms(**{name: Histogram(list(edges), {g: agg.histograms[name][g] for g in groups})
                               for name, (edges, groups) in HISTOGRAMS.items()})
    reason_counts = sorted(by_reason.items(), key=lambda kv: kv[0].text())
    return Stats(
        videos=VideoCounts(births.get(reasons.ITEM_VIDEO, 0), **totals[reasons.ITEM_VIDEO]),
        search_failures=SearchFailures(births.get("search_failure", 0), dict(sorted(failures.items()))),
        clips=ClipCounts(births.get(reasons.ITEM_CLIP, 0), **totals[reasons.ITEM_CLIP]),
        hours=Hours(candidate_video=_hours(video_micro), kept_clips=_hours(kept_clip_micro)),
        shards=num_shards,
        funnel=funnel(agg),
        quality=quality_stats(agg, quality),
        reason_counts={key.text(): n for key, n in reason_counts},
        histograms=histograms,
        failure_examples=failure_examples,
        thumbnails=thumbnails,
        conservation=conservation,
        sites=sites_block(sites or {}),
        deferred=deferred_counts(reason_counts),
        tables=tables,
    )


def compute_stats(outcomes: list[Outcome], registrations: list[Registration], num_shards: int,
                  quality: QualitySettings | None = None, per_group: int | None = None) -> Stats:
    """``stats.json`` of in-memory records through the same combiners the run uses (tests, small tools)."""
    per_group = report.SAMPLES_PER_GROUP if per_group is None else per_group
    births = collections.Counter(k for r in registrations if (k := birth_kind(r)))
    violations = conservation_violations(registrations, outcomes)
    return assemble_stats(
        outcome_aggregates(outcomes), dict(births), conservation_block(len(violations), violations),
        sample_locally(FAILURE_EXAMPLES_PER_REASON, (x for o in outcomes for x in failure_example(o))),
        sample_locally(per_group, (x for o in outcomes for x in report.thumbnail_pick(o))),
        num_shards, quality)


def failure_message(stats: Stats) -> str:
    """What a failed run prints: the violated law, with the items and stages involved."""
    c = stats.conservation
    lines = [f"conservation check FAILED: {c.num_violations} item(s) without exactly one outcome:"]
    lines += [f"  - {v}" for v in c.violations]
    if c.num_violations > len(c.violations):
        lines.append(f"  ... and {c.num_violations - len(c.violations)} more")
    return "\n".join(lines)


# ---- Beam ------------------------------------------------------------------------------------------------
class _Register(beam.DoFn):
    """Registration of each item handed to ``stage``, counted in the job's progress."""

    def __init__(self, kind: str, stage: str, born: bool, progress_dir: str):
        self.kind, self.stage, self.born, self.progress_dir = kind, stage, born, progress_dir

    def process(self, item):
        key = item.clip_key if self.kind == reasons.ITEM_CLIP else item.video_id
        progress.count(self.progress_dir, f"pass/{self.kind}/{self.stage}")
        yield Registration(self.kind, key, self.stage, self.born)

    def finish_bundle(self):
        progress.flush(self.progress_dir)


def register(items, kind: str, stage: str, born: bool, label: str, progress_dir: str = ""):
    """A PCollection of Registrations for the items (Clips, CandidateVideos, ...) of one stage boundary."""
    return items | label >> beam.ParDo(_Register(kind, stage, born, progress_dir))


def register_outcomes(outcomes, kind: str, label: str):
    """Items born with their outcome (search drops and failures, segment short tails): born where they were
    decided; search failures are marked so the stats do not count them as candidate videos."""
    return (outcomes
            | f"{label}Filter" >> beam.Filter(lambda o: o.item_kind == kind)
            | label >> beam.Map(lambda o: Registration(o.item_kind, o.item_id, o.stage, True,
                                                       search_failure=is_search_failure(o))))


class CountOutcomes(beam.DoFn):
    """Beam counters per stage/kind/outcome/reason, and the job's progress tally (``pipeline.runtime.progress``).

    Applied to each stage's own outcomes (not behind the flatten of all stages' outcomes, which a local
    runner only runs once every stage is done), so it is fused into the step that decides and the counts
    grow while that stage works.
    """

    def __init__(self, stage: str, progress_dir: str = ""):
        self.stage = stage
        self.progress_dir = progress_dir

    def process(self, outcome: Outcome):
        ns = f"outcomes/{outcome.stage}"
        beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}").inc()
        if outcome.reason:
            family = reasons.reason_family(outcome.reason)
            beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}/{family}").inc()
        progress.count(self.progress_dir, f"out/{outcome.stage}/{outcome.item_kind}/{outcome.outcome}")
        yield outcome

    def finish_bundle(self):
        progress.flush(self.progress_dir)
