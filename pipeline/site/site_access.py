"""Every request to a video site goes through here: the job's request budgets, the breakers, credentials.

One ``SiteAccess`` per process and run (``site_access(config)``), shared by the search and download DoFns and
their threads, holds one ``Site`` per budget (``request_budget.SiteRules``) with its ``TokenBucket`` and
``Breaker``; ``GuardedYoutubeDL.urlopen``, the one method through which yt-dlp sends requests, takes a token from
the request's site first. Stages call ``Site.before_attempt`` / ``SiteAccess.after_attempt`` around each attempt;
an open breaker also stops attempts already under way, for its site only. It also counts what each site cost
(drained per bundle as ``SiteUsage`` for ``stats.json``), stages ``--cookies`` into a private file, and rotates
``--proxy`` / ``--proxies-file`` deterministically, benching a proxy after repeated failures.
``file://`` URLs are no site; unthrottled hosts draw no tokens and have no breaker, but are counted.
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
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from yt_dlp import YoutubeDL
from yt_dlp.networking import Request

from pipeline.cli import cli_types
from pipeline.cli.options import nested, option
from pipeline.site.breaker import BLOCK_REASONS, Breaker, BreakerConfig, BreakerOpen
from pipeline.site.credentials import (
    CookieFacts,
    CredentialsError,
    check_cookies,
    read_proxies,
    stage_cookies,
)
from pipeline.site.errors import Failure
from pipeline.site.request_budget import (
    DEFAULT_JOB_QPS,
    DEFAULT_SITE_QPS,
    Budget,
    SiteRules,
    TokenBucket,
    host_name,
    host_qps,
    job_processes,
    per_process_qps,
)
from schemas import reasons
from schemas.site_usage import SiteUsage

__all__ = ["CredentialsError", "GuardedYoutubeDL", "ProxyPool", "Site", "SiteAccess", "SiteAccessConfig",
           "site_access", "site_for_job"]
log = logging.getLogger(__name__)

SITE_USAGE = "site_usage"  # the search's and download's tagged output of SiteUsage records, for the audit
# Failures that count against the proxy an attempt went through.
PROXY_FAILURES = BLOCK_REASONS | {reasons.CONNECTION_ERROR, reasons.TIMEOUT}


@dataclasses.dataclass(frozen=True)
class SiteAccessConfig:
    """How hard the whole job may hit each site, as whom, and how long it waits: the network options the search
    and download stages share (``run`` hands both the same one). Holds paths, never file contents."""

    job_qps: float = option(  # YouTube's requests per second for the whole job
        "--youtube-qps", type=cli_types.positive("requests per second"), default=DEFAULT_JOB_QPS,
        help="requests per second to YouTube's hosts for the whole job, split over its worker processes; "
             "searches, metadata and downloads all count (default %(default)g)")
    site_qps: tuple[tuple[str, float], ...] = option(  # (host, job-wide qps): the host and its subdomains
        "--site-qps", type=host_qps, action="append", default=(), flag_default=None, metavar="HOST=N",
        to_field=lambda pairs, _: tuple(pairs or ()),
        help="requests per second to HOST and its subdomains for the whole job, split over its worker "
             "processes; repeatable")
    unthrottled_hosts: tuple[str, ...] = option(  # hosts (and subdomains) with no budget and no breaker
        "--unthrottled-host", type=host_name, action="append", default=(), flag_default=None, metavar="HOST",
        to_field=lambda hosts, _: tuple(hosts or ()),
        help="a host of your own (and its subdomains): no request budget, no breaker; repeatable. Object "
             "stores (gs://, s3://, storage.googleapis.com, S3 and Azure blob hosts) and file: never have one")
    default_site_qps: float = option(  # any other host's job-wide qps, each host its own budget
        "--default-site-qps", type=cli_types.positive("requests per second"), default=DEFAULT_SITE_QPS,
        metavar="N",
        help="requests per second for the whole job to each host that is neither YouTube's, an object store, "
             "nor named by --site-qps or --unthrottled-host; every such host has its own budget (default "
             "%(default)g)")
    processes: int = 1  # processes sharing each budget; run.py sets it from the runner options
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
        self.rules()  # validates the budgets (a host named twice, rates <= 0)
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes}")
        if self.socket_timeout_s <= 0:
            raise ValueError(f"socket timeout must be > 0 s, got {self.socket_timeout_s}")
        if self.backoff_base_s < 0 or self.max_backoff_s < 0:
            raise ValueError("back-off times must be >= 0")

    def rules(self) -> SiteRules:
        """Which budget each host draws from (``pipeline.site.request_budget``)."""
        return SiteRules(youtube_qps=self.job_qps, default_qps=self.default_site_qps, site_qps=self.site_qps,
                         unthrottled=self.unthrottled_hosts)

    @property
    def qps_per_process(self) -> float:
        """YouTube's per-process share."""
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


