"""YouTube search through yt-dlp: one ``ytsearchN:<query>`` per query, flat (no per-video page fetch).

Queries are generated from the keyword lists (``"{game} {action}"`` by default), so the search asks for
exactly what the keyword rules will accept; the rules still run on every hit, since YouTube's ranking
returns plenty that does not match. Flat extraction returns title, channel, duration and view count from
the results page itself: one request per query instead of one per video. ``ytsearchdateN:`` sorts by upload
date (newest first), which finds different videos than relevance order on re-crawls.

A query that fails (network, bot check) becomes one ``search_error`` Outcome naming the query; a result
entry without an id becomes a ``search_error`` of its own. Queries draw from YouTube's request budget and
feed the process's YouTube breaker (``pipeline.site.site_access``); once that breaker is open, the remaining
queries end ``failed``/``deferred`` without being sent. ``sleep_s`` paces a worker's requests (before each
query, and between the result pages of one through yt-dlp's ``sleep_interval_requests``): the default run
sends hundreds of queries, and back-to-back ones invite YouTube's bot check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.keywords import KeywordRules
from pipeline.site.breaker import BreakerOpen
from pipeline.site.errors import classify, find_in_chain
from pipeline.site.site_access import SiteAccessConfig, site_access
from pipeline.sources.base import Source, search_failure
from schemas import CandidateVideo, Outcome, RecordError, reasons
from schemas.site_usage import SiteUsage

WATCH_URL = "https://www.youtube.com/watch?v={id}"
# Metadata worth keeping from a flat search entry, beyond the CandidateVideo fields.
_EXTRA_KEYS = ("channel_id", "channel_url", "uploader", "uploader_id", "view_count", "upload_date", "timestamp",
               "live_status", "availability", "ie_key")

SearchFn = Callable[[str], dict]


def generate_queries(rules: KeywordRules, template: str = "{game} {action}", limit: int | None = None) -> list[str]:
    """Search queries from the word lists, in list order, without repeats (``limit`` keeps the first N)."""
    queries = list(dict.fromkeys(template.format(game=g, action=a) for g in rules.games for a in rules.actions))
    return queries if limit is None else queries[:limit]


def search_url(query: str, per_query: int, date_sorted: bool = False) -> str:
    """yt-dlp's search pseudo-URL for ``query``."""
    return f"ytsearch{'date' if date_sorted else ''}{per_query}:{query}"


def ytdlp_search(url: str, params: dict[str, Any], site: SiteAccessConfig, proxy: str | None = None) -> dict:
    """Run a flat yt-dlp search (network), through the process's budget, breaker and credentials."""
    options = {"quiet": True, "no_warnings": True, "skip_download": True, "extract_flat": "in_playlist",
               "cachedir": False, **params}
    with site_access(site).youtube_dl(options) as ydl:
        ydl.proxy = proxy
        return ydl.extract_info(url, download=False) or {}


def entry_to_candidate(entry: dict, query: str, rank: int) -> CandidateVideo:
    """One flat search entry as a candidate (raises ``ValueError``/``RecordError`` for unusable entries)."""
    if not isinstance(entry, dict):
        raise ValueError(f"search entry is not an object: {entry!r}")
    video_id = entry.get("id")
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"search entry without an id: {entry.get('title')!r}")
    duration = entry.get("duration")
    extra = {k: entry[k] for k in _EXTRA_KEYS if entry.get(k) is not None}
    extra["search_rank"] = rank
    return CandidateVideo(
        video_id=video_id,
        source=YoutubeSource.name,
        url=entry.get("url") or entry.get("webpage_url") or WATCH_URL.format(id=video_id),
        title=entry.get("title") or "",
        description=entry.get("description") or "",
        channel=entry.get("channel") or entry.get("uploader") or "",
        duration_s=float(duration) if isinstance(duration, int | float) and duration >= 0 else None,
        query=query,
        extra=extra,
    )


class YoutubeSource(Source):
    """One read task per query. ``search`` is injectable (tests feed recorded results)."""

    name = "youtube"

    def __init__(self, queries: list[str], per_query: int = 20, date_sorted: bool = False,
                 ydl_params: dict[str, Any] | None = None, search: SearchFn | None = None,
                 sleep_s: float = 0.0, site: SiteAccessConfig | None = None) -> None:
        if per_query < 1:
            raise ValueError(f"per-query limit must be >= 1, got {per_query}")
        if sleep_s < 0:
            raise ValueError(f"sleep between searches must be >= 0 s, got {sleep_s}")
        self.queries = list(queries)
        self.per_query = per_query
        self.date_sorted = date_sorted
        self.sleep_s = sleep_s
        self.params = {**({"sleep_interval_requests": sleep_s} if sleep_s else {}), **dict(ydl_params or {})}
        self.site = site or SiteAccessConfig()
        self.search = search  # None: yt-dlp (tests inject recorded results)

    def setup(self) -> None:
        site_access(self.site)  # stages the cookies on this worker; a bad file fails the setup, loudly

    def tasks(self) -> list[str]:
        return list(self.queries)

    def site_usage(self) -> list[SiteUsage]:
        return site_access(self.site).drain_usage()

    def read(self, task: str) -> Iterator[CandidateVideo | Outcome]:
        url = search_url(task, self.per_query, self.date_sorted)
        access = site_access(self.site)
        youtube = access.youtube
        proxy = access.proxies.pick()
        try:
            access.before_attempt(youtube)
            if self.sleep_s:
                time.sleep(self.sleep_s)
            result = self.search(url) if self.search else ytdlp_search(url, self.params, self.site, proxy)
        except Exception as exc:  # noqa: BLE001 - a failed query is recorded, the others still run
            stopped = find_in_chain(exc, BreakerOpen)
            if stopped is not None:
                access.count(youtube, deferred=1)
                yield search_failure(f"youtube:{task}", reasons.DEFERRED,
                                     f"{url}: {stopped}; this worker stopped contacting YouTube: rerun into "
                                     "the same --output to retry")
                return
            failure = classify(exc)
            access.after_attempt(youtube, failure, proxy)
            yield search_failure(f"youtube:{task}", reasons.SEARCH_ERROR,
                                 f"{url}: {failure.reason}: {failure.detail}")
            return
        access.after_attempt(youtube, None, proxy)
        for rank, entry in enumerate((result or {}).get("entries") or [], start=1):
            try:
                yield entry_to_candidate(entry, task, rank)
            except (ValueError, RecordError) as exc:
                yield search_failure(f"youtube:{task}#{rank}", reasons.SEARCH_ERROR, f"{url} result {rank}: {exc}")
