"""Audit of a run: every item's fate, the per-stage funnel, and the conservation law that nothing was lost.

Conservation: every candidate video and every clip cut ends in exactly one ``Outcome``. The run registers
each item where it is born (a video when the search stage proposes or drops it, a clip when the segment
stage cuts or drops it) and notes each stage an item enters; the audit compares, per item id, the number of
births with the number of outcomes (a multiset, so a catalog listing one id twice is two items). Any
difference is a violation naming the item and the last stage it was seen in; the run fails loudly on one.
At scale this is a keyed sum (events grouped by (kind, id), folded by ``balance_of``): each birth +1, each
outcome -1 per item; only the count of violations and a bounded sample of them reach one process.

Everything else in ``stats.json`` comes from combiners with bounded accumulators (``OutcomeStatsFn``:
counts and durations per (kind, stage, outcome, reason) cell and fixed-bin histograms; ``GroupSampleFn``:
the n smallest per group, for failure examples and thumbnail picks; ``KeyCountsFn``: births by kind), so
the run's memory per worker does not grow with the number of items. The same functions run in memory for
tests and stream over a finished run's tables for ``python -m pipeline audit``.

Search failures (an unreadable catalog row or file, a failed query) are items of the law too, with one
``failed`` outcome each, but they were never candidate videos: ``stats.json`` counts them apart
(``search_failures``) so the video counts and the funnel count videos only.

The same counts feed Beam counters while the job runs (``outcomes/<stage>`` namespace: visible in the
Dataflow UI), counted in each stage's own outcome path so they grow as that stage works, and ``stats.json``
at the end. Nothing in ``stats.json`` depends on timing or ordering, so a rerun on the same inputs writes
the same file.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import heapq
import json
import logging
import typing
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from pipeline.audit import report
from pipeline.audit.report import FAILURE_EXAMPLES_PER_REASON
from pipeline.runtime import progress
from schemas import SCHEMA_VERSION, Outcome, reasons

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


def decided_and_kept(agg: dict) -> tuple[int, int]:
    """(outcomes decided, clips kept) from ``OutcomeStatsFn``'s cells: what the written tables must hold."""
    decided = kept = 0
    for (kind, _, outcome, *_), (n, _) in agg["cells"].items():
        decided += n
        if kind == reasons.ITEM_CLIP and outcome == reasons.KEPT:
            kept += n
    return decided, kept


def table_violations(outcomes: int, kept_clips: int, tables: dict, shard_index: list[dict]) -> list[str]:
    """What the written tables must hold, checked from their row counts: every outcome the run decided is a
    row of outcomes/, every kept clip a row of manifest/ and a sample of a shard in the index. A difference
    means rows were lost (or doubled) on their way to the files: the run fails as for any violation."""
    problems = []
    rows = tables.get("outcomes", {}).get("rows")
    if rows is not None and rows != outcomes:
        problems.append(f"table outcomes/: {rows} rows written for {outcomes} outcomes decided")
    rows = tables.get("manifest", {}).get("rows")
    if rows is not None and rows != kept_clips:
        problems.append(f"table manifest/: {rows} rows written for {kept_clips} clips kept")
    in_shards = sum(s["clips"] for s in shard_index)
    if in_shards != kept_clips:
        problems.append(f"shards: {in_shards} samples in the shard index for {kept_clips} clips kept")
    return problems


def conservation_block(num_violations: int, listed: Iterable[str]) -> dict:
    listed = list(listed)[:MAX_LISTED_VIOLATIONS]
    return {"ok": num_violations == 0, "num_violations": num_violations, "violations": listed}


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


