"""The audit as a distributed computation: per-item tables written by the workers that hold the rows, and
only bounded aggregates gathered for ``stats.json`` and ``report.html``.

    outcomes ─┬─ WriteOutcomes (partitioned Parquet: outcomes/part-*-of-N.parquet) ─────────┐
              ├─ OutcomeStats (CombineGlobally: cells + fixed-bin histograms) ───────────────┤
              ├─ SampleFailures, SampleThumbs (CombineGlobally: n per group) ────────────────┤
              └─┐                                                                            ├─ Write: stats.json,
    births ─────┴─ Balance (CombinePerKey: +births −outcomes per item) → violations:        │  report.html,
                   CountViolations + ListViolations (Top.Smallest 50) ──────────────────────┤  shard_index.json,
    births ─ BirthCounts (CombineGlobally: by kind) ─────────────────────────────────────────┤  thumbnails.parquet
    manifest clips ─ WriteManifest (manifest/part-*-of-M.parquet) ──────────────────────────┤
    shard index entries (one per shard) ─ ShardIndex ───────────────────────────────────────┤
    clip refs ─ Thumbnails (read + decode only the picked clips; side input: the picks) ────┤
    site usage (per site and bundle) ─ SiteTraffic (CombineGlobally: per site) ──────────────┘

The final ``Write`` step and every side input get single bounded values; the per-item work is shuffles spread
over the workers. ``stats.json`` is written last, so it marks the audit complete.
"""

from __future__ import annotations

import io
import json
import operator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import shards
from pipeline.audit import aggregates, manifest, report
from pipeline.io import clip_store, partitioned, storage
from schemas import SCHEMA_VERSION, Outcome
from schemas.stats import (
    STATS_FILE,
    FailureExample,
    QualitySettings,
    SiteCost,
    Stats,
    TableParts,
    ThumbnailPick,
)

OUTCOMES_DIR = "outcomes"
REPORT_FILE = "report.html"
SHARD_INDEX_FILE = "shard_index.json"
THUMBNAILS_FILE = "thumbnails.parquet"  # the report's strips (clip key -> JPEG), for re-rendering it
MAX_STRIPS = 10_000  # a bound the per-group sample never reaches (groups are outcome/reason families)


def outcomes_dir(output_dir: str) -> str:
    return FileSystems.join(output_dir, OUTCOMES_DIR)


class WriteOutcomes(partitioned.WritePartitioned):
    """Outcomes -> ``outcomes/part-*-of-N.parquet``: parts by hash of the item id (an item's outcomes share
    a part), rows sorted on every field, so reruns write the same bytes whatever Beam's order."""

    def __init__(self, output_dir: str, rows_per_part: int = partitioned.ROWS_PER_PART, slice_label: str = ""):
        super().__init__(outcomes_dir(output_dir), Outcome, key=operator.attrgetter("item_id"),
                         sort_columns=aggregates.OUTCOME_SORT_COLUMNS, rows_per_part=rows_per_part,
                         slice_label=slice_label)


class _PickedStrips(beam.DoFn):
    """Clip references -> ``(clip key, JPEG strip)`` for the few clips the thumbnail sample picked: only their
    bytes are read from the clip store and decoded; the others pass by as the small records they are. The
    picks are one small side-input value (at most n per outcome group)."""

    def setup(self):
        self._picks_id, self._keys = None, frozenset()

    def process(self, clip, picks: dict):
        if id(picks) != self._picks_id:
            self._picks_id, self._keys = id(picks), report.picked_keys(picks)
        if clip.clip_key in self._keys:
            try:
                data = clip_store.clip_bytes(clip)
            except Exception:  # noqa: BLE001 - a strip is decoration: an unreadable clip draws none
                data = b""
            yield report.thumbnail_strip(clip.replace(mp4=data))


def _nonzero(grouped):
    """(item key, its events) -> (key, message) when the item's births and outcomes differ.

    A GroupByKey, not a CombinePerKey: an item's few events (a birth, a stage entry or two, an outcome) come
    from different stages, so a lifted combiner would rarely combine anything, and its per-worker table
    (up to 100k keys in Beam's Python SDK) would make the workers' memory grow with the data."""
    key, events = grouped
    message = aggregates.violation(key, aggregates.balance_of(events))
    if message is not None:
        yield key, message


