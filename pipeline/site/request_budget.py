"""Request budgets for the whole job, one per site: each split evenly over the job's worker processes.

Per-process pauses make a job's request rate grow with its worker count, so a budget is set for the job and
divided by the processes that will run (``job_processes``); each process holds one ``TokenBucket`` per site that
every request to it draws from (``pipeline.site.site_access``). The division is static, so processes need not
talk: exact when all are busy, conservative when some idle. A URL's host picks the budget
(``SiteRules.budget_for``), first match wins: YouTube's hosts (``YOUTUBE_HOSTS``) share ``--youtube-qps`` and no
user rule can capture them; ``--unthrottled-host`` / ``--site-qps HOST=N`` cover the host and its subdomains
(longest name wins); object stores have no budget; any other host gets ``--default-site-qps``. Non-network URLs
(``file:``, ``gs://``, local paths) draw nothing. Budgets are per host, not per port.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULT_JOB_QPS = 4.0  # YouTube's requests per second for the whole job (it starts refusing one IP well above 1/s)
# Any other host's requests per second for the whole job: 25 direct-link videos a second (2 requests each). A web
# server or CDN answers that many requests without notice (the bytes, bounded by the worker count, are what
# load it); the cap keeps a job of hundreds of processes from sending hundreds a second to a host nobody named.
DEFAULT_SITE_QPS = 50.0

YOUTUBE = "youtube"  # the site name of YouTube's hosts in budgets, breakers and stats.json
# YouTube's pages, API, player, streams and images: one site, one budget, one breaker.
YOUTUBE_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com", "googlevideo.com", "ytimg.com", "ggpht.com",
                 "youtubei.googleapis.com", "youtube.googleapis.com")
# Object stores answer a bucket's reader at thousands of requests a second: no budget.
OBJECT_STORE_HOSTS = ("storage.googleapis.com", "storage.cloud.google.com", "blob.core.windows.net",
                      "r2.cloudflarestorage.com")
_S3_HOST = re.compile(r"(?:^|\.)s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com$")
_NETWORK_SCHEMES = ("http", "https", "ftp", "ftps")  # other schemes (file, gs, s3, data...) are no site requests
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The budget a request draws from: ``site`` names it (stats.json, logs), ``job_qps`` None: unthrottled."""

    site: str
    job_qps: float | None