class OutcomeStatsFn(beam.CombineFn):
    """Outcomes -> count and duration per (kind, stage, outcome, reason, search failure?, scored?) cell, and
    the report's two histograms on fixed bins. Everything in ``stats.json`` about outcomes derives from it."""

    def create_accumulator(self):
        return {"cells": {}, **{name: {group: [0] * (len(edges) - 1) for group in groups}
                                for name, (edges, groups) in HISTOGRAMS.items()}}

    def add_input(self, acc, o: Outcome):
        cell = Cell(o.item_kind, o.stage, o.outcome, o.reason, is_search_failure(o), o.quality_score is not None)
        counts = acc["cells"].setdefault(cell, [0, 0])
        counts[0] += 1
        counts[1] += _micro(o.duration_s)
        if o.item_kind == reasons.ITEM_VIDEO and o.duration_s and not is_search_failure(o):
            group = "kept" if o.outcome == reasons.KEPT else "dropped/failed"
            acc[VIDEO_MINUTES][group][_bin(HISTOGRAMS[VIDEO_MINUTES][0], o.duration_s / 60)] += 1
        if o.item_kind == reasons.ITEM_CLIP and o.quality_score is not None:
            group = "kept" if o.outcome == reasons.KEPT else "dropped"
            acc[QUALITY_SCORE][group][_bin(HISTOGRAMS[QUALITY_SCORE][0], o.quality_score)] += 1
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = next(accs)
        for acc in accs:
            for cell, (n, micro) in acc["cells"].items():
                counts = out["cells"].setdefault(cell, [0, 0])
                counts[0] += n
                counts[1] += micro
            for name in HISTOGRAMS:
                for group, bins in acc[name].items():
                    out[name][group] = [a + b for a, b in zip(out[name][group], bins, strict=True)]
        return out

    def extract_output(self, acc):
        return acc


def outcome_aggregates(outcomes: Iterable[Outcome]) -> dict:
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
    """``(reason group, rank, row)`` for a failed outcome: the report's failure table samples these."""
    if o.outcome == reasons.FAILED:
        yield (f"{o.item_kind}:{o.stage}:{o.reason}", (o.item_id, outcome_sort_key(o)),
               {"item_kind": o.item_kind, "item_id": o.item_id, "stage": o.stage, "reason": o.reason,
                "detail": o.detail[:DETAIL_CHARS]})


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
_SUMS = ("requests", "waited_s", "paused_s", "deferred")


