"""A local run as a series of Beam jobs, one per slice of its candidates, and one audit over all of them.

Beam's local runner keeps every element of a job in the launching process until the next stage runs, and loses
elements at large counts (docs/measurements/2026-12-04-local-runner-element-loss.md). So a local run cuts its
work into slices of about ``--slice-outcomes`` outcomes (``pipeline.local.search_plan``) and runs the whole
pipeline once per slice: memory follows the slice, not the catalog. A slice writes its shards and table parts
under the usual directories with its label (``shards/shard-s00002-00000.tar``), and its own audit files under
``slices/s00002/`` (also its completion mark). ``merge`` then writes the run's files from the slices' through
the run's own combiners. One slice is exactly the single job; a rerun skips complete slices with nothing
deferred; slicing depends only on the inputs and ``--slice-outcomes``, so any worker count writes the same bytes.
"""

from __future__ import annotations

import collections

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import shards
from pipeline.audit import aggregates, audit_command, audit_stage, manifest, report
from pipeline.io import partitioned, storage
from pipeline.local.search_plan import (
    CANDIDATES_FILE,
    SEARCH_OUTCOMES_FILE,
    Plan,
    read_site_usage,
    read_slice,
    slice_dir,
    slice_name,
)
from pipeline.site.site_access import SITE_USAGE
from pipeline.stage import MAIN, OUTCOMES
from schemas import CandidateVideo, Outcome
from schemas.stats import Stats, TableParts

_KINDS = {"candidates": CandidateVideo, "search_outcomes": Outcome}


def _read_planned(kind: str, directory: str):
    if kind == "site_usage":
        for usage in read_site_usage(directory):
            yield beam.pvalue.TaggedOutput(SITE_USAGE, usage)
        return
    for record in read_slice(directory, _KINDS[kind]):
        yield record if kind == "candidates" else beam.pvalue.TaggedOutput(OUTCOMES, record)


class PlannedSearch(beam.PTransform):
    """The search stage of one slice: its planned candidates and search outcomes (``pipeline.local.search_plan``),
    read by the workers a batch at a time, candidates spread over the workers as the Beam stage spreads them;
    and, in the first slice, what the plan's searches cost each site, for the audit."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def expand(self, root):
        read = (root
                | "Files" >> beam.Create([*sorted(_KINDS), "site_usage"])
                | "Read" >> beam.FlatMap(_read_planned, self.directory).with_outputs(OUTCOMES, SITE_USAGE,
                                                                                     main=MAIN))
        return {MAIN: read[MAIN] | "SpreadCandidates" >> beam.Reshuffle(), OUTCOMES: read[OUTCOMES],
                SITE_USAGE: read[SITE_USAGE]}


def is_single(plan: Plan) -> bool:
    return len(plan.slices) == 1


def label(plan: Plan, index: int) -> str:
    """The name a slice's shards and parts carry: none when the run is one slice."""
    return "" if is_single(plan) else slice_name(index)


def audit_dir(output_dir: str, plan: Plan, index: int) -> str:
    """Where a slice's job writes its stats.json and the other small audit files."""
    return output_dir if is_single(plan) else slice_dir(output_dir, index)


def slice_stats(output_dir: str, plan: Plan, index: int) -> Stats | None:
    return audit_stage.read_stats(audit_dir(output_dir, plan, index))


def is_complete(output_dir: str, plan: Plan, index: int) -> bool:
    """A slice an earlier run of the same inputs finished: its audit is written, the law held and nothing of
    it waits for a rerun (deferred items)."""
    stats = slice_stats(output_dir, plan, index)
    return (stats is not None and bool(stats.conservation.ok)
            and not (stats.deferred.videos or stats.deferred.search_queries))


def drop_planned(output_dir: str, plan: Plan, index: int) -> None:
    """Delete a complete slice's planned inputs (its candidates and search outcomes are in the run's tables
    now, and a rerun skips the slice): the plan's bytes are not kept twice. A run of one slice keeps them, as
    its reruns run it again."""
    if not is_single(plan) and is_complete(output_dir, plan, index):
        directory = slice_dir(output_dir, index)
        for name in (CANDIDATES_FILE, SEARCH_OUTCOMES_FILE):
            storage.delete_quietly(FileSystems.join(directory, name))


def _part_names(stats: Stats, plan: Plan, index: int, table: str) -> list[str]:
    count = stats.tables[table].parts
    return [partitioned.part_name(i, count, label(plan, index)) for i in range(count)]


def merge(output_dir: str, plan: Plan, per_group: int = report.SAMPLES_PER_GROUP) -> Stats:
    """The run's stats.json, report.html, shard_index.json and thumbnails.parquet from its slices' (a run of one
    slice wrote them itself). stats.json is written last, as by the job's audit. One slice's stats are read at
    a time; what is kept across slices is sums, one name per table part and one entry per shard."""
    if is_single(plan):
        return slice_stats(output_dir, plan, 0)
    births, sites, violations, listed, quality = collections.Counter(), {}, 0, [], None
    tables = {name: TableParts(parts=0, rows=0) for name in (audit_stage.OUTCOMES_DIR, manifest.MANIFEST_DIR)}
    outcome_parts, index = [], []
    for j in range(len(plan.slices)):
        stats = slice_stats(output_dir, plan, j)
        if stats is None:
            raise RuntimeError(f"slice {slice_name(j)} has no audit (stats.json)")
        births.update(audit_command.stored_births(stats))
        sites = aggregates.SiteUsageFn().merge_accumulators([sites, stats.sites])
        violations += stats.conservation.num_violations
        listed = sorted(listed + stats.conservation.violations)[:aggregates.MAX_LISTED_VIOLATIONS]
        quality = quality or stats.quality.settings
        for name, table in tables.items():
            tables[name] = TableParts(table.parts + stats.tables[name].parts, table.rows + stats.tables[name].rows)
        outcome_parts += [FileSystems.join(audit_stage.outcomes_dir(output_dir), name)
                          for name in _part_names(stats, plan, j, audit_stage.OUTCOMES_DIR)]
        index += audit_stage.read_shard_index(audit_dir(output_dir, plan, j))
    agg, failures, picks = audit_command.outcome_aggregates(audit_command.stream_parts(outcome_parts), per_group)
    stats = aggregates.assemble_stats(agg, dict(births), aggregates.conservation_block(violations, listed), failures, picks,
                                 len(index), quality, tables, sites)
    keys = report.picked_keys(picks)
    strips = {key: jpeg for j in range(len(plan.slices))
              for key, jpeg in audit_stage.read_thumbnails(audit_dir(output_dir, plan, j)).items() if key in keys}
    audit_stage.write_audit_files(output_dir, stats, strips, sorted(index, key=lambda e: e["name"]), per_group)
    return stats


def remove_stale_outputs(output_dir: str, plan: Plan, stats: Stats) -> int:
    """After a run: delete shards and table parts that an earlier run into the same output left and this one
    did not write. Returns the number of stale shards removed."""
    if is_single(plan):
        return audit_stage.remove_stale_outputs(output_dir, stats)
    stale = shards.remove_stale_shards(output_dir, [s["name"] for s in audit_stage.read_shard_index(output_dir)])
    keep: dict[str, set[str]] = {audit_stage.OUTCOMES_DIR: set(), manifest.MANIFEST_DIR: set()}
    for j in range(len(plan.slices)):
        slice_ = slice_stats(output_dir, plan, j)
        for table, names in keep.items():
            names.update(_part_names(slice_, plan, j, table))
    for table, names in keep.items():
        partitioned.remove_parts_except(FileSystems.join(output_dir, table), names)
    return len(stale)
