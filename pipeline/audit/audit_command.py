"""``python -m pipeline audit OUT``: re-render ``stats.json`` and ``report.html`` from a run's stored tables
and print the run's summary.

For whoever has only the output (a bucket after a Dataflow job, an auditor's copy): the outcome aggregates,
failure examples and thumbnail picks are recomputed by streaming ``outcomes/`` a batch at a time through
the very combiners the run uses (memory bounded by one part, never the table), the shard count comes from
``shard_index.json`` and the strips from ``thumbnails.parquet``. What the tables cannot tell is carried
over from the run's ``stats.json``: births are not stored, so the conservation verdict and the birth counts
(candidates, clips cut, search failures) are the run's; so are the quality stage's settings. Without a
``stats.json`` (a job that died before its last step) the verdict is reported as unknown.

Exit status: 0 when the conservation law held, 1 when it was violated or is unknown, 2 on a usage error.
"""

from __future__ import annotations

import sys

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipeline.audit import aggregates, audit_stage, manifest, report
from pipeline.audit.summary import summary
from pipeline.io import partitioned, storage
from schemas import Outcome, RecordError, from_table, reasons
from schemas.cli import StrictParser
from schemas.stats import Conservation, QualitySettings, Stats, TableParts


def stream_outcomes(output_dir: str):
    """Every outcome of a run, a bounded batch at a time."""
    return stream_parts(partitioned.part_paths(audit_stage.outcomes_dir(output_dir)))


def stream_parts(paths: list[str]):
    """The outcomes of these part files, a bounded batch at a time (one part open at once)."""
    for path in paths:
        for batch in partitioned.iter_part_batches(path):
            yield from from_table(pa.Table.from_batches([batch]), Outcome)


def outcome_aggregates(outcomes, per_group: int = report.SAMPLES_PER_GROUP) -> tuple[aggregates.OutcomeTallies, dict,
                                                                                     dict]:
    """(outcome aggregates, failure examples, thumbnail picks) of streamed outcomes, through the run's own
    combiners: what the run's audit computes from the same outcomes, in any order."""
    stats_fn, failures_fn, picks_fn = aggregates.OutcomeStatsFn(), aggregates.GroupSampleFn(
        report.FAILURE_EXAMPLES_PER_REASON), aggregates.GroupSampleFn(per_group)
    agg, failures, picks = stats_fn.create_accumulator(), failures_fn.create_accumulator(), {}
    for o in outcomes:
        agg = stats_fn.add_input(agg, o)
        for example in aggregates.failure_example(o):
            failures = failures_fn.add_input(failures, example)
        for pick in report.thumbnail_pick(o):
            picks = picks_fn.add_input(picks, pick)
    return (stats_fn.extract_output(agg), failures_fn.extract_output(failures_fn.merge_accumulators([failures])),
            picks_fn.extract_output(picks_fn.merge_accumulators([picks])))


def stored_births(stats: Stats) -> dict[str, int]:
    """The birth counts a run's stats.json holds (births are not stored per item)."""
    return {reasons.ITEM_VIDEO: stats.videos.candidates, reasons.ITEM_CLIP: stats.clips.cut,
            "search_failure": stats.search_failures.count}


def recompute_stats(output_dir: str, per_group: int = report.SAMPLES_PER_GROUP) -> Stats:
    """``stats.json`` from the stored tables (see the module docstring for what is carried over)."""
    stored = audit_stage.read_stats(output_dir)
    agg, failures, picks = outcome_aggregates(stream_outcomes(output_dir), per_group)
    quality: QualitySettings | None = None
    if stored is not None:
        births, conservation, quality = stored_births(stored), stored.conservation, stored.quality.settings
    else:
        births = _births_from_outcomes(agg)
        conservation = Conservation(ok=None, num_violations=None, violations=[], note=(
            "no stats.json: the run's conservation verdict is unknown (births are not stored)"))
    tables = {}
    for name in (audit_stage.OUTCOMES_DIR, manifest.MANIFEST_DIR):
        parts = partitioned.part_paths(FileSystems.join(output_dir, name))
        tables[name] = TableParts(parts=len(parts), rows=sum(partitioned.part_rows(p) for p in parts))
    index = audit_stage.read_shard_index(output_dir)
    return aggregates.assemble_stats(agg, births, conservation, failures, picks, len(index), quality, tables,
                                     stored.sites if stored is not None else None)


def _births_from_outcomes(agg: aggregates.OutcomeTallies) -> dict:
    """Birth counts as they are when the law holds: one outcome per item."""
    births = {reasons.ITEM_VIDEO: 0, reasons.ITEM_CLIP: 0, "search_failure": 0}
    for cell, tally in agg.cells():
        births["search_failure" if cell.search_failure else cell.kind] += tally.count
    return births


def main(argv: list[str] | None = None) -> int:
    parser = StrictParser(prog="python -m pipeline audit", description="Re-render stats.json and report.html from a run's stored tables and print "
                                        "the run's summary.")
    parser.add_argument("output", help="a run's output directory or gs:// prefix")
    parser.add_argument("--thumbnails-per-group", type=int, default=report.SAMPLES_PER_GROUP,
                        help="clips shown per (outcome, reason) group in the report (default %(default)s)")
    ns = parser.parse_args(argv)
    output = ns.output.rstrip("/")
    if not partitioned.part_paths(audit_stage.outcomes_dir(output)):
        print(f"audit: no outcomes/part-*.parquet under {output}: not a run's output (or a run that did not "
              f"reach its audit)", file=sys.stderr)
        return 2
    try:
        stats = recompute_stats(output, ns.thumbnails_per_group)
    except RecordError as exc:  # the run's stats.json is of another schema version
        print(f"audit: {output}: {exc}", file=sys.stderr)
        return 2
    page = report.render_report(stats, audit_stage.read_thumbnails(output), per_group=ns.thumbnails_per_group)
    storage.write_bytes(FileSystems.join(output, audit_stage.REPORT_FILE), page.encode("utf-8"))
    storage.write_bytes(FileSystems.join(output, audit_stage.STATS_FILE), stats.to_json())
    if stats.conservation.ok is None:
        print(f"audit: {stats.conservation.note}", file=sys.stderr)
        return 1
    if not stats.conservation.ok:
        print(aggregates.failure_message(stats), file=sys.stderr)
        return 1
    print(summary(stats, None, output, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
