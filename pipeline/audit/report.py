"""``report.html``: one self-contained page (no external files, scripts or fonts) to audit a build.

Sections: the conservation verdict, the funnel per stage, the quality stage's settings and counts (or that
clips went unscored), reason breakdowns, duration and quality-score histograms (matplotlib PNGs embedded as
base64), failure details, and thumbnail strips (JPEG, embedded) of a deterministic sample of clips per
(outcome, reason) group: up to ``SAMPLES_PER_GROUP`` each, so the page stays bounded however large the run,
and a rare reason (``low_quality``, ``shard_error``) gets its strip like the common ones.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable

import numpy as np

from schemas import Clip, Outcome, reasons
from schemas.clip_codec import decode_clip
from schemas.clip_format import CLIP_FRAMES
from schemas.figures import encode_image, figure_png, frame_strip, img_tag, subplots
from schemas.stats import Histogram, QualityStats, Stats, ThumbnailPick

STRIP_FRAMES = tuple(round(i * (CLIP_FRAMES - 1) / 3) for i in range(4))  # (0, 53, 106, 159): start, thirds, end
SAMPLES_PER_GROUP = 6
FAILURE_EXAMPLES_PER_REASON = 10  # failed outcomes listed per (kind, stage, reason): the smallest item ids


def thumbnail_rank(clip_key: str) -> str:
    """Deterministic sample order: clips are sampled by the hash of their key, not by arrival."""
    return hashlib.sha1(clip_key.encode("utf-8")).hexdigest()


def thumbnail_group(o: Outcome) -> str:
    """The report group of a clip's outcome: ``kept`` or ``<outcome>: <reason family>``."""
    return reasons.KEPT if o.outcome == reasons.KEPT else f"{o.outcome}: {reasons.reason_family(o.reason)}"


def thumbnail_pick(o: Outcome):
    """``(group, rank, pick)`` for the per-group sample of clips to draw (``aggregates.GroupSampleFn``): ranked by
    the hash of the clip key, so a rare reason gets its strip too; none for videos and for short tails
    (remainders are never encoded: there are no bytes to draw)."""
    if o.item_kind == reasons.ITEM_CLIP and reasons.reason_family(o.reason) != reasons.SHORT_TAIL:
        yield thumbnail_group(o), thumbnail_rank(o.item_id), ThumbnailPick(o.item_id, o.quality_score)


def picked_keys(picks: dict[str, list[ThumbnailPick]]) -> frozenset[str]:
    """The clip keys of the thumbnail picks (``stats.json``'s ``thumbnails``): the clips to decode."""
    return frozenset(p.clip_key for group in picks.values() for p in group)


def thumbnail_strip(clip: Clip) -> tuple[str, bytes]:
    """(clip key, JPEG of a few frames side by side). Empty bytes when the clip does not decode."""
    try:
        frames = [decode_clip(clip.mp4, start=min(i, clip.num_frames - 1), count=1)[0] for i in STRIP_FRAMES]
    except Exception:
        return clip.clip_key, b""
    return clip.clip_key, encode_image(frame_strip(frames), "JPEG", quality=80)


def _png(fig) -> str:
    return img_tag(figure_png(fig, dpi=80, bbox_inches="tight", metadata={"Software": None}), "plot")


def _figure(width: float = 7, height: float = 3):
    return subplots(figsize=(width, height))


def _funnel_plot(stats: Stats) -> str:
    fig, ax = _figure()
    labels, values = [], []
    for row in stats.funnel:
        for kind, flow in row.flows():
            labels.append(f"{row.stage}\n{kind}s")
            values.append((flow.items_in, flow.items_out))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [v[0] for v in values], 0.4, label="in")
    ax.bar(x + 0.2, [v[1] for v in values], 0.4, label="out")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("items")
    ax.legend()
    ax.set_title("Funnel: items entering and leaving each stage")
    return _png(fig)


