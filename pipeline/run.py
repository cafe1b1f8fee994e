"""``python -m pipeline run``: build a dataset end to end, locally or on Dataflow, with one command line.

    Search -> Download -> Segment -> Quality -> Shard, then the manifest, outcomes, stats and report.

Output layout (``--output``, a local directory or ``gs://`` prefix): ``shards/shard-*.tar``,
``manifest.parquet``, ``outcomes.parquet``, ``stats.json``, ``report.html``; plus ``videos/`` (downloads,
unless ``--download-dir``) and ``cache/segment/`` (per-video clip results: a rerun into the same output skips
downloading and decoding what is done and rewrites byte-identical shards).

Flags this module does not know are Beam pipeline options (``--runner DataflowRunner --project ...``).
Without ``--runner`` the run uses Beam's local DirectRunner with several worker processes. The run fails
(exit 1) when a stage raises, naming the stage, or when the conservation law does not hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import audit, manifest, report, shards, tables
from pipeline.download import Download, DownloadConfig, add_download_args
from pipeline.quality import Quality, add_quality_args, quality_from_args
from pipeline.search import Search, SearchConfig, add_search_args
from pipeline.segment import Segment, SegmentConfig, add_segment_args
from pipeline.stage import MAIN, OUTCOMES
from schemas import Outcome, reasons, to_table

log = logging.getLogger("pipeline.run")
OUTCOMES_FILE = "outcomes.parquet"
STATS_FILE = "stats.json"
REPORT_FILE = "report.html"
STAGE_LABELS = {"Search": reasons.STAGE_SEARCH, "Download": reasons.STAGE_DOWNLOAD,
                "Segment": reasons.STAGE_SEGMENT, "Quality": reasons.STAGE_QUALITY, "Shard": reasons.STAGE_SHARD,
                "Audit": "audit"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    output_dir: str
    search: SearchConfig
    download: DownloadConfig
    segment: SegmentConfig
    shards: shards.ShardConfig
    thumbnails: int = 60  # clips sampled (by key hash) for the report's thumbnail strips


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline run", description=__doc__.split("\n\n")[0],
        epilog="Any other flag is passed to Beam, e.g. --runner DataflowRunner --project P --region R "
               "--temp_location gs://B/tmp --sdk_container_image IMAGE (see docs/pipeline.md).")
    parser.add_argument("--output", required=True, help="output directory or gs:// prefix")
    parser.add_argument("--shard-size-mb", type=float, default=256.0,
                        help="target clip bytes per shard (default 256 MB)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes when no --runner is given (default: CPU count)")
    parser.add_argument("--in-process", action="store_true",
                        help="run locally in this one process (Beam's FnApiRunner): easiest to debug")
    add_search_args(parser)
    add_download_args(parser)
    add_segment_args(parser)
    add_quality_args(parser)
    return parser


def parse(argv: list[str]) -> tuple[RunConfig, argparse.Namespace, list[str]]:
    parser = build_parser()
    ns, beam_args = parser.parse_known_args(argv)
    if ns.shard_size_mb <= 0:
        parser.error(f"--shard-size-mb must be > 0, got {ns.shard_size_mb}")
    output = ns.output.rstrip("/")
    if "://" not in output:
        output = os.path.abspath(output)
    download = DownloadConfig.from_args(ns)
    if not download.download_dir:
        download = dataclasses.replace(download, download_dir=FileSystems.join(output, "videos"))
    segment = dataclasses.replace(SegmentConfig.from_args(ns), cache_dir=FileSystems.join(output, "cache", "segment"))
    config = RunConfig(output_dir=output, search=SearchConfig.from_args(ns), download=download, segment=segment,
                       shards=shards.ShardConfig(output, int(ns.shard_size_mb * 1024 * 1024)))
    return config, ns, beam_args


def local_options(beam_args: list[str], workers: int | None) -> PipelineOptions:
    """Beam options; with no runner chosen, the DirectRunner with ``workers`` SDK worker processes."""
    if any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return PipelineOptions(beam_args)
    return PipelineOptions(beam_args, runner="DirectRunner", direct_running_mode="multi_processing",
                           direct_num_workers=workers or os.cpu_count() or 2)


class _WorkerLogFilter(logging.Filter):
    """The local runner relays worker logs as one text blob per record: keep this project's lines (progress,
    per-video results) and errors, reduced to their message; drop Beam's per-worker start-up chatter."""

    _MESSAGE = re.compile(r'message: "(.*?)" (?:instruction_id|log_location|thread):', re.S)
    _LOCATION = re.compile(r'log_location: "([^"]*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        match, where = self._MESSAGE.search(text), self._LOCATION.search(text)
        if match is None:
            return record.levelno >= logging.ERROR
        message, location = match.group(1), where.group(1) if where else ""
        if "/pipeline/" not in location and record.levelno < logging.ERROR:
            return False
        record.msg, record.args = message.replace("\\'", "'"), ()
        return True


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(logging.INFO)
    relay.addFilter(_WorkerLogFilter())


# ---- the pipeline ------------------------------------------------------------------------------------------
def build(p: beam.Pipeline, config: RunConfig, quality: Quality) -> None:
    """Wire the stages. Every stage returns {MAIN, OUTCOMES}; the audit sees every outcome and birth."""
    found = p | "Search" >> Search(config.search)
    fetched = found[MAIN] | "Download" >> Download(config.download)
    cut = fetched[MAIN] | "Segment" >> Segment(config.segment)
    scored = cut[MAIN] | "Quality" >> quality
    written = scored[MAIN] | "Shard" >> shards.WriteShards(config.shards)

    outcomes = ((found[OUTCOMES], fetched[OUTCOMES], cut[OUTCOMES], scored[OUTCOMES], written[OUTCOMES])
                | "AllOutcomes" >> beam.Flatten()
                | "Count" >> beam.ParDo(audit.CountOutcomes()))
    births = (
        audit.register(found[MAIN], reasons.ITEM_VIDEO, reasons.STAGE_DOWNLOAD, True, "RegCandidates"),
        audit.register_outcomes(found[OUTCOMES], reasons.ITEM_VIDEO, "RegSearchDrops"),
        audit.register(fetched[MAIN], reasons.ITEM_VIDEO, reasons.STAGE_SEGMENT, False, "RegDownloaded"),
        audit.register(cut[MAIN], reasons.ITEM_CLIP, reasons.STAGE_QUALITY, True, "RegClips"),
        audit.register_outcomes(cut[OUTCOMES], reasons.ITEM_CLIP, "RegShortTails"),
        audit.register(scored[MAIN], reasons.ITEM_CLIP, reasons.STAGE_SHARD, False, "RegScored"),
    ) | "AllBirths" >> beam.Flatten()
    thumbs = (cut[MAIN]
              | "ThumbSample" >> beam.combiners.Top.Of(config.thumbnails,
                                                       key=lambda c: report.thumbnail_rank(c.clip_key),
                                                       reverse=True)
              | "Thumbnails" >> beam.FlatMap(lambda clips: [report.thumbnail_strip(c) for c in clips]))
    (p
     | "AuditStart" >> beam.Create([config.output_dir])
     | "Audit" >> beam.Map(finalize, outcomes=beam.pvalue.AsList(outcomes),
                           births=beam.pvalue.AsList(births),
                           manifest_clips=beam.pvalue.AsList(written[MAIN]),
                           thumbs=beam.pvalue.AsList(thumbs)))


def run_pipeline(config: RunConfig, quality: Quality, options: PipelineOptions, runner=None):
    """Build, run and wait; returns Beam's result (a dry run's carries the job it would submit)."""
    p = beam.Pipeline(runner=runner, options=options)
    build(p, config, quality)
    result = p.run()
    result.wait_until_finish()
    return result


def finalize(output_dir: str, outcomes, births, manifest_clips, thumbs) -> dict:
    """Write manifest, outcomes, stats and report (runs once, on a worker: works the same on Dataflow)."""
    outcomes = sorted(outcomes, key=lambda o: (o.item_kind, o.video_id, o.item_id, o.stage, o.outcome))
    manifest.write_manifest(output_dir, manifest_clips)
    tables.write_table(FileSystems.join(output_dir, OUTCOMES_FILE), to_table(outcomes, Outcome))
    num_shards = len({c.location for c in manifest_clips})
    stats = audit.compute_stats(outcomes, list(births), num_shards)
    tables.write_bytes(FileSystems.join(output_dir, STATS_FILE), audit.stats_json(stats))
    page = report.render_report(stats, outcomes, dict(thumbs))
    tables.write_bytes(FileSystems.join(output_dir, REPORT_FILE), page.encode("utf-8"))
    return stats


def failed_stage(exc: BaseException) -> str:
    """The stage a pipeline error came from, read from the step label in Beam's message."""
    text = str(exc)
    for label, name in STAGE_LABELS.items():
        if re.search(rf"\b{label}/", text):
            return name
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    config, ns, beam_args = parse(list(sys.argv[1:] if argv is None else argv))
    options = local_options(beam_args, ns.workers)
    runner = FnApiRunner() if ns.in_process else None
    started = time.monotonic()
    try:
        run_pipeline(config, quality_from_args(ns), options, runner)
    except Exception as exc:
        stage = failed_stage(exc)
        message = str(exc).strip().splitlines()
        print(f"run FAILED in stage '{stage}': {type(exc).__name__}: {message[-1] if message else ''}",
              file=sys.stderr)
        log.debug("full error", exc_info=True)
        return 1
    if options.view_as(TestOptions).dry_run:
        print("dry run: the job graph was built and not submitted")
        return 0
    stats = json.loads(tables.read_bytes(FileSystems.join(config.output_dir, STATS_FILE)))
    if not stats["conservation"]["ok"]:
        print(audit.failure_message(stats), file=sys.stderr)
        return 1
    kept = {c.location.rsplit("/", 1)[-1] for c in manifest.read_manifest(config.output_dir)}
    stale = shards.remove_stale_shards(config.output_dir, kept)
    print(summary(stats, time.monotonic() - started, config.output_dir, len(stale)))
    return 0


def summary(stats: dict, elapsed_s: float, output_dir: str, stale: int) -> str:
    lines = [f"done in {elapsed_s:.1f} s -> {output_dir}"]
    for row in stats["funnel"]:
        parts = [f"{k.split('_')[0]} {row[k]}->{row[k.replace('_in', '_out')]}" for k in ("videos_in", "clips_in")
                 if k in row]
        lines.append(f"  {row['stage']:<9} " + ", ".join(parts))
    lines.append(f"  kept {stats['clips'].get('kept', 0)} clips ({stats['hours']['kept_clips']:.2f} h) in "
                 f"{stats['shards']} shard(s); conservation ok" + (f"; removed {stale} stale shard(s)" if stale else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
