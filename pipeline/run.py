"""``python -m pipeline run``: build a dataset end to end, locally or on Dataflow, with one command line.

    Search -> Download -> Segment -> Quality -> Shard, then the manifest, outcomes, stats and report.

Output (``--output``, local or ``gs://``): ``shards/``, ``shard_index.json``, ``manifest/`` and ``outcomes/``
(partitioned Parquet), ``stats.json``, ``report.html``, ``thumbnails.parquet``, ``videos/`` (unless
``--download-dir``), ``cache/segment/`` (so a rerun skips finished work and rewrites identical outputs), and
``lease.json`` / ``job.json`` while a job holds the output. The audit is distributed like the stages
(``pipeline.audit.audit_stage``): the launcher reads only ``stats.json`` and ``shard_index.json``.
Unknown flags are Beam options; without ``--runner`` it uses the FnApiRunner with ``--workers`` processes (Beam's
DirectRunner would fetch the Prism binary and ignore the worker settings). ``pipeline.finalize.finish`` does what
follows the job; ``--detach`` leaves that to ``python -m pipeline finalize``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from pipeline import finalize, job, job_process, shards
from pipeline.audit.exit_status import LEASE_HELD
from pipeline.audit.summary import summary  # noqa: F401 - the lines a run prints, reached as run.summary too
from pipeline.beam_runtime import data_plane_buffers
from pipeline.cli import beam_flags, lease, options, preflight, run_inputs, worker_image
from pipeline.cli.options import option
from pipeline.download import DownloadConfig
from pipeline.io import partitioned, storage
from pipeline.job import RunConfig, has_runner
from pipeline.local import local_slices, search_plan
from pipeline.quality import QualityConfig
from pipeline.runtime import interrupts, progress, run_log
from pipeline.search import SearchConfig, build_sources
from pipeline.segment import SegmentConfig
from pipeline.site.site_access import CredentialsError, SiteAccessConfig, site_for_job
from pipeline.tools import doctor
from schemas.cli import StrictParser, fail

log = logging.getLogger("pipeline.run")
PROG = "python -m pipeline run"
# Runners whose job lives in the launcher's process tree: a run on one cannot be detached.
LOCAL_RUNNERS = frozenset({"local", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                           "FnApiRunner", "PrismRunner", "InteractiveRunner"})


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """The run's own flags: where the output goes, how it is cut into files, how the job runs."""

    output: str = option("--output", required=True, help="output directory or gs:// prefix")
    shard_size_mb: float = option("--shard-size-mb", type=float, default=256.0,
                                  help="target clip bytes per shard (default 256 MB)")
    table_part_rows: int = option(
        "--table-part-rows", type=int, default=partitioned.ROWS_PER_PART,
        help="rows per Parquet part of outcomes/ and manifest/, on average; the part count follows from the row "
             "count (default %(default)d)")
    slice_outcomes: int = option(
        "--slice-outcomes", type=int, default=search_plan.SLICE_OUTCOMES,
        help="local runs: run the work as one Beam job per slice of about this many outcomes, estimated from the "
             "declared durations, so that memory follows the slice, not the catalog (default %(default)d)")
    workers: int | None = option("--workers", type=int, default=None,
                                 help="local SDK worker processes when no --runner is given (default: CPU count)")
    delete_videos: bool = option(
        "--delete-videos", action="store_true", default=False,
        help="delete each downloaded video as soon as it is cut (its clips are in the clip store, cache/segment/): "
             "at most one source per worker thread on disk; a rerun skips what is committed instead of "
             "downloading it again (default: keep the downloads)")
    in_process: bool = option(
        "--in-process", action="store_true", default=False,
        help="run locally in this one process, one bundle at a time (Beam's FnApiRunner in in_memory mode): "
             "easiest to debug (breakpoints, tracebacks); no --runner, --workers")
    overwrite: bool = option(
        "--overwrite", action="store_true", default=False,
        help="write into an --output that holds a dataset made from other inputs (or other files), replacing "
             "it; without it such a run is refused (same inputs always resume)")
    allow_empty: bool = option(
        "--allow-empty", action="store_true", default=False,
        help="exit 0 when the run keeps no clip (default: exit 65, an empty dataset is usually a mistake)")
    quiet: bool = option("--quiet", action="store_true", default=False,
                         help="no progress line, no warnings: errors and the final summary only")
    worker_plugin: bool = option(
        "--no-worker-plugin", action="store_false", default=True, dest="worker_plugin",
        help="leave the worker plugin out of the job (local and Dataflow): its SDK workers keep Beam's own "
             "data-plane buffer sizes (default: 1 MB output flush, 8 MB queues; pipeline/beam_runtime/data_plane_buffers.py)")
    detach: bool = option(
        "--detach", action="store_true", default=False,
        help="with a remote --runner (DataflowRunner): submit the job, write <output>/job.json, print the job id "
             "and exit 0 without waiting; `python -m pipeline finalize OUTPUT` does the rest once the job is done")
    force_lease: bool = option(
        "--force-lease", action="store_true", default=False,
        help="take over the output's lease (lease.json) even while its holder looks alive, e.g. a job that failed "
             "or was cancelled on its runner; without it a run into an output another live run holds is refused "
             "(exit 73)")
    log_level: str = option("--log-level", choices=run_log.CONSOLE_LEVELS, default="warning",
                            help="what the console shows besides progress (default %(default)s); the log file "
                                 "under <output>/logs/ always holds everything")