def _birth_kind(r):
    kind = aggregates.birth_kind(r)
    if kind is not None:
        yield kind


class Audit(beam.PTransform):
    """``{"outcomes", "births", "manifest", "shard_index", "clips"}`` -> the run's audit files.

    ``outcomes``: every stage's Outcomes; ``births``: ``aggregates.Registration``s; ``manifest``: kept Clips
    without bytes; ``shard_index``: one entry per written shard; ``clips``: cut clips as clip store
    references (or inline), of which only the picked thumbnails are read and decoded; ``site_usage``
    (optional): the search's and download's ``SiteUsage`` records. ``quality``: the quality stage's settings
    for ``stats.json``. The tables go under ``output_dir``, the small files too unless ``audit_dir`` names
    another place; ``slice_label`` names the table parts of one slice of a local run (``pipeline.local.local_slices``).
    """

    def __init__(self, output_dir: str, quality: QualitySettings | None, per_group: int = report.SAMPLES_PER_GROUP,
                 rows_per_part: int = partitioned.ROWS_PER_PART, audit_dir: str = "", slice_label: str = ""):
        super().__init__()
        self.output_dir = output_dir
        self.quality = quality
        self.per_group = per_group
        self.rows_per_part = rows_per_part
        self.audit_dir = audit_dir or output_dir
        self.slice_label = slice_label

    def expand(self, inputs):
        outcomes, births = inputs["outcomes"], inputs["births"]
        outcome_parts = outcomes | "WriteOutcomes" >> WriteOutcomes(self.output_dir, self.rows_per_part,
                                                                    self.slice_label)
        manifest_parts = inputs["manifest"] | "WriteManifest" >> manifest.WriteManifest(
            self.output_dir, self.rows_per_part, self.slice_label)
        agg = outcomes | "OutcomeStats" >> beam.CombineGlobally(aggregates.OutcomeStatsFn())
        born = (births
                | "BirthKinds" >> beam.FlatMap(_birth_kind)
                | "BirthCounts" >> beam.CombineGlobally(aggregates.KeyCountsFn()))
        violations = ((births, outcomes)
                      | "AllRecords" >> beam.Flatten()
                      | "Events" >> beam.Map(aggregates.conservation_event)
                      | "Balance" >> beam.GroupByKey()  # no combiner lifting: see ``balance_of``
                      | "Violations" >> beam.FlatMap(_nonzero))
        num_violations = violations | "CountViolations" >> beam.combiners.Count.Globally()
        listed = violations | "ListViolations" >> beam.combiners.Top.Smallest(aggregates.MAX_LISTED_VIOLATIONS,
                                                                               key=operator.itemgetter(0))
        failures = (outcomes
                    | "FailureExamples" >> beam.FlatMap(aggregates.failure_example)
                    | "SampleFailures" >> beam.CombineGlobally(aggregates.GroupSampleFn(report.FAILURE_EXAMPLES_PER_REASON)))
        picks = (outcomes
                 | "ThumbPicks" >> beam.FlatMap(report.thumbnail_pick)
                 | "SampleThumbs" >> beam.CombineGlobally(aggregates.GroupSampleFn(self.per_group)))
        strips = (inputs["clips"]
                  | "Thumbnails" >> beam.ParDo(_PickedStrips(), picks=beam.pvalue.AsSingleton(picks))
                  | "AllStrips" >> beam.combiners.Top.Smallest(MAX_STRIPS, key=operator.itemgetter(0)))
        index = inputs["shard_index"] | "ShardIndex" >> beam.combiners.ToList()
        single = beam.pvalue.AsSingleton
        sites = {}
        if "site_usage" in inputs:
            sites = {"sites": single(inputs["site_usage"] | "SiteTraffic" >> beam.CombineGlobally(
                aggregates.SiteUsageFn()))}
        return (outcomes.pipeline
                | "Start" >> beam.Create([self.audit_dir])
                | "Write" >> beam.Map(
                    write_audit, agg=single(agg), births=single(born), num_violations=single(num_violations),
                    listed=single(listed), failures=single(failures), picks=single(picks), strips=single(strips),
                    index=single(index),
                    outcome_table=single(outcome_parts | "OutcomeParts" >> beam.CombineGlobally(
                        partitioned.PartsSummaryFn())),
                    manifest_table=single(manifest_parts | "ManifestParts" >> beam.CombineGlobally(
                        partitioned.PartsSummaryFn())),
                    quality=self.quality, per_group=self.per_group, **sites))


