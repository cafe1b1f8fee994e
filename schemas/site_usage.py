"""What one worker's requests to one site cost in a bundle: the download and search stages emit these, the
audit sums them per site into ``stats.json``'s ``sites`` block (``pipeline.audit.aggregates.SiteUsageFn``).

One record per site and bundle, never per item: a job's record count is bounded by bundles x sites.
"""

from __future__ import annotations

import dataclasses

from schemas.base import Record


@dataclasses.dataclass(frozen=True)
class SiteUsage(Record):
    """Requests one process sent to one site (a budget's name: ``youtube``, a host) and the time it waited."""

    KIND = "site_usage"

    site: str  # the budget's name (pipeline.site.request_budget.Budget.site)
    job_qps: float | None = None  # the site's job-wide budget; None: unthrottled
    requests: int = 0  # requests sent (search pages, metadata, transfers, retries)
    waited_s: float = 0.0  # seconds the requests waited for the site's budget
    paused_s: float = 0.0  # seconds attempts paused because the site was blocking (the breaker's back-off)
    deferred: int = 0  # items ended failed/deferred because the site's breaker was open

    def validate(self) -> None:
        if not self.site:
            self.fail("site", "must be a non-empty site name")
        for name in ("requests", "deferred"):
            if getattr(self, name) < 0:
                self.fail(name, "must be >= 0")
        for name in ("waited_s", "paused_s"):
            if getattr(self, name) < 0:
                self.fail(name, "must be >= 0 seconds")
        if self.job_qps is not None and self.job_qps <= 0:
            self.fail("job_qps", "must be > 0 requests per second, or None (unthrottled)")