# Each config's flags, in --help order, under its group title (None: the run's own, ungrouped).
OPTION_GROUPS = ((LaunchOptions, None), (SearchConfig, "search"), (DownloadConfig, "download (yt-dlp)"),
                 (SiteAccessConfig, "site access (request budgets per host, YouTube at scale; see "
                                    "docs/search_download.md)"),
                 (SegmentConfig, "segmentation (16 s clips at 10 FPS, 160x90 by default)"),
                 (QualityConfig, "quality classifier"))


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
        prog=PROG, description="Build a dataset end to end, locally or on Dataflow.",
        epilog="Beam's own pipeline options are accepted too, e.g. --runner DataflowRunner --project P --region R "
               "--temp_location gs://B/tmp --sdk_container_image IMAGE (see docs/pipeline.md); any other flag is "
               "refused. Exit codes: 0 done, 1 failed, 2 usage error, 65 no clip kept, 66 no input readable, "
               "73 output held by another run (lease), 75 items deferred or refused by the storage (rerun), 130/143 interrupted (README).")
    for config_class, title in OPTION_GROUPS:
        options.add_options(parser, config_class, title)
    return parser


def parse(argv: list[str]) -> tuple[RunConfig, LaunchOptions, list[str]]:
    """The run's config, its launch options and the flags left for Beam. Each stage's config is built from its
    own flags only; what stages share is decided here: one ``SiteAccessConfig`` (budget, credentials,
    timeouts) for search and download, the search's duration bound and the segment's isolation for the
    download."""
    parser = build_parser()
    ns, beam_args = parser.parse_known_args(argv)
    beam_flags.refuse_unknown(parser, beam_args)
    launch = options.build(LaunchOptions, ns)
    if not launch.worker_plugin:  # carried in Beam's flags: the local job's own process builds its options again
        beam_args = [*beam_args, f"--experiments={data_plane_buffers.NO_PLUGIN_EXPERIMENT}"]
    if launch.shard_size_mb <= 0:
        parser.error(f"--shard-size-mb must be > 0, got {launch.shard_size_mb}")
    if launch.table_part_rows < 1:
        parser.error(f"--table-part-rows must be >= 1, got {launch.table_part_rows}")
    if launch.slice_outcomes < 1:
        parser.error(f"--slice-outcomes must be >= 1, got {launch.slice_outcomes}")
    if launch.workers is not None and launch.workers < 1:
        parser.error(f"--workers must be >= 1, got {launch.workers}")
    if launch.detach and runner_name(beam_args) in LOCAL_RUNNERS:
        parser.error("--detach needs a remote runner (--runner DataflowRunner ...): a local job ends with its "
                     "launcher, so it cannot be left running; drop --detach")
    if launch.in_process and has_runner(beam_args):
        parser.error("--in-process runs locally on Beam's FnApiRunner; it cannot be combined with --runner")
    if launch.in_process and launch.workers not in (None, 1):
        parser.error(f"--in-process runs one worker in this process; drop --workers {launch.workers} "
                     f"(or drop --in-process to run {launch.workers} worker processes)")
    output = launch.output.rstrip("/")
    if "://" not in output:
        output = os.path.abspath(output)
    search = options.build(SearchConfig, ns)
    if not search.catalogs and not search.youtube:
        parser.error("no input: give --catalog FILE (repeatable) and/or --youtube")
    download = options.build(DownloadConfig, ns)
    download_dir = download.download_dir or FileSystems.join(output, "videos")
    segment = options.build(SegmentConfig, ns, cache_dir=FileSystems.join(output, "cache", "segment"),
                            delete_sources_in=download_dir if launch.delete_videos else "")
    try:  # one site setting for both stages: the request budgets split over the job's processes
        site = site_for_job(options.build(SiteAccessConfig, ns), beam_args, launch.workers, launch.in_process)
    except (CredentialsError, ValueError) as exc:  # unreadable credentials, a host named twice
        parser.error(str(exc))
    try:
        longest_s = longest_video_s(search)
    except ValueError as exc:  # the keywords file: its own line at launch, not a traceback
        parser.error(f"--keywords {search.keywords_path}: {exc}")
    download = dataclasses.replace(download, download_dir=download_dir, site=site,
                                   max_duration_s=longest_s, isolate_probe=segment.isolate)
    config = RunConfig(output_dir=output, search=dataclasses.replace(search, site=site), download=download,
                       segment=segment, quality=options.build(QualityConfig, ns),
                       shards=shards.ShardConfig(output, int(launch.shard_size_mb * 1024 * 1024)),
                       table_part_rows=launch.table_part_rows, slice_outcomes=launch.slice_outcomes)
    return config, launch, beam_args