def host_of(url: str) -> str | None:
    """The lower-case host of a network URL; None for ``file:``, ``gs://``, local paths and the like."""
    try:
        parts = urlsplit(str(url).strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in _NETWORK_SCHEMES or not host:
        return None
    return host.rstrip(".").lower()


def _within(host: str, name: str) -> bool:
    return host == name or host.endswith("." + name)


def is_youtube_host(host: str) -> bool:
    return any(_within(host, name) for name in YOUTUBE_HOSTS)


def is_object_store_host(host: str) -> bool:
    return bool(_S3_HOST.search(host)) or any(_within(host, name) for name in OBJECT_STORE_HOSTS)


def host_name(text: str) -> str:
    """argparse type: a host name or IP address (``videos.example.com``, ``127.0.0.1``), lower-cased."""
    host = text.strip().rstrip(".").lower()
    if "://" in host or "/" in host:
        raise argparse.ArgumentTypeError(f"a host name, not a URL: {text!r} (e.g. videos.example.com)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if ":" in host:
        raise argparse.ArgumentTypeError(f"a host without a port: {text!r} (budgets are per host, all ports)")
    if not host or len(host) > 253 or not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise argparse.ArgumentTypeError(f"not a host name: {text!r} (e.g. videos.example.com)")
    if is_youtube_host(host):
        raise argparse.ArgumentTypeError(f"{host} is YouTube's: its budget is --youtube-qps")
    return host


def host_qps(text: str) -> tuple[str, float]:
    """argparse type: ``HOST=N``, a host and its requests per second for the whole job."""
    host, sep, rate = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST=N (requests per second), got {text!r}")
    try:
        qps = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of requests per second: {rate!r} in {text!r}") from None
    if not qps > 0 or qps == float("inf"):
        raise argparse.ArgumentTypeError(f"requests per second must be a finite number > 0, got {rate!r}")
    return host_name(host), qps


@dataclasses.dataclass(frozen=True)
class SiteRules:
    """Which budget each host draws from (see the module docstring); job-wide rates."""

    youtube_qps: float = DEFAULT_JOB_QPS
    default_qps: float = DEFAULT_SITE_QPS
    site_qps: tuple[tuple[str, float], ...] = ()  # (host, qps): the host and its subdomains
    unthrottled: tuple[str, ...] = ()  # hosts (and subdomains) with no budget

    def __post_init__(self) -> None:
        named = [host for host, _ in self.site_qps] + list(self.unthrottled)
        twice = sorted({host for host in named if named.count(host) > 1})
        if twice:
            raise ValueError(f"host named more than once in --site-qps/--unthrottled-host: {', '.join(twice)}")
        for host, qps in self.site_qps:
            if qps <= 0:
                raise ValueError(f"--site-qps {host}: requests per second must be > 0, got {qps}")
        for what, qps in (("--youtube-qps", self.youtube_qps), ("--default-site-qps", self.default_qps)):
            if qps <= 0:
                raise ValueError(f"{what} must be > 0, got {qps}")

    def budget_for(self, url: str) -> Budget | None:
        """The budget a request to ``url`` draws from; None when it is no network request (``file:``, ``gs://``)."""
        host = host_of(url)
        if host is None:
            return None
        if is_youtube_host(host):  # before the named hosts: naming googleapis.com does not free YouTube's API
            return Budget(YOUTUBE, self.youtube_qps)
        named = [(name, qps) for name, qps in self.site_qps if _within(host, name)]
        named += [(name, None) for name in self.unthrottled if _within(host, name)]
        if named:
            name, qps = max(named, key=lambda nq: len(nq[0]))
            return Budget(name, qps)
        if is_object_store_host(host):
            return Budget(host, None)
        return Budget(host, self.default_qps)


class TokenBucket:
    """Thread-safe token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up (starts full)."""

    def __init__(self, rate_per_s: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"request rate must be > 0 per second, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1 request, got {burst}")
        self.rate_per_s, self.burst = rate_per_s, float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._stamp = self.burst, clock()
        self.acquired = 0  # tokens taken so far
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited."""
        with self._lock:  # reserve under the lock, sleep outside it: waiters queue up in order of arrival
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
            self._tokens -= 1.0
            self.acquired += 1
            wait = -self._tokens / self.rate_per_s if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def per_process_qps(job_qps: float, processes: int) -> float:
    """Each process's share of a job-wide budget."""
    if job_qps <= 0:
        raise ValueError(f"a request budget must be > 0 per second, got {job_qps}")
    return job_qps / max(1, processes)


_MACHINE_CPUS = re.compile(r"(?:^|-)custom-(\d+)-|-(\d+)$")
_DATAFLOW_DEFAULT_MACHINE = "n1-standard-1"


def machine_vcpus(machine_type: str) -> int:
    """vCPUs of a Compute Engine machine type (``n1-standard-8`` -> 8, ``e2-custom-6-8192`` -> 6); 1 if unknown."""
    match = _MACHINE_CPUS.search(machine_type.rsplit("/", 1)[-1])
    return int(next(g for g in match.groups() if g)) if match else 1


def job_processes(beam_args: list[str], local_workers: int | None, in_process: bool, cpu_count: int) -> int:
    """How many processes send requests: the local SDK workers, or Dataflow's workers x SDK processes each.

    Dataflow's Python workers run one SDK process per vCPU unless ``no_use_multiple_sdk_containers`` is
    among the experiments; the worker count is ``--max_num_workers`` (autoscaling's ceiling: the budget must
    hold at the peak), else ``--num_workers``, else 1.
    """
    from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, WorkerOptions

    if in_process:
        return 1
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return local_workers or cpu_count
    options = PipelineOptions(beam_args)
    worker = options.view_as(WorkerOptions)
    workers = worker.max_num_workers or worker.num_workers or 1
    experiments = options.view_as(DebugOptions).experiments or []
    per_worker = 1 if "no_use_multiple_sdk_containers" in experiments else \
        machine_vcpus(worker.machine_type or _DATAFLOW_DEFAULT_MACHINE)
    return workers * per_worker
