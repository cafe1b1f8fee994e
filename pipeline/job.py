"""The Beam job of a run: its config, its graph (``build``), how it runs locally (Beam's FnApiRunner) or on a
named runner, and which stage an error came from.

Both the launcher (``pipeline.run``) and the local job's own process (``pipeline.job_process``) use it; it knows
nothing of the command line, the output's lease or what follows the job.
"""

from __future__ import annotations

import dataclasses
import os
import re

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import shards
from pipeline.audit import aggregates, audit_stage, report
from pipeline.beam_runtime import data_plane_buffers, streamed_inputs
from pipeline.beam_runtime.local_runner import fn_api_runner
from pipeline.download import Download, DownloadConfig
from pipeline.io import partitioned
from pipeline.local import local_slices, search_plan
from pipeline.quality import Quality, QualityConfig
from pipeline.retention import DownloadUnlessCommitted
from pipeline.runtime import process_memory
from pipeline.search import Search, SearchConfig
from pipeline.segment import Segment, SegmentConfig
from pipeline.site.site_access import SITE_USAGE
from pipeline.stage import MAIN, OUTCOMES
from schemas import reasons

STAGE_LABELS = {"Search": reasons.STAGE_SEARCH, "Download": reasons.STAGE_DOWNLOAD,
                "Segment": reasons.STAGE_SEGMENT, "Quality": reasons.STAGE_QUALITY, "Shard": reasons.STAGE_SHARD,
                "Audit": "audit"}
# Steps build() adds around the stages (counting, registering): the audit's.
AUDIT_HELPER_PREFIXES = ("AllOutcomes", "AllBirths", "Count", "Reg")
_STEP = re.compile(r"while running '([^']+)'")

@dataclasses.dataclass(frozen=True)
class RunConfig:
    output_dir: str
    search: SearchConfig
    download: DownloadConfig
    segment: SegmentConfig
    quality: QualityConfig
    shards: shards.ShardConfig
    thumbnails_per_group: int = report.SAMPLES_PER_GROUP  # clips per (outcome, reason) with a report strip
    table_part_rows: int = partitioned.ROWS_PER_PART  # rows per part of outcomes/ and manifest/, on average
    slice_outcomes: int = search_plan.SLICE_OUTCOMES  # a local run's slice size (pipeline.local.local_slices)
    planned_slice: str = ""  # a local run's slice: the planned search results to read ("" = search in the job)
    slice_label: str = ""  # what this slice's shards and table parts are named with ("" = none)
    audit_dir: str = ""  # where this slice's audit writes stats.json and the small files ("" = output_dir)
    progress_dir: str = ""  # where workers tally progress for the launcher (pipeline.runtime.progress); "" = none


def has_runner(beam_args: list[str]) -> bool:
    return any(a == "--runner" or a.startswith("--runner=") for a in beam_args)


def local_options(beam_args: list[str], workers: int | None, in_process: bool = False) -> PipelineOptions:
    """Beam options. With ``--runner`` given, the Beam flags plus the worker plugin (unless ``--no-worker-plugin``);
    otherwise the local FnApiRunner's settings: ``workers`` SDK worker processes (``multi_processing``), or with
    ``in_process`` one worker in this process (``in_memory``; the FnApiRunner would otherwise start processes
    from these options)."""
    if has_runner(beam_args):  # every SDK worker imports the worker plugin (data_plane_buffers: why)
        return _plugin_unless_off(PipelineOptions(beam_args))
    if in_process:
        return PipelineOptions(beam_args, direct_running_mode="in_memory", direct_num_workers=1)
    # The SDK worker processes inherit glibc's tuning (process_memory.ALLOCATOR_ENV; the worker image sets it too).
    process_memory.set_allocator_env()
    return _plugin_unless_off(PipelineOptions(
        beam_args, direct_running_mode="multi_processing", direct_num_workers=workers or os.cpu_count() or 2))


def _plugin_unless_off(options: PipelineOptions) -> PipelineOptions:
    """The worker plugin among the options' ``--beam_plugins``, unless ``--no-worker-plugin`` turned it off."""
    if data_plane_buffers.plugin_turned_off(options):
        return data_plane_buffers.without_worker_plugin(options)
    return data_plane_buffers.with_worker_plugin(options)


def local_runner(beam_args: list[str], options: PipelineOptions | None = None, stream_inputs: bool = True):
    """The runner object to use: Beam's FnApiRunner when no ``--runner`` is given, else None (Beam builds the
    named runner from the options). Not the DirectRunner: it tries to download Prism from GitHub first.

    The FnApiRunner sends its worker processes their bundle inputs in ~1 MB messages while the bundles run
    (``pipeline.beam_runtime.streamed_inputs``: Beam's way lost elements at a million outcomes);
    ``stream_inputs=False`` keeps Beam's way, for measuring against it.

    Its worker processes get the options' ``--beam_plugins`` (the worker plugin) as a runner's provisioning
    service would hand them (``pipeline.beam_runtime.local_runner``)."""
    if has_runner(beam_args):
        return None
    if stream_inputs:
        streamed_inputs.install()
    return fn_api_runner(options)


