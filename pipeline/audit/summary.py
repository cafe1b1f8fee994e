"""The lines a run prints when it ends, from its ``stats.json``: the funnel per stage, how the quality stage
decided, what each site cost, what was deferred and kept. ``python -m pipeline run`` prints them after the
job; ``python -m pipeline finalize`` after a job its launcher did not wait for; ``python -m pipeline audit`` after
re-rendering a run's stats."""

from __future__ import annotations

from pipeline.audit import aggregates
from schemas.stats import QualityStats, Stats


def quality_line(q: QualityStats) -> str:
    """How the quality stage decided, in one line: the model and threshold, or that nothing was scored."""
    settings = q.settings
    if not settings.classifier:
        return f"quality: no --classifier: {q.clips_unscored} clip(s) passed unscored, none filtered"
    rule = f"{settings.rule} rule, threshold {settings.threshold:.4f}"
    if settings.margin:
        rule += f" + margin {settings.margin:.4f}"
    return (f"quality: classifier {settings.classifier} ({rule}): {q.clips_scored} scored, "
            f"{q.clips_dropped_low_quality} dropped low_quality, {q.clips_failed} failed, "
            f"{q.clips_unscored} unscored")


def summary(stats: Stats, elapsed_s: float | None, output_dir: str, stale: int, headline: str | None = None) -> str:
    """The lines a run prints at the end (``elapsed_s`` None: ``python -m pipeline audit`` re-rendering it);
    ``headline`` replaces the first line."""
    if headline is None:
        headline = f"done in {elapsed_s:.1f} s -> {output_dir}" if elapsed_s is not None else f"audit of {output_dir}"
    lines = [headline]
    for row in stats.funnel:
        parts = [f"{kind}s {flow.items_in}->{flow.items_out}" for kind, flow in row.flows()]
        if row.search_failures:
            parts.append(f"{row.search_failures} unreadable input(s) (search_failures)")
        lines.append(f"  {row.stage:<9} " + ", ".join(parts))
    lines.append("  " + quality_line(stats.quality))
    deferred = stats.deferred
    if deferred.videos or deferred.search_queries:
        lines.append(f"  DEFERRED: {deferred.videos} video(s), {deferred.search_queries} search query(ies) "
                     "not finished (the site was blocking): rerun into the same --output")
    lines += aggregates.sites_summary(stats.sites)
    lines.append(f"  kept {stats.clips.kept} clips ({stats.hours.kept_clips:.2f} h) in "
                 f"{stats.shards} shard(s); conservation ok" + (f"; removed {stale} stale shard(s)" if stale else ""))
    return "\n".join(lines)
