"""Audit of a run: every item's fate, the per-stage funnel, and the conservation law that nothing was lost.

Conservation: every candidate video and every clip cut ends in exactly one ``Outcome``. The run registers
each item where it is born (a video when the search stage proposes or drops it, a clip when the segment
stage cuts or drops it) and notes each stage an item enters; the audit compares, per item id, the number of
births with the number of outcomes (a multiset, so a catalog listing one id twice is two items). Any
difference is a violation naming the item and the last stage it was seen in; the run fails loudly on one.

Search failures (an unreadable catalog row or file, a failed query) are items of the law too, with one
``failed`` outcome each, but they were never candidate videos: ``stats.json`` counts them apart
(``search_failures``) so the video counts and the funnel count videos only.

The same counts feed Beam counters while the job runs (``outcomes/<stage>`` namespace: visible in the
Dataflow UI), counted in each stage's own outcome path so they grow as that stage works, and ``stats.json``
at the end. Nothing in ``stats.json`` depends on timing or ordering, so a rerun on the same inputs writes
the same file.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable

import apache_beam as beam

from schemas import SCHEMA_VERSION, Outcome, reasons

log = logging.getLogger(__name__)

VIDEO_STAGES = (reasons.STAGE_SEARCH, reasons.STAGE_DOWNLOAD, reasons.STAGE_SEGMENT)
CLIP_STAGES = (reasons.STAGE_SEGMENT, reasons.STAGE_QUALITY, reasons.STAGE_SHARD)
MAX_LISTED_VIOLATIONS = 50


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


# ---- conservation ------------------------------------------------------------------------------------------
def conservation_violations(registrations: Iterable[Registration], outcomes: Iterable[Outcome]) -> list[str]:
    """One message per item whose outcome count differs from its birth count (empty when the law holds)."""
    born: collections.Counter = collections.Counter()
    last_stage: dict[tuple[str, str], str] = {}
    for r in registrations:
        key = (r.item_kind, r.item_id)
        if r.born:
            born[key] += 1
        if key not in last_stage or stage_index(r.stage) > stage_index(last_stage[key]):
            last_stage[key] = r.stage
    decided: collections.Counter = collections.Counter()
    stages_of: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for o in outcomes:
        key = (o.item_kind, o.item_id)
        decided[key] += 1
        stages_of[key].append(f"{o.stage}:{o.outcome}")
    violations = []
    for key in sorted(set(born) | set(decided)):
        kind, item = key
        if born[key] == decided[key]:
            continue
        if decided[key] == 0:
            violations.append(f"{kind} {item!r}: reached stage '{last_stage.get(key, '?')}' and no stage "
                              f"gave it an outcome")
        elif born[key] == 0:
            violations.append(f"{kind} {item!r}: outcome(s) {stages_of[key]} but no stage registered it")
        else:
            violations.append(f"{kind} {item!r}: {decided[key]} outcomes {stages_of[key]} for "
                              f"{born[key]} item(s)")
    return violations


# ---- funnel --------------------------------------------------------------------------------------------
def _hours(items: Iterable[Outcome]) -> float:
    return round(sum(o.duration_s or 0.0 for o in items) / 3600.0, 6)


def funnel(outcomes: list[Outcome]) -> list[dict]:
    """Per stage: items in and out, hours in and out, and the count per (outcome, reason) decided there.

    An item is *in* a stage when its final outcome was decided there or later, and *out* when it went on
    (decided later, or kept there). Videos are followed to segmentation, clips from segmentation on. Search
    failures are not videos: the search row counts them as ``search_failures`` (and under ``reasons``).
    """
    rows = []
    for stage in reasons.STAGES:
        row: dict = {"stage": stage}
        here = stage_index(stage)
        for kind, stages in ((reasons.ITEM_VIDEO, VIDEO_STAGES), (reasons.ITEM_CLIP, CLIP_STAGES)):
            if stage not in stages:
                continue
            items = [o for o in outcomes if o.item_kind == kind and stage_index(o.stage) >= here
                     and not is_search_failure(o)]
            out = [o for o in items if stage_index(o.stage) > here or o.outcome == reasons.KEPT]
            row.update({f"{kind}s_in": len(items), f"{kind}s_out": len(out),
                        f"{kind}_hours_in": _hours(items), f"{kind}_hours_out": _hours(out)})
        decided = collections.Counter(f"{o.item_kind}:{o.outcome}:{o.reason}" for o in outcomes
                                      if o.stage == stage and o.outcome != reasons.KEPT)
        row["reasons"] = dict(sorted(decided.items()))
        if stage == reasons.STAGE_SEARCH:
            row["search_failures"] = sum(1 for o in outcomes if is_search_failure(o))
        rows.append(row)
    return rows


def quality_stats(outcomes: list[Outcome], settings: dict | None = None) -> dict:
    """What the quality stage did: which model and threshold, and how many clips it scored, passed unscored,
    failed or dropped. A run without ``--classifier`` says so here (``classifier`` null, every clip that
    reached the stage ``clips_unscored``) instead of only in a Beam counter."""
    settings = settings or {}
    here = stage_index(reasons.STAGE_QUALITY)
    reached = [o for o in outcomes if o.item_kind == reasons.ITEM_CLIP and stage_index(o.stage) >= here]
    scored = sum(1 for o in reached if o.quality_score is not None)
    failed = sum(1 for o in reached if o.stage == reasons.STAGE_QUALITY and o.outcome == reasons.FAILED)
    return {
        "classifier": settings.get("classifier"),
        "threshold": settings.get("threshold"),
        "rule": settings.get("rule"),
        "margin": settings.get("margin"),
        "clips_in": len(reached),
        "clips_scored": scored,
        "clips_unscored": len(reached) - scored - failed,
        "clips_failed": failed,
        "clips_dropped_low_quality": sum(1 for o in reached if o.stage == reasons.STAGE_QUALITY
                                         and reasons.reason_family(o.reason) == reasons.LOW_QUALITY),
    }


def compute_stats(outcomes: list[Outcome], registrations: list[Registration], num_shards: int,
                  quality: dict | None = None) -> dict:
    """``stats.json``. ``quality``: the quality stage's settings (``Quality.settings``; None: no classifier)."""
    violations = conservation_violations(registrations, outcomes)
    failures = [o for o in outcomes if is_search_failure(o)]
    videos = [o for o in outcomes if o.item_kind == reasons.ITEM_VIDEO and not is_search_failure(o)]
    clips = [o for o in outcomes if o.item_kind == reasons.ITEM_CLIP]
    totals = {kind: dict(sorted(collections.Counter(o.outcome for o in items).items()))
              for kind, items in ((reasons.ITEM_VIDEO, videos), (reasons.ITEM_CLIP, clips))}
    by_reason = collections.Counter(f"{o.item_kind}:{o.stage}:{o.outcome}:{reasons.reason_family(o.reason)}"
                                    for o in outcomes if o.outcome != reasons.KEPT)
    kept_clips = [o for o in outcomes if o.item_kind == reasons.ITEM_CLIP and o.outcome == reasons.KEPT]
    return {
        "schema_version": SCHEMA_VERSION,
        "videos": {"candidates": sum(1 for r in registrations if r.born and r.item_kind == reasons.ITEM_VIDEO
                                     and not r.search_failure),
                   **totals[reasons.ITEM_VIDEO]},
        "search_failures": {
            "count": sum(1 for r in registrations if r.born and r.search_failure),
            "by_reason": dict(sorted(collections.Counter(reasons.reason_family(o.reason) for o in failures).items())),
        },
        "clips": {"cut": sum(1 for r in registrations if r.born and r.item_kind == reasons.ITEM_CLIP),
                  **totals[reasons.ITEM_CLIP]},
        "hours": {"candidate_video": _hours(videos),
                  "kept_clips": _hours(kept_clips)},
        "shards": num_shards,
        "funnel": funnel(outcomes),
        "quality": quality_stats(outcomes, quality),
        "reason_counts": dict(sorted(by_reason.items())),
        "conservation": {"ok": not violations, "num_violations": len(violations),
                         "violations": violations[:MAX_LISTED_VIOLATIONS]},
    }


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
def register(items, kind: str, stage: str, born: bool, label: str):
    """A PCollection of Registrations for the items (Clips, CandidateVideos, ...) of one stage boundary."""
    if kind == reasons.ITEM_CLIP:
        return items | label >> beam.Map(lambda c: Registration(kind, c.clip_key, stage, born))
    return items | label >> beam.Map(lambda v: Registration(kind, v.video_id, stage, born))