# ---- the pipeline ------------------------------------------------------------------------------------------
def build(p: beam.Pipeline, config: RunConfig) -> None:
    """Wire the stages. Every stage returns {MAIN, OUTCOMES}; the audit sees every outcome and birth.

    From Segment on, clips are references into the clip store (``pipeline.io.clip_store``), a few hundred bytes
    each: the bytes are written once by the worker that cuts them and read by the quality scorer (fused
    into that worker), the shard writers and, for the report's few picked clips, the thumbnails.

    Outcomes are counted (Beam counters, progress lines) per stage before they are flattened: a consumer of
    the flatten of all stages runs only when every stage is done on the local runner.
    """
    quality = Quality.from_config(config.quality)
    search = local_slices.PlannedSearch(config.planned_slice) if config.planned_slice else Search(config.search)
    found = p | "Search" >> search
    if config.segment.delete_sources_in:  # downloads are deleted once committed: skip what is committed
        fetched = found[MAIN] | "Download" >> DownloadUnlessCommitted(config.download, config.segment)
    else:
        fetched = found[MAIN] | "Download" >> Download(config.download)
    cut = fetched[MAIN] | "Segment" >> Segment(config.segment)
    scored = cut[MAIN] | "Quality" >> quality
    written = scored[MAIN] | "Shard" >> shards.WriteShards(
        dataclasses.replace(config.shards, slice_label=config.slice_label))

    per_stage = ((reasons.STAGE_SEARCH, found), (reasons.STAGE_DOWNLOAD, fetched), (reasons.STAGE_SEGMENT, cut),
                 (reasons.STAGE_QUALITY, scored), (reasons.STAGE_SHARD, written))
    tally = config.progress_dir
    outcomes = ([out[OUTCOMES] | f"Count{name.capitalize()}" >> beam.ParDo(aggregates.CountOutcomes(name, tally))
                 for name, out in per_stage]
                | "AllOutcomes" >> beam.Flatten())
    births = (
        aggregates.register(found[MAIN], reasons.ITEM_VIDEO, reasons.STAGE_DOWNLOAD, True, "RegCandidates", tally),
        aggregates.register_outcomes(found[OUTCOMES], reasons.ITEM_VIDEO, "RegSearchDrops"),
        aggregates.register(fetched[MAIN], reasons.ITEM_VIDEO, reasons.STAGE_SEGMENT, False, "RegDownloaded", tally),
        aggregates.register(cut[MAIN], reasons.ITEM_CLIP, reasons.STAGE_QUALITY, True, "RegClips", tally),
        aggregates.register_outcomes(cut[OUTCOMES], reasons.ITEM_CLIP, "RegShortTails"),
        aggregates.register(scored[MAIN], reasons.ITEM_CLIP, reasons.STAGE_SHARD, False, "RegScored", tally),
    ) | "AllBirths" >> beam.Flatten()
    site_usage = (found[SITE_USAGE], fetched[SITE_USAGE]) | "AllSiteUsage" >> beam.Flatten()
    _ = ({"outcomes": outcomes, "births": births, "manifest": written[MAIN], "shard_index": written[shards.INDEX],
          "clips": cut[MAIN], "site_usage": site_usage}
         | "Audit" >> audit_stage.Audit(config.output_dir, quality.settings, config.thumbnails_per_group,
                                        config.table_part_rows, config.audit_dir, config.slice_label))


def submit(config: RunConfig, options: PipelineOptions, runner=None):
    """Build and start the job; returns Beam's result without waiting for it."""
    p = beam.Pipeline(runner=runner, options=options)
    build(p, config)
    return p.run()


def run_pipeline(config: RunConfig, options: PipelineOptions, runner=None):
    """Build, run and wait; returns Beam's result: ``metrics()`` holds the ``outcomes/<stage>`` counters,
    and a dry run's carries the job it would submit."""
    result = submit(config, options, runner)
    result.wait_until_finish()
    return result


def stage_of_step(step: str) -> str | None:
    """The stage a step label belongs to: its top-level label (``Segment/Cut clips`` -> segment); the
    helpers build() adds (``CountShard``, ``RegClips``, ``AllBirths``...) -> audit."""
    top = step.split("/", 1)[0]
    if top in STAGE_LABELS:
        return STAGE_LABELS[top]
    if top.startswith(AUDIT_HELPER_PREFIXES):
        return "audit"
    return None


def failed_stage(exc: BaseException) -> str:
    """The stage a pipeline error came from, read from the step Beam names (``[while running 'Audit']``,
    ``... while running 'Segment/Cut clips'``); else from a stage label anywhere in the message."""
    text = str(exc)
    for step in _STEP.findall(text):
        name = stage_of_step(step)
        if name is not None:
            return name
    for label, name in STAGE_LABELS.items():
        if re.search(rf"\b{label}['/]", text):
            return name
    return "unknown"


def root_cause(exc: BaseException) -> tuple[str, str]:
    """(stage, one line) of a pipeline error: the stage Beam's message names, and the error's last line."""
    lines = str(exc).strip().splitlines()
    return failed_stage(exc), f"{type(exc).__name__}: {lines[-1] if lines else ''}"