def longest_video_s(search: SearchConfig) -> float | None:
    """The download refuses what the search drops as too long: ``--max-duration-s``, else the keywords file's."""
    if search.max_duration_s is not None:
        return search.max_duration_s
    return search.rules().max_duration_s


def runner_name(beam_args: list[str]) -> str:
    """The runner the job runs on: ``--runner``'s class name (``DataflowRunner``), or ``local`` without one."""
    if not has_runner(beam_args):
        return "local"
    return str(PipelineOptions(beam_args).view_as(StandardOptions).runner or "local").rsplit(".", 1)[-1]


def job_id_of(result) -> str:
    """The id of the job Beam's result stands for (``DataflowPipelineResult.job_id()``), ``unknown`` without one."""
    job_id = getattr(result, "job_id", None)
    return str((job_id() if callable(job_id) else job_id) or "unknown")


def job_checks(beam_args: list[str], youtube: bool) -> list[preflight.Check]:
    """The checks of how the job will run, before the inputs': a worker image's Beam and Python against the
    launcher's (``pipeline.cli.worker_image``), and for a YouTube search yt-dlp's age (a warning, with the fix:
    ``doctor.youtube_launch_check``)."""
    image = worker_image.check_image(beam_args)
    checks = [image] if image is not None else []
    return checks + ([doctor.youtube_launch_check(beam_args)] if youtube else [])


