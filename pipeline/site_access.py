"""Every request to the video site goes through here: the job's request budget, the breaker, credentials.

One ``SiteAccess`` per process and run (``site_access(config)``), shared by the search and download DoFns
and all their threads, holds

* the process's ``TokenBucket`` (its share of ``--youtube-qps``): ``GuardedYoutubeDL.urlopen``, the one
  method through which yt-dlp's extractors and downloaders send requests, takes a token before each;
* the ``Breaker``: stages call ``before_attempt`` before each video / query attempt (it pauses while the
  site is blocking, and raises ``BreakerOpen`` once it gave up) and ``after_attempt`` with the outcome;
  an open breaker also stops the requests of attempts already under way;
* the cookies, staged from ``--cookies`` (local or ``gs://``) into a private file on this worker, and the
  proxies (``--proxy`` and ``--proxies-file``) with a deterministic per-process rotation that benches a
  proxy after repeated failures.

``file://`` URLs (catalogs of local files, the demo corpus) are not the site: they draw no tokens.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from typing import Any

from yt_dlp import YoutubeDL
from yt_dlp.networking import Request

from pipeline import cli_types
from pipeline.breaker import BLOCK_REASONS, Breaker, BreakerConfig, BreakerOpen
from pipeline.credentials import CookieFacts, CredentialsError, check_cookies, read_proxies, stage_cookies
from pipeline.errors import Failure
from pipeline.options import nested, option
from pipeline.request_budget import DEFAULT_JOB_QPS, TokenBucket, job_processes, per_process_qps
from schemas import reasons

__all__ = ["CredentialsError", "GuardedYoutubeDL", "ProxyPool", "SiteAccess", "SiteAccessConfig", "site_access",
           "site_for_job"]
log = logging.getLogger(__name__)

# Failures that count against the proxy an attempt went through.
PROXY_FAILURES = BLOCK_REASONS | {reasons.CONNECTION_ERROR, reasons.TIMEOUT}


@dataclasses.dataclass(frozen=True)
class SiteAccessConfig:
    """How hard the whole job may hit the site, as whom, and how long it waits: the network options the search
    and download stages share (``run`` hands both the same one). Holds paths, never file contents."""

    job_qps: float = option(  # requests per second for the whole job
        "--youtube-qps", type=cli_types.positive("requests per second"), default=DEFAULT_JOB_QPS,
        help="requests per second for the whole job, split over its worker processes; searches, metadata and "
             "downloads all count (default %(default)g)")
    processes: int = 1  # processes sharing the budget; run.py sets it from the runner options
    cookies: str | None = option(  # Netscape cookies.txt, local or gs://: read on each worker
        "--cookies", default=None, help="Netscape cookies.txt, local or gs:// (read on each worker; never logged)")
    proxy: str | None = option("--proxy", default=None, help="proxy URL, e.g. socks5://127.0.0.1:1080")
    proxies_file: str | None = option(  # proxy URLs, one per line, local or gs://
        "--proxies-file", default=None,
        help="proxy URLs, one per line, local or gs://; each worker process rotates through them")
    proxy_bench_after: int = 3  # consecutive failures that bench a proxy
    proxy_bench_s: float = 300.0  # how long a benched proxy rests
    breaker: BreakerConfig = nested(BreakerConfig)
    socket_timeout_s: float = option(
        "--socket-timeout", type=float, default=30.0,
        help="seconds without data before a request fails (default %(default)g)")
    backoff_base_s: float = 1.0  # first pause before a repeated download attempt; doubles each time
    max_backoff_s: float = option(  # longest pause; also the breaker's (BreakerConfig.max_backoff_s)
        "--max-backoff-s", type=float, default=60.0,
        help="longest pause between attempts; a Retry-After asking for more fails the video (default %(default)g)")
    # Identifies one run's per-process state (bucket, breaker): two runs in one process (tests, notebooks)
    # must not share a breaker. Copies of the config on the workers keep the value.
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        per_process_qps(self.job_qps, self.processes)  # validates
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes}")
        if self.socket_timeout_s <= 0:
            raise ValueError(f"socket timeout must be > 0 s, got {self.socket_timeout_s}")
        if self.backoff_base_s < 0 or self.max_backoff_s < 0:
            raise ValueError("back-off times must be >= 0")

    @property
    def qps_per_process(self) -> float:
        return per_process_qps(self.job_qps, self.processes)

    def proxies(self) -> list[str]:
        """The proxy pool (reads ``proxies_file``): ``[]`` means direct connections."""
        return ([self.proxy] if self.proxy else []) + (read_proxies(self.proxies_file) if self.proxies_file else [])


def site_for_job(config: SiteAccessConfig, beam_args: list[str], local_workers: int | None,
                 in_process: bool) -> SiteAccessConfig:
    """``config`` for a job launched with these options: the budget divided by its process count, the
    credentials files checked (raises ``CredentialsError``)."""
    check_credentials(config)
    return dataclasses.replace(config, processes=job_processes(beam_args, local_workers, in_process,
                                                               os.cpu_count() or 2))


def check_credentials(config: SiteAccessConfig) -> None:
    """At launch: the cookies and proxies files are readable and well-formed (raises ``CredentialsError``).

    The workers read them again themselves (the launcher's disk is not theirs); this only refuses a run
    that would start all its workers to find the same broken file.
    """
    if config.cookies:
        check_cookies(config.cookies)
    config.proxies()


class ProxyPool:
    """Proxies in a fixed rotation starting at a per-process offset; a failing proxy rests a while."""

    def __init__(self, proxies: list[str], seed: str, bench_after: int = 3, bench_s: float = 300.0,
                 clock=time.monotonic) -> None:
        self.proxies = list(proxies)
        self._next = zlib.crc32(seed.encode()) % len(self.proxies) if self.proxies else 0
        self._failures = dict.fromkeys(self.proxies, 0)
        self._benched_until = dict.fromkeys(self.proxies, 0.0)
        self.bench_after, self.bench_s, self._clock = bench_after, bench_s, clock
        self._lock = threading.Lock()

    def pick(self) -> str | None:
        """The next proxy not resting (the one that rests least long when all do); None without proxies."""
        with self._lock:
            if not self.proxies:
                return None
            now = self._clock()
            n = len(self.proxies)
            order = [self.proxies[(self._next + i) % n] for i in range(n)]
            chosen = next((p for p in order if self._benched_until[p] <= now),
                          min(order, key=lambda p: self._benched_until[p]))
            self._next = (self.proxies.index(chosen) + 1) % n
            return chosen

    def record(self, proxy: str | None, ok: bool) -> None:
        if proxy is None or proxy not in self._failures:
            return
        with self._lock:
            self._failures[proxy] = 0 if ok else self._failures[proxy] + 1
            if self._failures[proxy] >= self.bench_after:
                self._benched_until[proxy] = self._clock() + self.bench_s
                self._failures[proxy] = 0
                log.warning("proxy #%d benched for %.0f s after %d failures", self.proxies.index(proxy),
                            self.bench_s, self.bench_after)  # the index only: proxy URLs may hold passwords

    def benched(self) -> list[str]:
        now = self._clock()
        return [p for p in self.proxies if self._benched_until[p] > now]


class SiteAccess:
    """One process's budget, breaker and credentials for one run (see the module docstring)."""

    def __init__(self, config: SiteAccessConfig) -> None:
        self.config = config
        rate = config.qps_per_process
        self.bucket = TokenBucket(rate, burst=max(1.0, rate))  # one second's worth may go at once
        self.breaker = Breaker(config.breaker)
        self.cookiefile: str | None = None
        self.cookie_facts: CookieFacts | None = None
        if config.cookies:
            self.cookiefile, self.cookie_facts = stage_cookies(config.cookies)
        self.proxies = ProxyPool(config.proxies(), f"{socket.gethostname()}:{os.getpid()}",
                                 config.proxy_bench_after, config.proxy_bench_s)

    def ydl_params(self) -> dict[str, Any]:
        return {"cookiefile": self.cookiefile} if self.cookiefile else {}

    def youtube_dl(self, params: dict[str, Any]) -> GuardedYoutubeDL:
        return GuardedYoutubeDL(self, {**params, **self.ydl_params()})

    def before_attempt(self) -> None:
        """Pause while the site is blocking this process; raises ``BreakerOpen`` once it gave up."""
        pause = self.breaker.before_request()
        if pause > 0:
            log.info("site blocking %.0f%% of recent attempts: pausing %.1f s", 100 * self.breaker.blocked_share(),
                     pause)
            time.sleep(pause)

    def after_attempt(self, failure: Failure | None, proxy: str | None) -> None:
        """Feed the breaker and the proxy pool with how an attempt ended (None: the site answered)."""
        blocked = failure is not None and failure.reason in BLOCK_REASONS
        self.breaker.record(blocked, failure.retry_after_s if failure is not None else None)
        self.proxies.record(proxy, failure is None or failure.reason not in PROXY_FAILURES)


def is_site_url(url: str) -> bool:
    """Requests to this URL count against the budget and the breaker (local files do not)."""
    return not str(url).lower().startswith("file:")


_PROCESS_STATE: dict[SiteAccessConfig, SiteAccess] = {}
_PROCESS_LOCK = threading.Lock()


def site_access(config: SiteAccessConfig) -> SiteAccess:
    """This process's ``SiteAccess`` for ``config`` (created, and the cookies staged, on first use)."""
    with _PROCESS_LOCK:
        if config not in _PROCESS_STATE:
            _PROCESS_STATE[config] = SiteAccess(config)
        return _PROCESS_STATE[config]


class GuardedYoutubeDL(YoutubeDL):
    """yt-dlp whose every request to the site draws from the budget, goes through ``proxy`` (set per attempt)
    and is refused while the breaker is open."""

    def __init__(self, site: SiteAccess, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.site = site
        self.proxy: str | None = None

    def urlopen(self, req):
        if isinstance(req, str):
            req = Request(req)
        if is_site_url(getattr(req, "url", "")):
            if self.site.breaker.open_reason:
                raise BreakerOpen(self.site.breaker.open_reason)
            self.site.bucket.acquire()
            if self.proxy and isinstance(req, Request) and not req.proxies:
                req.proxies = {"all": self.proxy}
        return super().urlopen(req)