class Site:
    """One site's budget and breaker in one process: ``bucket`` and ``breaker`` are None when it is unthrottled."""

    def __init__(self, budget: Budget, processes: int, breaker: BreakerConfig,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.job_qps = budget.site, budget.job_qps
        self.bucket: TokenBucket | None = None
        self.breaker: Breaker | None = None
        if budget.job_qps is not None:
            rate = per_process_qps(budget.job_qps, processes)
            # one second's worth may go at once
            self.bucket = TokenBucket(rate, burst=max(1.0, rate), clock=clock, sleep=sleep)
            self.breaker = Breaker(breaker, budget.site)

    @property
    def open_reason(self) -> str | None:
        return self.breaker.open_reason if self.breaker else None

    def acquire(self) -> float:
        """Before one request: refused (``BreakerOpen``) once the breaker opened, else a token; seconds waited."""
        if self.breaker is None:
            return 0.0
        if self.breaker.open_reason:
            raise BreakerOpen(self.breaker.open_reason, self.name)
        return self.bucket.acquire()

    def before_attempt(self) -> float:
        """Pause while the site is blocking this process; raises ``BreakerOpen`` once it gave up. Seconds paused."""
        pause = self.breaker.before_request() if self.breaker else 0.0
        if pause > 0:
            log.info("%s blocking %.0f%% of recent attempts: pausing %.1f s", self.name,
                     100 * self.breaker.blocked_share(), pause)
            time.sleep(pause)
        return pause


class SiteAccess:
    """One process's budgets, breakers and credentials for one run (see the module docstring)."""

    def __init__(self, config: SiteAccessConfig, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``clock``/``sleep``: the budgets' time (tests count tokens on a fake clock)."""
        self.config = config
        self.site_rules = config.rules()
        self._clock, self._sleep = clock, sleep
        self._sites: dict[str, Site] = {}
        self._usage: dict[str, list[float]] = {}  # site -> [requests, waited_s, paused_s, deferred] since drained
        self._lock = threading.Lock()
        self.cookiefile: str | None = None
        self.cookie_facts: CookieFacts | None = None
        if config.cookies:
            self.cookiefile, self.cookie_facts = stage_cookies(config.cookies)
        self.proxies = ProxyPool(config.proxies(), f"{socket.gethostname()}:{os.getpid()}",
                                 config.proxy_bench_after, config.proxy_bench_s)

    def site_for(self, url: str) -> Site | None:
        """The site a request to ``url`` goes to (created on first use); None for ``file:``, ``gs://``, paths."""
        budget = self.site_rules.budget_for(url)
        if budget is None:
            return None
        with self._lock:
            site = self._sites.get(budget.site)
            if site is None:
                site = self._sites[budget.site] = Site(budget, self.config.processes, self.config.breaker,
                                                       self._clock, self._sleep)
            return site

    @property
    def youtube(self) -> Site:
        """YouTube's site (the search's queries are attempts on it)."""
        return self.site_for("https://www.youtube.com/")

    def ydl_params(self) -> dict[str, Any]:
        return {"cookiefile": self.cookiefile} if self.cookiefile else {}

    def youtube_dl(self, params: dict[str, Any]) -> GuardedYoutubeDL:
        return GuardedYoutubeDL(self, {**params, **self.ydl_params()})

    def before_attempt(self, site: Site) -> None:
        """``site.before_attempt``, its pause counted for the site."""
        paused = site.before_attempt()
        if paused:
            self.count(site, paused_s=paused)

    def after_attempt(self, site: Site, failure: Failure | None, proxy: str | None) -> None:
        """Feed the site's breaker and the proxy pool with how an attempt ended (None: the site answered)."""
        blocked = failure is not None and failure.reason in BLOCK_REASONS
        if site.breaker is not None:
            site.breaker.record(blocked, failure.retry_after_s if failure is not None else None)
        self.proxies.record(proxy, failure is None or failure.reason not in PROXY_FAILURES)

    def count(self, site: Site | str, requests: int = 0, waited_s: float = 0.0, paused_s: float = 0.0,
              deferred: int = 0) -> None:
        """Add to what ``site`` (a ``Site`` or a site's name) cost this process since the last drain."""
        name = site if isinstance(site, str) else site.name
        with self._lock:
            usage = self._usage.setdefault(name, [0, 0.0, 0.0, 0])
            usage[0] += requests
            usage[1] += waited_s
            usage[2] += paused_s
            usage[3] += deferred

    def drain_usage(self) -> list[SiteUsage]:
        """What each site cost this process since the last drain, one record per site (and reset)."""
        with self._lock:
            usage, self._usage = self._usage, {}
            qps = {name: site.job_qps for name, site in self._sites.items()}
        return [SiteUsage(site=name, job_qps=qps.get(name), requests=int(n), waited_s=waited, paused_s=paused,
                          deferred=int(deferred))
                for name, (n, waited, paused, deferred) in sorted(usage.items())]


def usage_outputs(site: SiteAccess):
    """A DoFn's ``finish_bundle`` outputs: what each site cost this process since the last drain, as
    ``SiteUsage`` records tagged ``SITE_USAGE`` (one per site: bounded, whatever the bundle held)."""
    for usage in site.drain_usage():
        yield beam.pvalue.TaggedOutput(SITE_USAGE, GlobalWindows.windowed_value(usage))


_PROCESS_STATE: dict[SiteAccessConfig, SiteAccess] = {}
_PROCESS_LOCK = threading.Lock()


def site_access(config: SiteAccessConfig) -> SiteAccess:
    """This process's ``SiteAccess`` for ``config`` (created, and the cookies staged, on first use)."""
    with _PROCESS_LOCK:
        if config not in _PROCESS_STATE:
            _PROCESS_STATE[config] = SiteAccess(config)
        return _PROCESS_STATE[config]


class GuardedYoutubeDL(YoutubeDL):
    """yt-dlp whose every request to a site draws from that site's budget, goes through ``proxy`` (set per
    attempt) and is refused while that site's breaker is open; requests are counted per site."""

    def __init__(self, site: SiteAccess, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.site = site
        self.proxy: str | None = None

    def urlopen(self, req):
        if isinstance(req, str):
            req = Request(req)
        site = self.site.site_for(getattr(req, "url", ""))
        if site is not None:
            waited = site.acquire()
            self.site.count(site, requests=1, waited_s=waited)
            if self.proxy and isinstance(req, Request) and not req.proxies:
                req.proxies = {"all": self.proxy}
        return super().urlopen(req)