def _table(header: list[str], rows: Iterable[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _strips(keys: list[str], thumbs: dict[str, bytes], notes: dict[str, str]) -> str:
    out = []
    for key in keys:
        data = thumbs.get(key)
        if not data:
            continue
        out.append(f"<figure>{img_tag(data, key, 'image/jpeg')}<figcaption>{html.escape(key)} "
                   f"{html.escape(notes.get(key, ''))}</figcaption></figure>")
    return "".join(out) or "<p class=muted>no sampled clip in this group (samples are a hash-chosen subset)</p>"


def _quality_section(q: QualityStats) -> str:
    if not q.settings.classifier:
        return (f"<p class=bad>No quality classifier (run without --classifier): {q.clips_unscored} clip(s) "
                f"passed unscored; nothing was filtered for quality.</p>")
    rows = [["classifier", q.settings.classifier], ["threshold", f"{q.settings.threshold:.4f}"],
            ["decision rule", q.settings.rule], ["margin", q.settings.margin], ["clips reaching the stage", q.clips_in],
            ["scored", q.clips_scored], ["dropped low_quality", q.clips_dropped_low_quality],
            ["failed (quality_error)", q.clips_failed], ["unscored", q.clips_unscored]]
    return _table(["quality stage", "value"], rows)


def _stairs(hist: Histogram, title: str, xlabel: str, log_x: bool = False) -> str:
    """A histogram counted on fixed bins by the run's combiners (``stats.json`` ``histograms``)."""
    fig, ax = _figure()
    if log_x:
        ax.set_xscale("log")
    for name, counts in hist.counts.items():
        if sum(counts):
            ax.stairs(counts, hist.edges, fill=True, alpha=0.6, label=f"{name} ({sum(counts)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if hist.total():
        ax.legend()
    return _png(fig)


def render_report(stats: Stats, thumbs: dict[str, bytes], per_group: int = SAMPLES_PER_GROUP) -> str:
    """The HTML page, from ``stats.json`` and the sampled clips' strips alone (``thumbs``: clip key -> JPEG):
    nothing per item, so rendering costs the same for a demo run and for 60M outcomes."""
    c = stats.conservation
    if c.ok is None:  # python -m pipeline audit without the run's stats.json
        verdict = f"<p class=bad>Conservation not verified: {html.escape(c.note or '')}</p>"
    elif c.ok:
        verdict = ("<p class=ok>Conservation law holds: every candidate video and every clip has exactly one "
                   "outcome.</p>")
    else:
        verdict = ("<p class=bad>CONSERVATION VIOLATED:</p><ul>"
                   + "".join(f"<li>{html.escape(v)}</li>" for v in c.violations) + "</ul>")
    deferred = stats.deferred
    if deferred.videos or deferred.search_queries:
        verdict += (f"<p class=bad>DEFERRED: {deferred.videos} video(s) and {deferred.search_queries} search "
                    "query(ies) were not finished because the site was blocking (breaker open). Rerun into the "
                    "same --output to finish them; the run exited with status 75.</p>")
    funnel_rows = [[row.stage, kind + "s", flow.items_in, flow.items_out, f"{flow.hours_in:.3f}",
                    f"{flow.hours_out:.3f}"] for row in stats.funnel for kind, flow in row.flows()]
    reason_rows = [[*key, n] for key, n in stats.reasons_by_key()]
    histograms = stats.histograms
    problem_rows = [[e.item_kind, e.item_id, e.stage, e.reason, e.detail]
                    for _, examples in sorted(stats.failure_examples.items()) for e in examples]

    picks = stats.thumbnails
    notes = {p.clip_key: (f"score {p.quality_score:.3f}" if p.quality_score is not None else "")
             for group in picks.values() for p in group}
    groups = {label: [p.clip_key for p in group][:per_group] for label, group in picks.items()}
    clip_reasons = sorted({f"{key.outcome}: {key.family}" for key, _ in stats.reasons_by_key()
                           if key.kind == reasons.ITEM_CLIP})
    strips = [f"<h3>kept</h3>{_strips(groups.get('kept', []), thumbs, notes)}"]
    for label in clip_reasons:
        body = ("<p class=muted>remainders shorter than a clip are never decoded or encoded: nothing to show</p>"
                if label.endswith(reasons.SHORT_TAIL) else _strips(groups.get(label, []), thumbs, notes))
        strips.append(f"<h3>{html.escape(label)}</h3>{body}")

    failures = stats.search_failures
    search_failures = (f"{failures.count} search input(s) could not be read and are not counted as videos ("
                       + html.escape(", ".join(f"{k} {n}" for k, n in failures.by_reason.items())) + ")."
                       if failures.count else "")
    scores = histograms.quality_score
    score_plot = (_stairs(scores, "Quality score of scored clips", "P(good)") if scores.total()
                  else "<p class=muted>no clip was scored (run without --classifier)</p>")
    failure_note = (f"<p class=muted>Up to {FAILURE_EXAMPLES_PER_REASON} failed items "
                    f"per reason (smallest ids); the counts per reason are above, every row is in outcomes/.</p>"
                    if problem_rows else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Dataset build report</title><style>
body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}} .ok{{color:#070}}
.bad{{color:#b00;font-weight:bold}} .muted{{color:#777}} figure{{margin:6px 0}}
figcaption{{font-size:12px;color:#444}} img{{image-rendering:pixelated}}
</style></head><body>
<h1>Dataset build report</h1>
{verdict}
<p>{stats.videos.candidates} candidate videos ({stats.hours.candidate_video:.2f} h) &rarr;
{stats.clips.kept} kept clips ({stats.hours.kept_clips:.2f} h) in {stats.shards} shard(s).
{search_failures}</p>
<h2>Funnel</h2>
{_funnel_plot(stats)}
{_table(["stage", "items", "in", "out", "hours in", "hours out"], funnel_rows)}
<h2>Quality</h2>
{_quality_section(stats.quality)}
<h2>Reasons</h2>
{_table(["item", "stage", "outcome", "reason", "count"], reason_rows)}
<h2>Distributions</h2>
{_stairs(histograms.video_minutes, "Video duration by outcome", "minutes (log scale)", log_x=True)}
{score_plot}
<h2>Failures</h2>
{failure_note}
{_table(["item", "id", "stage", "reason", "detail"], problem_rows) if problem_rows else "<p>none</p>"}
<h2>Sample clips</h2>
<p class=muted>Frames {", ".join(map(str, STRIP_FRAMES))} of each clip; up to {per_group} per group, chosen
by hash of the clip key.</p>
{"".join(strips)}
</body></html>
"""
