"""``python -m pipeline plan``: what a catalog will cost on Dataflow, before it runs.

Reads the catalogs as the run's pre-flight does (``preflight.read_catalog``), sums the durations their rows declare, and prints the
expected worker-hours, the bucket's peak storage and the cost at list prices (``pipeline.tools.cost_model``, whose
constants are measured in docs/measurements/2026-12-06-dataflow-cost-model.md). Rows that declare no duration
are counted at ``--assume-duration-s`` (default: what the local planner assumes, ``search_plan``), and the
output says how many; unreadable rows are left out and counted. The search's keyword and duration rules are not
applied: the estimate is for every readable row.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline.cli import options, preflight
from pipeline.cli.options import option
from pipeline.local import search_plan
from pipeline.tools import cost_model
from schemas.cli import StrictParser, fail

PROG = "python -m pipeline plan"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """The catalog, the workers and the prices the estimate is made for."""

    catalogs: tuple[str, ...] = option("--catalog", action="append", required=True,
                                       to_field=lambda paths, _: tuple(paths),
                                       help="catalog file (jsonl, csv or parquet; local or gs://); repeatable")
    machine_type: str = option("--machine-type", default="n2-highcpu-8", choices=sorted(cost_model.MACHINE_MEMORY_GB),
                               help="the workers' machine type (default %(default)s)")
    disk_size_gb: int | None = option("--disk-size-gb", type=_positive(int), default=None,
                                      help="each worker's disk (default: 12.5 GB per vCPU, rounded up to 10 GB)")
    max_num_workers: int = option("--max-num-workers", type=_positive(int), default=50,
                                  help="workers the job may run at once, for the wall-time line (default %(default)d)")
    source_height: int = option("--source-height", type=int, choices=sorted(cost_model.CPU_S_PER_VIDEO_HOUR),
                                default=360, help="the sources' height in pixels (default %(default)d: the download "
                                                  "takes the smallest H.264 stream of at least --min-height 360)")
    assume_duration_s: float = option("--assume-duration-s", type=_positive(float),
                                      default=search_plan.UNKNOWN_DURATION_S,
                                      help="duration counted for a row that declares none (default %(default)g s)")
    delete_videos: bool = option("--delete-videos", action="store_true", default=False,
                                 help="the run deletes each source once its clips are committed: no sources in the "
                                      "bucket's peak")
    storage_months: float = option("--storage-months", type=_positive(float), default=1.0,
                                   help="months the bucket keeps the peak, for its cost (default %(default)g)")
    vcpu_hour_usd: float = option("--vcpu-hour-usd", type=_positive(float), default=cost_model.VCPU_HOUR_USD,
                                  help="price of a worker vCPU-hour (default %(default)g, list price assumed)")
    memory_gb_hour_usd: float = option("--memory-gb-hour-usd", type=_positive(float),
                                       default=cost_model.MEMORY_GB_HOUR_USD,
                                       help="price of a worker memory GB-hour (default %(default)g)")
    pd_gb_month_usd: float = option("--pd-gb-month-usd", type=_positive(float), default=cost_model.PD_GB_MONTH_USD,
                                    help="price of a worker disk GB-month (default %(default)g)")
    gcs_gb_month_usd: float = option("--gcs-gb-month-usd", type=_positive(float), default=cost_model.GCS_GB_MONTH_USD,
                                     help="price of a bucket GB-month (default %(default)g)")


@dataclasses.dataclass(frozen=True)
class CatalogHours:
    rows: int = 0
    declared: int = 0  # rows with a duration
    declared_s: float = 0.0
    undeclared: int = 0
    unreadable: int = 0


def catalog_hours(paths: tuple[str, ...]) -> CatalogHours:
    """The rows of the catalogs and the durations they declare, read as the run's pre-flight reads them
    (``preflight.read_catalog``); ValueError when a catalog cannot be read."""
    hours = CatalogHours()
    for path in paths:
        try:
            facts = preflight.read_catalog(path)
        except Exception as exc:  # noqa: BLE001 - any reason it cannot be read is the answer, as at launch
            raise ValueError(f"--catalog {path}: cannot be read: {exc}") from None
        readable = facts.rows - facts.bad_count
        hours = CatalogHours(hours.rows + facts.rows, hours.declared + facts.declared,
                             hours.declared_s + facts.declared_s,
                             hours.undeclared + readable - facts.declared, hours.unreadable + facts.bad_count)
    return hours


def _usd(value: float) -> str:
    return f"{value:,.2f}"


def report(config: PlanConfig, hours: CatalogHours) -> list[str]:
    prices = cost_model.Prices(config.vcpu_hour_usd, config.memory_gb_hour_usd, config.pd_gb_month_usd,
                               config.gcs_gb_month_usd)
    video_hours = (hours.declared_s + hours.undeclared * config.assume_duration_s) / 3600
    kwargs = dict(machine_type=config.machine_type, source_height=config.source_height,
                  disk_gb=config.disk_size_gb, delete_videos=config.delete_videos,
                  storage_months=config.storage_months, prices=prices)
    e = cost_model.estimate(video_hours, **kwargs)
    per_1000 = cost_model.estimate(1000.0, **kwargs)
    rows = (f"catalog: {hours.rows:,} row(s), {hours.declared:,} with a declared duration "
            f"({hours.declared_s / 3600:,.1f} video-hours)")
    if hours.undeclared:
        rows += (f", {hours.undeclared:,} without one (assumed {config.assume_duration_s:g} s each, "
                 f"--assume-duration-s: {hours.undeclared * config.assume_duration_s / 3600:,.1f} video-hours)")
    if hours.unreadable:
        rows += f", {hours.unreadable:,} unreadable (not counted)"
    wall_h = e.worker_hours / config.max_num_workers
    sources = "no sources: --delete-videos" if config.delete_videos else f"sources {e.source_gb:,.2f}"
    return [
        rows + f"; {video_hours:,.1f} video-hours in all, before the search's keyword and duration rules",
        f"model: {config.source_height}p sources, {cost_model.CPU_S_PER_VIDEO_HOUR[config.source_height]:g} CPU-s "
        f"per video-hour segmenting x {cost_model.JOB_OVERHEAD:g} for the rest of the job, "
        f"{cost_model.CPU_UTILISATION:.0%} of the vCPUs busy ({cost_model.RECORD})",
        f"workers: {e.machine_type} ({e.vcpus} vCPU, {e.memory_gb:g} GB, {e.disk_gb} GB disk): "
        f"{e.worker_hours:,.2f} worker-hours ({e.vcpu_hours:,.2f} vCPU-hours); about {wall_h:,.2f} h with "
        f"{config.max_num_workers} workers busy (longer when a site's request budget is the limit)",
        f"storage: peak {e.peak_storage_gb:,.2f} GB in the bucket ({sources}, clip store {e.clip_gb:,.2f}, "
        f"shards {e.clip_gb:,.2f}; every clip kept)",
        f"cost (USD, list prices assumed on {cost_model.PRICES_DATE}): vCPU {_usd(e.vcpu_usd)} + memory "
        f"{_usd(e.memory_usd)} + worker disk {_usd(e.disk_usd)} + bucket {_usd(e.storage_usd)} "
        f"({config.storage_months:g} month) = {_usd(e.total_usd)}; per 1,000 video-hours {_usd(per_1000.total_usd)}",
        f"  not included: Dataflow Shuffle, egress; Cloud NAT, if the workers reach YouTube through one: "
        f"+{_usd(e.nat_usd)} ({cost_model.NAT_GB_USD:g} per GB downloaded)",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog=PROG, description="Estimate what a catalog costs on Dataflow: worker-hours, the "
                                                 "bucket's peak storage and dollars, from the durations its rows "
                                                 "declare and the measured CPU cost per video-hour.")
    options.add_options(parser, PlanConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    config = options.build(PlanConfig, build_parser().parse_args(argv))
    try:
        hours = catalog_hours(config.catalogs)
    except ValueError as exc:
        return fail(PROG, str(exc))
    print("\n".join(report(config, hours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