class SiteUsageFn(beam.CombineFn):
    """``SiteUsage`` records -> ``{site: {job_qps, requests, waited_s, paused_s, deferred}}``: one entry per site
    (YouTube, a named host, each other host). Bounded: beyond ``MAX_TRACKED_SITES`` sites (a catalog with a
    host per video) the ones with fewest requests are summed under ``OTHER_SITES``; the totals stay exact."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, usage):
        _add(acc, usage.site, {"job_qps": usage.job_qps, **{name: getattr(usage, name) for name in _SUMS}})
        return _bounded(acc)

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for site, entry in acc.items():
                _add(out, site, entry)
            out = _bounded(out)
        return out

    def extract_output(self, acc):
        return acc


def _add(acc: dict, site: str, entry: dict) -> None:
    into = acc.setdefault(site, {"job_qps": entry["job_qps"], "requests": 0, "waited_s": 0.0, "paused_s": 0.0,
                                 "deferred": 0})
    for name in _SUMS:
        into[name] += entry[name]


def _bounded(acc: dict, keep: int | None = None) -> dict:
    """``acc`` with at most ``keep`` (default ``MAX_TRACKED_SITES``) named sites, most requests first, and the
    rest summed under ``OTHER_SITES``."""
    keep = MAX_TRACKED_SITES if keep is None else keep
    named = [kv for kv in acc.items() if kv[0] != OTHER_SITES]
    if len(named) <= keep:
        return acc
    ranked = sorted(named, key=lambda kv: (-kv[1]["requests"], kv[0]))
    out = dict(ranked[:keep])
    for site in (OTHER_SITES, *(site for site, _ in ranked[keep:])):
        if site in acc:
            _add(out, OTHER_SITES, {**acc[site], "job_qps": None})
    return out


def sites_block(usage: dict) -> dict:
    """``stats.json``'s ``sites``: per site, its job-wide budget (``job_qps``, None: unthrottled), the requests
    sent and the seconds they waited on the budget (``waited_s``) and paused for the breaker (``paused_s``),
    the items its breaker deferred. The ``MAX_LISTED_SITES`` sites with most requests are listed by name; the
    others are summed under ``OTHER_SITES``."""
    bounded = _bounded(dict(usage), MAX_LISTED_SITES)
    return {site: _rounded(entry) for site, entry in sorted(bounded.items())}


def _rounded(entry: dict) -> dict:
    return {**entry, "waited_s": round(entry["waited_s"], 3), "paused_s": round(entry["paused_s"], 3)}


SUMMARY_SITES = 5  # sites the run's console summary names (most requests first); stats.json lists more


def sites_summary(sites: dict) -> list[str]:
    """The summary's lines for ``stats.json``'s ``sites``: per site, the requests sent, the time they waited on
    its budget and paused while it was blocking, the items its breaker deferred."""
    ranked = sorted(sites.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))
    lines = []
    for name, s in ranked[:SUMMARY_SITES]:
        budget = f"budget {s['job_qps']:g}/s" if s["job_qps"] is not None else "no budget"
        line = f"  site      {name}: {s['requests']} request(s), {s['waited_s']:.1f} s waited ({budget})"
        if s["paused_s"]:
            line += f", {s['paused_s']:.1f} s paused (blocked)"
        if s["deferred"]:
            line += f", {s['deferred']} deferred"
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
def _cells(agg: dict) -> list[tuple[Cell, int, int]]:
    """(cell, count, microseconds) per cell, in a fixed order; cells come back as ``Cell`` whatever carried them."""
    return [(Cell(*cell), n, micro) for cell, (n, micro) in sorted(agg["cells"].items())]


def funnel(agg: dict) -> list[dict]:
    """Per stage: items in and out, hours in and out, and the count per (outcome, reason) decided there.

    An item is *in* a stage when its final outcome was decided there or later, and *out* when it went on
    (decided later, or kept there). Videos are followed to segmentation, clips from segmentation on. Search
    failures are not videos: the search row counts them as ``search_failures`` (and under ``reasons``).
    """
    cells = _cells(agg)
    rows = []
    for stage in reasons.STAGES:
        row: dict = {"stage": stage}
        here = stage_index(stage)
        for kind, stages in ((reasons.ITEM_VIDEO, VIDEO_STAGES), (reasons.ITEM_CLIP, CLIP_STAGES)):
            if stage not in stages:
                continue
            items = [(c, n, m) for c, n, m in cells
                     if c.kind == kind and stage_index(c.stage) >= here and not c.search_failure]
            out = [(c, n, m) for c, n, m in items if stage_index(c.stage) > here or c.outcome == reasons.KEPT]
            row.update({f"{kind}s_in": sum(n for _, n, _ in items), f"{kind}s_out": sum(n for _, n, _ in out),
                        f"{kind}_hours_in": _hours(sum(m for _, _, m in items)),
                        f"{kind}_hours_out": _hours(sum(m for _, _, m in out))})
        decided: collections.Counter = collections.Counter()
        for c, n, _ in cells:
            if c.stage == stage and c.outcome != reasons.KEPT:
                decided[f"{c.kind}:{c.outcome}:{c.reason}"] += n
        row["reasons"] = dict(sorted(decided.items()))
        if stage == reasons.STAGE_SEARCH:
            row["search_failures"] = sum(n for c, n, _ in cells if c.search_failure)
        rows.append(row)
    return rows


def quality_stats(agg: dict, settings: dict | None = None) -> dict:
    """What the quality stage did: which model and threshold, and how many clips it scored, passed unscored,
    failed or dropped. A run without ``--classifier`` says so here (``classifier`` null, every clip that
    reached the stage ``clips_unscored``) instead of only in a Beam counter."""
    settings = settings or {}
    here = stage_index(reasons.STAGE_QUALITY)
    reached = [(c, n) for c, n, _ in _cells(agg) if c.kind == reasons.ITEM_CLIP and stage_index(c.stage) >= here]
    at_quality = [(c, n) for c, n in reached if c.stage == reasons.STAGE_QUALITY]
    scored = sum(n for c, n in reached if c.scored)
    failed = sum(n for c, n in at_quality if c.outcome == reasons.FAILED)
    return {
        "classifier": settings.get("classifier"),
        "threshold": settings.get("threshold"),
        "rule": settings.get("rule"),
        "margin": settings.get("margin"),
        "clips_in": sum(n for _, n in reached),
        "clips_scored": scored,
        "clips_unscored": sum(n for _, n in reached) - scored - failed,
        "clips_failed": failed,
        "clips_dropped_low_quality": sum(n for c, n in at_quality
                                         if reasons.reason_family(c.reason) == reasons.LOW_QUALITY),
    }


def deferred_counts(stats: dict) -> dict[str, int]:
    """``{"videos": n, "search_queries": m}``: items that ended ``deferred``, from ``stats["reason_counts"]``
    (keys ``kind:stage:outcome:reason_family``). Deferred search queries are search failures, not videos."""
    videos = queries = 0
    for key, count in stats.get("reason_counts", {}).items():
        kind, stage, _outcome, family = key.split(":", 3)
        if family != reasons.DEFERRED:
            continue
        if stage == reasons.STAGE_SEARCH:
            queries += count
        elif kind == reasons.ITEM_VIDEO:
            videos += count
    return {"videos": videos, "search_queries": queries}


def assemble_stats(agg: dict, births: dict, conservation: dict, failure_examples: dict, thumbnails: dict,
                   num_shards: int, quality: dict | None = None, tables: dict | None = None,
                   sites: dict | None = None) -> dict:
    """``stats.json`` from the aggregates only: ``agg`` (``OutcomeStatsFn``), ``births`` (``KeyCountsFn`` of
    ``birth_kind``), the conservation verdict, the bounded samples, the shard count, the quality stage's
    settings (``Quality.settings``; None: no classifier), the per-item tables' part counts and what each site
    cost (``SiteUsageFn``; the ``sites`` block: this run's traffic, not part of the identity promise)."""
    cells = _cells(agg)
    totals: dict = {reasons.ITEM_VIDEO: collections.Counter(), reasons.ITEM_CLIP: collections.Counter()}
    by_reason: collections.Counter = collections.Counter()
    failures: collections.Counter = collections.Counter()
    video_micro = kept_clip_micro = 0
    for (kind, stage, outcome, reason, search_failure, _), n, micro in cells:
        if search_failure:
            failures[reasons.reason_family(reason)] += n
        else:
            totals[kind][outcome] += n
        if kind == reasons.ITEM_VIDEO and not search_failure:
            video_micro += micro
        if kind == reasons.ITEM_CLIP and outcome == reasons.KEPT:
            kept_clip_micro += micro
        if outcome != reasons.KEPT:
            by_reason[f"{kind}:{stage}:{outcome}:{reasons.reason_family(reason)}"] += n
    histograms = {name: {"edges": list(edges), **{g: agg[name][g] for g in groups}}
                  for name, (edges, groups) in HISTOGRAMS.items()}
    stats = {
        "schema_version": SCHEMA_VERSION,
        "videos": {"candidates": births.get(reasons.ITEM_VIDEO, 0), **dict(sorted(totals[reasons.ITEM_VIDEO].items()))},
        "search_failures": {"count": births.get("search_failure", 0), "by_reason": dict(sorted(failures.items()))},
        "clips": {"cut": births.get(reasons.ITEM_CLIP, 0), **dict(sorted(totals[reasons.ITEM_CLIP].items()))},
        "hours": {"candidate_video": _hours(video_micro), "kept_clips": _hours(kept_clip_micro)},
        "shards": num_shards,
        "funnel": funnel(agg),
        "quality": quality_stats(agg, quality),
        "reason_counts": dict(sorted(by_reason.items())),
        "histograms": histograms,
        "failure_examples": failure_examples,
        "thumbnails": thumbnails,
        "conservation": conservation,
        "sites": sites_block(sites or {}),
    }
    stats["deferred"] = deferred_counts(stats)
    if tables is not None:
        stats["tables"] = tables
    return stats


def compute_stats(outcomes: list[Outcome], registrations: list[Registration], num_shards: int,
                  quality: dict | None = None, per_group: int | None = None) -> dict:
    """``stats.json`` of in-memory records through the same combiners the run uses (tests, small tools)."""
    per_group = report.SAMPLES_PER_GROUP if per_group is None else per_group
    births = collections.Counter(k for r in registrations if (k := birth_kind(r)))
    violations = conservation_violations(registrations, outcomes)
    return assemble_stats(
        outcome_aggregates(outcomes), dict(births), conservation_block(len(violations), violations),
        sample_locally(FAILURE_EXAMPLES_PER_REASON, (x for o in outcomes for x in failure_example(o))),
        sample_locally(per_group, (x for o in outcomes for x in report.thumbnail_pick(o))),
        num_shards, quality)


def stats_json(stats: dict) -> bytes:
    return (json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def failure_message(stats: dict) -> str:
    """What a failed run prints: the violated law, with the items and stages involved."""
    c = stats["conservation"]
    lines = [f"conservation check FAILED: {c['num_violations']} item(s) without exactly one outcome:"]
    lines += [f"  - {v}" for v in c["violations"]]
    if c["num_violations"] > len(c["violations"]):
        lines.append(f"  ... and {c['num_violations'] - len(c['violations'])} more")
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