def preflight_checks(config: RunConfig) -> tuple[list[preflight.Check], list[preflight.CatalogFacts]]:
    """Every check ``run`` makes before any work (``pipeline.cli.preflight``), with what the catalogs hold."""
    checks, catalogs = [], []
    for path in config.search.catalogs:
        check, facts = preflight.check_catalog(path)
        checks.append(check)
        catalogs += [facts] if facts is not None else []
    checks.append(preflight.check_keywords(config.search.keywords_path))
    checks.append(preflight.check_writable_dir(config.output_dir, "--output"))
    if config.download.download_dir != FileSystems.join(config.output_dir, "videos"):
        checks.append(preflight.check_writable_dir(config.download.download_dir, "--download-dir"))
    if config.quality.classifier:
        seg = config.segment
        checks.append(preflight.check_classifier(config.quality.classifier, seg.clip_width, seg.clip_height,
                                                 seg.clip_fps))
    return checks, catalogs


def cached_videos(output_dir: str) -> int:
    """Videos whose segmentation an earlier run committed to ``output_dir``'s cache (local outputs)."""
    cache = os.path.join(storage.local_path(output_dir), "cache", "segment")
    if not storage.is_local(output_dir) or not os.path.isdir(cache):
        return 0
    return sum(name.endswith(".outcomes.parquet") for name in os.listdir(cache))


def interrupted_message(exc: interrupts.Interrupted, output_dir: str, log_file: str, remote: bool) -> str:
    if not output_dir:
        return f"interrupted ({exc}) before the run started; nothing was written"
    where = ("the submitted job keeps running on its runner and holds the output: cancel it there to stop it, "
             f"or finalize it once it is done ({finalize.command(output_dir)})" if remote
             else "the workers were stopped")
    return (f"interrupted ({exc}): {where}. Rerun the same command to continue: finished downloads and clips "
            f"are kept. Log: {log_file}")


def main(argv: list[str] | None = None, guard_signals: bool = False) -> int:
    """The run. With ``guard_signals`` (the command line; tests call this in their own process without it) a
    local job runs in a session of its own and Ctrl-C / SIGTERM end the run quietly with 130 / 143
    (``pipeline.runtime.interrupts``, ``pipeline.job_process``)."""
    if guard_signals:
        interrupts.raise_on_signals()
    run_log.setup_console()
    claimed = {"output_dir": "", "log_file": "", "remote": False}
    try:
        return _launch(list(sys.argv[1:] if argv is None else argv), guard_signals, claimed)
    except interrupts.Interrupted as exc:
        print(f"\n{interrupted_message(exc, **claimed)}", file=sys.stderr)
        return exc.exit_code


def _launch(argv: list[str], separate_job: bool, claimed: dict) -> int:
    config, launch, beam_args = parse(argv)
    run_log.setup_console("error" if launch.quiet else launch.log_level)
    beam_options = job.local_options(beam_args, launch.workers, launch.in_process)
    runner = job.local_runner(beam_args, beam_options)
    checks = job_checks(beam_args, config.search.youtube)  # the image, yt-dlp: before the inputs
    failed = preflight.first_failure(checks)
    if failed is not None:
        return fail(PROG, failed.detail)
    input_checks, catalogs = preflight_checks(config)
    checks += input_checks
    failed = preflight.first_failure(checks)
    if failed is not None:
        return fail(PROG, failed.detail)
    inputs = run_inputs.describe(config, catalogs)
    try:
        lease.check_free(config.output_dir, finalize.job_finished(config.output_dir), launch.force_lease)
        state = run_inputs.check(config.output_dir, inputs, launch.overwrite)
    except run_inputs.OutputInUse as exc:
        return fail(PROG, str(exc))
    except lease.LeaseHeld as exc:
        return lease_held(exc)
    if not launch.quiet:
        for check in checks:
            if check.status == "warn":
                print(f"warning: {check.detail}", file=sys.stderr)
    dry_run = beam_options.view_as(TestOptions).dry_run
    if dry_run and runner is not None:  # a local dry run: checks and the graph, nothing run or written
        p = beam.Pipeline(runner=runner, options=beam_options)
        job.build(p, config)
        steps = len(p.to_runner_api().components.transforms)
        print(f"dry run: checks passed, the job graph has {steps} steps; nothing was run or written")
        return 0
    if dry_run:
        job.run_pipeline(config, beam_options, runner)
        print("dry run: checks passed, the job graph was built and not submitted; nothing was written"
              + (" (--detach: a real run writes job.json and the lease, prints the job id and exits)"
                 if launch.detach else ""))
        return 0
    try:  # the lease: from here on this launcher, then its job, holds the output
        held = lease.acquire(config.output_dir, lease.for_launcher(runner_name(beam_args)),
                             finalize.job_finished(config.output_dir), launch.force_lease)
    except lease.LeaseHeld as exc:
        return lease_held(exc)
    heartbeat = lease.Heartbeat(config.output_dir, held).start()
    submitted = {"running": False}  # a remote job that runs on: it keeps the lease when this launcher ends
    try:
        return _run_holding_lease(config, launch, state, inputs, catalogs, beam_args, beam_options, runner,
                                  separate_job, claimed, heartbeat, submitted)
    finally:
        heartbeat.stop()
        if not submitted["running"]:
            lease.release(config.output_dir, held.token)


