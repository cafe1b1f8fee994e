"""A breaker for blocks: when a site keeps refusing this process, back off, then stop asking it.

One breaker per site and process (``pipeline.site.site_access``), so a site that blocks stops only its own items.
A blocked fleet gets bot checks, 429s and 403s; retrying each video on its own, as ``pipeline.download`` does for
one-off faults, multiplies the load exactly when the site asks for less. So each process keeps its last
``window`` answers and, while the blocked share is at least ``backoff_share``, pauses before every request
(base * 2**n s, or a longer ``Retry-After``, capped at ``max_backoff_s``); if the share is still at least
``open_share`` after ``open_after_backoffs`` pauses it opens: requests raise ``BreakerOpen`` without contacting the
site and the stages end that site's unfinished items as ``failed``/``deferred`` for a rerun. It stays open for the
process's life, so a blocked worker drains its queue fast instead of waiting out a block of unknown length.
State is per process and thread-safe; nothing is shared between processes.
"""

from __future__ import annotations

import collections
import dataclasses
import threading

from pipeline.cli import cli_types
from pipeline.cli.options import derived, option
from schemas import reasons

# Failure reasons that say "this client is being refused", not "this video is bad".
BLOCK_REASONS = frozenset({reasons.BOT_CHECK, reasons.HTTP_429, reasons.HTTP_403})


class BreakerOpen(Exception):  # noqa: N818 - a state, raised to stop a request before it is sent
    """The breaker is open: the request was not sent. ``str()`` says why (for the ``deferred`` detail);
    ``site`` names the site whose breaker it is ("" when unnamed)."""

    def __init__(self, message: str, site: str = "") -> None:
        super().__init__(message)
        self.site = site


@dataclasses.dataclass(frozen=True)
class BreakerConfig:
    """When to slow down and when to stop (see the module docstring)."""

    window: int = option(  # answers remembered
        "--breaker-window", type=cli_types.integer(2), default=20,
        help="answers each process remembers to judge how often it is blocked (default %(default)d)")
    open_share: float = option(  # blocked share that opens the breaker (after the back-offs below)
        "--breaker-open-share", type=cli_types.share, default=0.8,
        help="blocked share that, after back-offs, stops the process contacting that site (YouTube, or one "
             "host); the rest of that site's videos end 'deferred' (default %(default)g)")
    # blocked share from which every request waits first (0.4, or the open share when lower), and no
    # decision on fewer answers than half the window: both follow the two flags above
    backoff_share: float = derived(lambda f: min(0.4, f["--breaker-open-share"]), default=0.4)
    min_answers: int = derived(lambda f: max(1, f["--breaker-window"] // 2), default=10)
    open_after_backoffs: int = 3  # pauses tried before opening
    backoff_base_s: float = 1.0
    # --max-backoff-s, the shared network option of the enclosing SiteAccessConfig (pipeline.site.site_access)
    max_backoff_s: float = derived(lambda f: f["--max-backoff-s"], default=60.0)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"breaker window must be >= 1 answer, got {self.window}")
        if not 0 < self.open_share <= 1 or not 0 < self.backoff_share <= self.open_share:
            raise ValueError(f"need 0 < backoff share ({self.backoff_share}) <= open share ({self.open_share}) <= 1")
        if not 1 <= self.min_answers <= self.window:
            raise ValueError(f"min answers must be from 1 to the window ({self.window}), got {self.min_answers}")


class Breaker:
    """One process's view of how often one site (``site``, named in the open message) refused it lately."""

    def __init__(self, config: BreakerConfig, site: str = "") -> None:
        self.config = config
        self.site = site
        # (blocked, Retry-After asked for) of the last `window` answers
        self._answers: collections.deque[tuple[bool, float]] = collections.deque(maxlen=config.window)
        self._lock = threading.Lock()
        self._backoffs = 0  # pauses taken since the share last fell below backoff_share
        self._opened: str | None = None

    def record(self, blocked: bool, retry_after_s: float | None = None) -> None:
        """One answer from the site: blocked (bot check, 429, 403) or not."""
        with self._lock:
            self._answers.append((blocked, (retry_after_s or 0.0) if blocked else 0.0))
            if not self._hot(self.config.backoff_share):
                self._backoffs = 0
            elif self._backoffs >= self.config.open_after_backoffs and self._hot(self.config.open_share):
                where = f" for {self.site}" if self.site else ""
                self._opened = self._opened or f"breaker open{where}: {self._summary()}"

    def before_request(self) -> float:
        """Seconds to wait before the next request (0 when the site is answering); raises ``BreakerOpen``."""
        with self._lock:
            if self._opened:
                raise BreakerOpen(self._opened, self.site)
            if not self._hot(self.config.backoff_share):
                return 0.0
            retry_after_s = max(asked for _, asked in self._answers)  # the longest wish still remembered
            pause = max(self.config.backoff_base_s * 2 ** self._backoffs, retry_after_s)
            self._backoffs += 1
            return min(pause, self.config.max_backoff_s)

    @property
    def open_reason(self) -> str | None:
        return self._opened

    def blocked_share(self) -> float:
        with self._lock:
            return self._blocked() / len(self._answers) if self._answers else 0.0

    def _hot(self, share: float) -> bool:
        n = len(self._answers)
        return n >= self.config.min_answers and self._blocked() >= share * n

    def _blocked(self) -> int:
        return sum(blocked for blocked, _ in self._answers)

    def _summary(self) -> str:
        return f"{self._blocked()} of the last {len(self._answers)} requests blocked"
