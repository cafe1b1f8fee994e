"""Audit of a run: every item's fate, the per-stage funnel, and the conservation law that nothing was lost.

Conservation: every candidate video and every clip cut ends in exactly one ``Outcome``. The run registers
each item where it is born (a video when the search stage proposes or drops it, a clip when the segment
stage cuts or drops it) and notes each stage an item enters; the audit compares, per item id, the number of
births with the number of outcomes (a multiset, so a catalog listing one id twice is two items). Any
difference is a violation naming the item and the last stage it was seen in; the run fails loudly on one.

The same counts feed Beam counters while the job runs (``outcomes/<stage>`` namespace: visible in the
Dataflow UI) and ``stats.json`` at the end. Nothing in ``stats.json`` depends on timing or ordering, so a
rerun on the same inputs writes the same file.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
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
    """An item seen entering ``stage``; ``born`` marks the one place each item is counted into existence."""

    item_kind: str
    item_id: str
    stage: str
    born: bool


def stage_index(stage: str) -> int:
    return reasons.STAGES.index(stage)


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
    (decided later, or kept there). Videos are followed to segmentation, clips from segmentation on.
    """
    rows = []
    for stage in reasons.STAGES:
        row: dict = {"stage": stage}
        here = stage_index(stage)
        for kind, stages in ((reasons.ITEM_VIDEO, VIDEO_STAGES), (reasons.ITEM_CLIP, CLIP_STAGES)):
            if stage not in stages:
                continue
            items = [o for o in outcomes if o.item_kind == kind and stage_index(o.stage) >= here]
            out = [o for o in items if stage_index(o.stage) > here or o.outcome == reasons.KEPT]
            row.update({f"{kind}s_in": len(items), f"{kind}s_out": len(out),
                        f"{kind}_hours_in": _hours(items), f"{kind}_hours_out": _hours(out)})
        decided = collections.Counter(f"{o.item_kind}:{o.outcome}:{o.reason}" for o in outcomes
                                      if o.stage == stage and o.outcome != reasons.KEPT)
        row["reasons"] = dict(sorted(decided.items()))
        rows.append(row)
    return rows


def compute_stats(outcomes: list[Outcome], registrations: list[Registration], num_shards: int) -> dict:
    violations = conservation_violations(registrations, outcomes)
    totals = {kind: dict(sorted(collections.Counter(o.outcome for o in outcomes if o.item_kind == kind).items()))
              for kind in reasons.ITEM_KINDS}
    by_reason = collections.Counter(f"{o.item_kind}:{o.stage}:{o.outcome}:{reasons.reason_family(o.reason)}"
                                    for o in outcomes if o.outcome != reasons.KEPT)
    kept_clips = [o for o in outcomes if o.item_kind == reasons.ITEM_CLIP and o.outcome == reasons.KEPT]
    return {
        "schema_version": SCHEMA_VERSION,
        "videos": {"candidates": sum(1 for r in registrations if r.born and r.item_kind == reasons.ITEM_VIDEO),
                   **totals[reasons.ITEM_VIDEO]},
        "clips": {"cut": sum(1 for r in registrations if r.born and r.item_kind == reasons.ITEM_CLIP),
                  **totals[reasons.ITEM_CLIP]},
        "hours": {"candidate_video": _hours(o for o in outcomes if o.item_kind == reasons.ITEM_VIDEO),
                  "kept_clips": _hours(kept_clips)},
        "shards": num_shards,
        "funnel": funnel(outcomes),
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
    """Items born with their outcome (search drops, segment short tails): born where they were decided."""
    return (outcomes
            | f"{label}Filter" >> beam.Filter(lambda o: o.item_kind == kind)
            | label >> beam.Map(lambda o: Registration(o.item_kind, o.item_id, o.stage, True)))


class CountOutcomes(beam.DoFn):
    """Beam counters per stage/kind/outcome/reason while the job runs, and a progress line now and then."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self._seen: collections.Counter = collections.Counter()
        self._last = 0.0

    def process(self, outcome: Outcome):
        ns = f"outcomes/{outcome.stage}"
        beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}").inc()
        if outcome.reason:
            family = reasons.reason_family(outcome.reason)
            beam.metrics.Metrics.counter(ns, f"{outcome.item_kind}s_{outcome.outcome}/{family}").inc()
        self._seen[(outcome.stage, outcome.item_kind, outcome.outcome)] += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info("progress: %s", progress_line(self._seen))
        yield outcome


def progress_line(seen: collections.Counter) -> str:
    parts = []
    for stage in reasons.STAGES:
        counts = {f"{kind}s {outcome}": n for (s, kind, outcome), n in sorted(seen.items()) if s == stage}
        if counts:
            parts.append(f"{stage}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return " | ".join(parts) or "no outcomes yet"