def lease_held(exc: lease.LeaseHeld) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return LEASE_HELD


def _run_holding_lease(config: RunConfig, launch: LaunchOptions, state: str, inputs: dict,
                       catalogs: list[preflight.CatalogFacts], beam_args: list[str], beam_options: PipelineOptions,
                       runner, separate_job: bool, claimed: dict, heartbeat: lease.Heartbeat, submitted: dict) -> int:
    """The run once its lease is taken: the job, then ``finalize.finish`` (or, ``--detach``, the job's record)."""
    finalize.clear_job(config.output_dir)
    log_file = run_log.log_path(config.output_dir)
    log_handler = run_log.open_file(log_file)
    run_inputs.record(config.output_dir, inputs)
    claimed.update(output_dir=config.output_dir, log_file=log_file, remote=runner is None)
    if state in ("resume", "adopt") and not launch.quiet:
        print(f"resuming {config.output_dir} (same inputs as its last run): {cached_videos(config.output_dir)} "
              "segmented video(s) come from its cache; finished downloads are not fetched again", file=sys.stderr)
    elif state == "overwrite" and not launch.quiet:
        print(f"--overwrite: replacing what {config.output_dir} holds", file=sys.stderr)
    reporter, progress_dir = None, ""
    if runner is not None and not launch.quiet:  # local runs: workers tally progress for the launcher
        progress_dir = tempfile.mkdtemp(prefix="genie-progress-")
        config = dataclasses.replace(config, progress_dir=progress_dir)
        rows = sum(c.rows for c in catalogs) if not config.search.youtube else None
        reporter = progress.Reporter(progress_dir, rows).start()
    started, plan = time.monotonic(), None
    try:
        if runner is None:  # a remote runner: one job, which searches on its workers
            result = job.submit(config, beam_options, runner)
            submitted["running"] = True
            record = record_job(config.output_dir, result, beam_args, beam_options, launch.allow_empty)
            heartbeat.hand_over(lease.for_job(heartbeat.lease, record["runner"], record["job_id"], launch.detach))
            if launch.detach:
                print(f"submitted {record['runner']} job {record['job_id']}; it runs on without this launcher "
                      f"(record: {FileSystems.join(config.output_dir, finalize.JOB_FILE)})\n"
                      f"once it is done: {record['finalize']}")
                return 0
            try:
                result.wait_until_finish()
            except Exception:
                submitted["running"] = False  # it failed on its runner: it no longer writes the output
                raise
            submitted["running"] = False
        else:
            plan = run_slices(config, state, launch, beam_args, beam_options, runner, log_file, separate_job,
                              reporter)
    except Exception as exc:
        if reporter is not None:
            reporter.stop()
            reporter = None
        log.error("the run failed", exc_info=not isinstance(exc, job_process.JobFailed), extra=run_log.FILE_ONLY)
        stage, cause = (exc.stage, str(exc)) if isinstance(exc, job_process.JobFailed) else job.root_cause(exc)
        print(f"run FAILED in stage '{stage}': {cause} (full traceback in {log_file})", file=sys.stderr)
        return 1
    finally:
        if reporter is not None:
            reporter.show()
            reporter.stop()
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
        run_log.close_file(log_handler)
    bad_rows = sum(c.bad_count for c in catalogs)
    notes = () if not bad_rows or launch.quiet else (
        f"  {bad_rows} catalog row(s) could not be read (failed: bad_catalog_row); the first: "
        + "; ".join(row for c in catalogs for row in c.bad_rows[:1]),)
    return finalize.finish(config.output_dir, plan, time.monotonic() - started, launch.allow_empty, notes)


