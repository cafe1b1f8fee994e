"""What a catalog costs on Dataflow: worker-hours, peak storage and dollars, from the hours of video it declares.

``python -m pipeline plan`` prints the estimate; every price is a flag. The constants and where each comes from
are in docs/measurements/2026-12-06-dataflow-cost-model.md. Per hour of source video: CPU is
``CPU_S_PER_VIDEO_HOUR`` x ``JOB_OVERHEAD`` / ``CPU_UTILISATION`` in vCPU-hours, then worker-hours at the machine
type's vCPUs (one SDK process per worker, as ``request_budget.job_processes`` counts it); peak bucket storage is the
sources (unless ``--delete-videos``), the clip store and the shards (every clip kept: an upper bound), at
``CLIP_BYTES`` x ``CLIPS_PER_VIDEO_HOUR``; dollars are vCPU-hours, memory and disk for the worker-hours plus the
bucket's peak for the months kept. Not modelled: Dataflow Shuffle, Cloud NAT (``NAT_GB_USD``), network egress.
"""

from __future__ import annotations

import dataclasses
import math

from pipeline.site.request_budget import machine_vcpus
from schemas.clip_format import CLIP_SECONDS

RECORD = "docs/measurements/2026-12-06-dataflow-cost-model.md"  # where every constant below comes from

# CPU-seconds per hour of source video, `segment (isolated)` of benchmarks/segment_bench.py (2 x 64 s H.264
# sources at 30 fps, median of 3, 2-core shared machine, 2026-12-06; its noisy test sources have several times
# YouTube's bitrate, so decoding them costs more: an upper bound).
CPU_S_PER_VIDEO_HOUR = {360: 231.0, 720: 824.0}
JOB_OVERHEAD = 1.35  # the whole local pipeline over segmentation alone, at 360p (an upper bound: fixed costs)
CPU_UTILISATION = 0.8  # share of a worker's vCPUs busy (assumed: downloads wait on the network and budgets)

SOURCE_GB_PER_VIDEO_HOUR = {360: 0.15, 720: 0.5}  # YouTube's smallest H.264 stream (assumed, ~25 MB per 10 min)
CLIP_BYTES = 140_000  # one 16 s 160x90 clip at 10 FPS, x264 CRF 20 (docs/pipeline.md, "Clip storage")
CLIPS_PER_VIDEO_HOUR = 3600 / CLIP_SECONDS

# Compute Engine machine types the recipe uses: memory in GB (vCPUs come from the name).
MACHINE_MEMORY_GB = {"n2-standard-4": 16, "n2-standard-8": 32, "n2-standard-16": 64, "n2-highcpu-4": 4,
                     "n2-highcpu-8": 8, "n2-highcpu-16": 16, "n2-highcpu-32": 32, "n1-standard-4": 15,
                     "n1-standard-8": 30, "e2-standard-4": 16, "e2-standard-8": 32, "c3-highcpu-8": 16}
DISK_GB_PER_VCPU = 12.5  # ~10 GB per harness thread (the video being cut, its pack, staging), rounded up

PRICES_DATE = "2026-12-06"  # list prices assumed (Dataflow batch and Cloud Storage, us-central1, USD)
VCPU_HOUR_USD = 0.056
MEMORY_GB_HOUR_USD = 0.003557
PD_GB_MONTH_USD = 0.04  # standard persistent disk (Dataflow bills it per GB-hour: / 730)
GCS_GB_MONTH_USD = 0.020  # Standard storage
NAT_GB_USD = 0.045  # Cloud NAT data processing, per GB (not in the total)
HOURS_PER_MONTH = 730.0


@dataclasses.dataclass(frozen=True)
class Prices:
    vcpu_hour: float = VCPU_HOUR_USD
    memory_gb_hour: float = MEMORY_GB_HOUR_USD
    pd_gb_month: float = PD_GB_MONTH_USD
    gcs_gb_month: float = GCS_GB_MONTH_USD


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What ``video_hours`` of sources cost on ``machine_type`` workers."""

    video_hours: float
    source_height: int
    machine_type: str
    vcpus: int
    memory_gb: float
    disk_gb: int
    vcpu_hours: float
    worker_hours: float
    source_gb: float  # in the bucket at the peak (0 with --delete-videos)
    clip_gb: float  # the clip store's, and again the shards'
    vcpu_usd: float
    memory_usd: float
    disk_usd: float
    storage_usd: float  # the bucket's peak, for the months kept
    nat_usd: float  # if downloads go through Cloud NAT (not in total_usd)

    @property
    def peak_storage_gb(self) -> float:
        return self.source_gb + 2 * self.clip_gb

    @property
    def total_usd(self) -> float:
        return self.vcpu_usd + self.memory_usd + self.disk_usd + self.storage_usd


def default_disk_gb(machine_type: str) -> int:
    return int(math.ceil(machine_vcpus(machine_type) * DISK_GB_PER_VCPU / 10) * 10)


def estimate(video_hours: float, machine_type: str = "n2-highcpu-8", source_height: int = 360,
             disk_gb: int | None = None, delete_videos: bool = False, storage_months: float = 1.0,
             prices: Prices = Prices(), utilisation: float = CPU_UTILISATION) -> Estimate:
    """The cost of segmenting ``video_hours`` of ``source_height``p sources (raises KeyError for a machine type
    or height the model does not know)."""
    vcpus, memory_gb = machine_vcpus(machine_type), MACHINE_MEMORY_GB[machine_type]
    disk_gb = disk_gb if disk_gb is not None else default_disk_gb(machine_type)
    vcpu_hours = video_hours * CPU_S_PER_VIDEO_HOUR[source_height] * JOB_OVERHEAD / 3600 / utilisation
    worker_hours = vcpu_hours / vcpus
    downloaded_gb = video_hours * SOURCE_GB_PER_VIDEO_HOUR[source_height]
    source_gb = 0.0 if delete_videos else downloaded_gb
    clip_gb = video_hours * CLIPS_PER_VIDEO_HOUR * CLIP_BYTES / 1e9
    return Estimate(
        video_hours=video_hours, source_height=source_height, machine_type=machine_type, vcpus=vcpus,
        memory_gb=memory_gb, disk_gb=disk_gb, vcpu_hours=vcpu_hours, worker_hours=worker_hours,
        source_gb=source_gb, clip_gb=clip_gb, vcpu_usd=vcpu_hours * prices.vcpu_hour,
        memory_usd=worker_hours * memory_gb * prices.memory_gb_hour,
        disk_usd=worker_hours * disk_gb * prices.pd_gb_month / HOURS_PER_MONTH,
        storage_usd=(source_gb + 2 * clip_gb) * prices.gcs_gb_month * storage_months,
        nat_usd=downloaded_gb * NAT_GB_USD)