def write_audit(output_dir: str, agg: aggregates.OutcomeTallies, births: dict, num_violations: int, listed: list,
                failures: dict[str, list[FailureExample]], picks: dict[str, list[ThumbnailPick]], strips: list,
                index: list, outcome_table: TableParts, manifest_table: TableParts, quality: QualitySettings | None,
                per_group: int, sites: dict[str, SiteCost] | None = None) -> Stats:
    """Write the small files from the aggregates (runs once, on a worker; stats.json last)."""
    index = sorted(index, key=operator.itemgetter("name"))
    tables = {OUTCOMES_DIR: outcome_table, manifest.MANIFEST_DIR: manifest_table}
    lost = aggregates.table_violations(*aggregates.decided_and_kept(agg), tables, index)
    listed_messages = lost + [m for _, m in listed]
    stats = aggregates.assemble_stats(agg, births, aggregates.conservation_block(num_violations + len(lost), listed_messages),
                                 failures, picks, len(index), quality, tables, sites)
    write_audit_files(output_dir, stats, dict(strips), index, per_group)
    return stats


def write_audit_files(output_dir: str, stats: Stats, strips: dict[str, bytes], index: list[dict],
                      per_group: int) -> None:
    """The audit's small files: shard_index.json, thumbnails.parquet, report.html, and stats.json last (the
    mark that the audit is complete)."""
    write_shard_index(output_dir, index)
    write_thumbnails(output_dir, strips)
    page = report.render_report(stats, strips, per_group=per_group)
    storage.write_bytes(FileSystems.join(output_dir, REPORT_FILE), page.encode("utf-8"))
    storage.write_bytes(FileSystems.join(output_dir, STATS_FILE), stats.to_json())


def read_stats(output_dir: str) -> Stats | None:
    """The output's ``stats.json`` (None: there is none, the audit has not finished); a file of another schema
    version is refused (``RecordError``)."""
    path = FileSystems.join(output_dir, STATS_FILE)
    return Stats.from_json(storage.read_bytes(path)) if storage.exists(path) else None


def write_shard_index(output_dir: str, index: list[dict]) -> None:
    body = {"schema_version": SCHEMA_VERSION, "shards": index}
    storage.write_bytes(FileSystems.join(output_dir, SHARD_INDEX_FILE),
                        (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_shard_index(output_dir: str) -> list[dict]:
    """The shards a run wrote (``name`` relative to the output, ``clips``, ``bytes``): a small file."""
    return json.loads(storage.read_bytes(FileSystems.join(output_dir, SHARD_INDEX_FILE)))["shards"]


def write_thumbnails(output_dir: str, strips: dict[str, bytes]) -> None:
    keys = sorted(strips)
    table = pa.table({"clip_key": pa.array(keys, pa.string()),
                      "jpeg": pa.array([strips[k] for k in keys], pa.binary())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(FileSystems.join(output_dir, THUMBNAILS_FILE), buf.getvalue())


def read_thumbnails(output_dir: str) -> dict[str, bytes]:
    path = FileSystems.join(output_dir, THUMBNAILS_FILE)
    if not storage.exists(path):
        return {}
    table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
    return dict(zip(table.column("clip_key").to_pylist(), table.column("jpeg").to_pylist(), strict=True))


def remove_stale_outputs(output_dir: str, stats: Stats) -> int:
    """After a run: delete what an earlier run into the same output left and this one did not write (shards
    not in the shard index, table parts of another part count, pre-partitioning single-file tables).
    Reads only the small files. Returns the number of stale shards removed."""
    stale = shards.remove_stale_shards(output_dir, [s["name"] for s in read_shard_index(output_dir)])
    for name, table in (stats.tables or {}).items():
        partitioned.remove_stale_parts(FileSystems.join(output_dir, name), table.parts)
        legacy = FileSystems.join(output_dir, f"{name}.parquet")  # written by releases before the parts
        storage.delete_quietly(legacy)
    return len(stale)