def record_job(output_dir: str, result, beam_args: list[str], beam_options: PipelineOptions,
               allow_empty: bool) -> dict:
    """Write the submitted job's ``job.json`` (``pipeline.finalize``); returns it."""
    cloud = beam_options.view_as(GoogleCloudOptions)
    record = finalize.job_record(output_dir, runner_name(beam_args), job_id_of(result), cloud.project,
                                 cloud.region, allow_empty)
    finalize.write_job(output_dir, record)
    return record


def run_slices(config: RunConfig, state: str, launch: LaunchOptions, beam_args: list[str],
               beam_options: PipelineOptions, runner, log_file: str, separate_job: bool,
               reporter: progress.Reporter | None = None) -> search_plan.Plan:
    """A local run (``pipeline.local.local_slices``): the search plan (reused on a resume), one job per slice not
    already complete, then the run's audit files from the slices'. Returns the plan. The progress line's total
    leaves out the rows of the slices an earlier run completed."""
    output = config.output_dir
    plan = search_plan.read_plan(output) if state == "resume" else None
    reused = plan is not None  # a new plan may cut the slices otherwise: no slice of an earlier one is skipped
    if plan is None:  # the launcher alone searches now: the whole job's request budgets are its own
        alone = dataclasses.replace(config.search, site=dataclasses.replace(config.search.site, processes=1))
        plan = search_plan.make_plan(output, build_sources(alone), config.search.rules(), config.slice_outcomes,
                                     config.progress_dir)
    complete = {s.index for s in plan.slices if reused and not local_slices.is_single(plan)
                and local_slices.is_complete(output, plan, s.index)}
    if reporter is not None and reporter.rows is not None:
        reporter.rows -= sum(s.candidates + s.search_outcomes for s in plan.slices if s.index in complete)
    if not launch.quiet:
        print(f"search: {plan.candidates} candidate(s) go on, {plan.search_outcomes} dropped or failed; "
              f"{len(plan.slices)} slice(s) of about {plan.slice_outcomes} outcomes"
              + (f", {len(complete)} complete from the last run" if complete else ""), file=sys.stderr)
    for index in range(len(plan.slices)):
        if index in complete:
            continue
        part = dataclasses.replace(config, planned_slice=search_plan.slice_dir(output, index),
                                   slice_label=local_slices.label(plan, index),
                                   audit_dir=local_slices.audit_dir(output, plan, index))
        if separate_job:
            job_process.run(part, beam_args, launch.workers, launch.in_process, log_file)
        else:
            job.run_pipeline(part, beam_options, runner)
        local_slices.drop_planned(output, plan, index)
    local_slices.merge(output, plan, config.thumbnails_per_group)
    return plan


def cli_main(argv: list[str] | None = None) -> int:
    """``python -m pipeline run``: ``main`` with Ctrl-C and SIGTERM handled quietly."""
    return main(argv, guard_signals=True)


if __name__ == "__main__":
    sys.exit(cli_main())