def register_outcomes(outcomes, kind: str, label: str):
    """Items born with their outcome (search drops and failures, segment short tails): born where they were
    decided; search failures are marked so the stats do not count them as candidate videos."""
    return (outcomes
            | f"{label}Filter" >> beam.Filter(lambda o: o.item_kind == kind)
            | label >> beam.Map(lambda o: Registration(o.item_kind, o.item_id, o.stage, True,
                                                       search_failure=is_search_failure(o))))


class CountOutcomes(beam.DoFn):
    """Beam counters per stage/kind/outcome/reason, and a progress line now and then, for one stage.

    Applied to each stage's own outcomes (not behind the flatten of all stages' outcomes, which a local
    runner only runs once every stage is done), so it is fused into the step that decides and its counters
    and lines grow while that stage works. A line shows what this worker has seen of ``stage`` so far
    (Beam's counters ``outcomes/<stage>`` add up all workers): the first outcome at once, then at most one
    line every ``every_s`` seconds, and one at the end of a bundle with news since the last line.
    """

    def __init__(self, stage: str, every_s: float = 5.0):
        self.stage = stage
        self.every_s = every_s

    def setup(self):
        self._seen: collections.Counter = collections.Counter()
        self._last = 0.0
        self._unlogged = False

    def process(self, outcome: Outcome):
        ns = f"outcomes/{outcome.stage}"
        beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}").inc()
        if outcome.reason:
            family = reasons.reason_family(outcome.reason)
            beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}/{family}").inc()
        self._seen[(outcome.stage, outcome.item_kind, outcome.outcome)] += 1
        self._unlogged = True
        if time.monotonic() - self._last >= self.every_s:
            self._log()
        yield outcome

    def finish_bundle(self):
        if self._unlogged:
            self._log()

    def _log(self) -> None:
        self._last, self._unlogged = time.monotonic(), False
        # Each worker counts its own share: say so, or two workers' lines read like totals that jump about.
        log.info("progress: %s (this worker, pid %d)", progress_line(self._seen), os.getpid())


def progress_line(seen: collections.Counter) -> str:
    """``download: 3 videos failed | segment: 2 videos kept, 1 videos failed`` from (stage, kind, outcome) counts."""
    parts = []
    for stage in reasons.STAGES:
        counts = {f"{kind}s {outcome}": n for (s, kind, outcome), n in sorted(seen.items()) if s == stage}
        if counts:
            parts.append(f"{stage}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return " | ".join(parts) or "no outcomes yet"
