"""One request budget for the whole job: ``--youtube-qps`` split evenly over the job's worker processes.

Pauses that each process takes on its own (``--sleep-interval``, ``--youtube-sleep-s``) make the job's
request rate grow with the worker count: 50 Dataflow workers with 4 SDK processes each send 200 times the
rate one laptop did. The budget is set for the job instead and divided by the number of processes that
will run (``job_processes``, from the runner options); each process holds one ``TokenBucket`` that every
request to the site draws from (searches, metadata extraction and transfers alike, see
``pipeline.site_access``). Processes need not talk to each other, so nothing here is a shared service:
the division is static, which is exact when all processes are busy and conservative when some idle.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

DEFAULT_JOB_QPS = 4.0  # requests per second for the whole job (YouTube starts refusing one IP well above 1/s)


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
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited."""
        with self._lock:  # reserve under the lock, sleep outside it: waiters queue up in order of arrival
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate_per_s if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def per_process_qps(job_qps: float, processes: int) -> float:
    """Each process's share of the job's budget."""
    if job_qps <= 0:
        raise ValueError(f"--youtube-qps must be > 0, got {job_qps}")
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
