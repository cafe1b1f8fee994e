"""Stage 2: download each candidate video with yt-dlp (used as a library), store it, and probe it.

One element is one video. A completion marker (``<download_dir>/<key>.json``, written last) or a recorded final
failure (``<key>.failed``, ``errors.FINAL_REASONS``; ``--retry-failed`` asks again) lets a rerun retry exactly the
unfinished videos. Otherwise: extract metadata, pick one stream (``choose_format``) and reject too long or too big
before any byte is fetched; download into a private staging directory, repeating a whole attempt with back-off
(honouring ``Retry-After``) for failures worth repeating; probe the file in an isolated child (decoding an
untrusted file must not crash the worker), hash it, publish it under ``ids.storage_path`` (temp name + rename),
then write the marker. Anything that goes wrong becomes a ``failed`` ``Outcome`` with a stable reason
(``pipeline.site.errors``); a video longer than allowed is ``dropped: too_long``. Nothing raises.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from yt_dlp.utils import parse_bytes

from pipeline.cli.options import option
from pipeline.io import storage
from pipeline.site.breaker import BLOCK_REASONS, BreakerOpen
from pipeline.site.errors import FINAL_REASONS, Failure, classify, find_in_chain
from pipeline.site.site_access import SITE_USAGE, SiteAccess, SiteAccessConfig, site_access, usage_outputs
from pipeline.stage import MAIN, OUTCOMES
from pipeline.video.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from pipeline.video.probe import ProbeError, probe_file
from schemas import CandidateVideo, DownloadedVideo, Outcome, RecordError, ids, reasons

log = logging.getLogger(__name__)

MARKER_EXTENSION = "json"
FAILED_MARKER_EXTENSION = "failed"  # (JSON) a final failure (errors.FINAL_REASONS) recorded for reruns
_H264 = ("avc1", "avc3", "h264")
_AV1 = ("av01", "av1")


def _size_arg(text: str) -> int:
    """argparse type for sizes such as ``500K``, ``2M``, ``1.5G`` (yt-dlp's own parser)."""
    value = parse_bytes(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 500K, 50M, 2G)")
    return value


@dataclasses.dataclass(frozen=True)
class DownloadConfig:
    """How politely and how robustly videos are fetched, and where they are stored."""

    download_dir: str | None = option(  # local dir or gs:// prefix; run.py defaults it to <output>/videos
        "--download-dir", default=None,
        help="where videos are stored: a local directory or gs:// prefix (default: <output>/videos)")
    retries: int = option(  # per transfer (yt-dlp) and per video (whole attempts after 429/5xx/timeouts)
        "--retries", type=int, default=3,
        help="retries per transfer and per video after 429/5xx/timeouts (default %(default)d)")
    fragment_retries: int = option(  # per HLS/DASH fragment (yt-dlp's library default differs from the CLI's 10)
        "--fragment-retries", type=int, default=3, help="retries per HLS/DASH fragment (default %(default)d)")
    rate_limit: int | None = option(  # bytes per second per download
        "--rate-limit", type=_size_arg, default=None, help="bytes/s per download, e.g. 2M")
    sleep_interval_s: float = option(  # pause before each download (politeness towards one host)
        "--sleep-interval", type=float, default=0.0, help="seconds to pause before each download (default 0)")
    # Budget, breaker, cookies, proxies, socket timeout and back-off, shared with the search stage
    # (pipeline.site.site_access): run.py hands both stages the same one.
    site: SiteAccessConfig = dataclasses.field(default_factory=SiteAccessConfig)
    max_filesize: int | None = option(  # bytes
        "--max-filesize", type=_size_arg, default=2 * 1024**3, help="largest video to store, e.g. 500M (default 2G)")
    max_duration_s: float | None = None  # reject longer videos (metadata); run.py sets the search's bound
    min_height: int = option(  # pick the smallest stream at least this tall (or the best below)
        "--min-height", type=int, default=360,
        help="pick the smallest stream at least this tall, else the best below (default %(default)d)")
    js_runtime: str | None = option(  # "deno", "node", "bun" or "node:/path/to/node": YouTube's JS challenges
        "--js-runtime", default=None,
        help="JavaScript runtime for YouTube's challenges: deno, node, bun, or name:/path")
    retry_failed: bool = option(  # a rerun asks again for videos whose final failure an earlier run recorded
        "--retry-failed", action="store_true", default=False,
        help="on a rerun, try again the videos an earlier run found gone, private or not a video "
             "(by default their recorded outcome is repeated without asking the site)")
    remote_components: tuple[str, ...] = option(  # e.g. ("ejs:npm",) when yt-dlp-ejs is not pip-installed
        "--remote-components", action="append", default=(), flag_default=None,
        to_field=lambda names, _: tuple(names or ()),
        help="let yt-dlp fetch helper scripts, e.g. ejs:npm (when yt-dlp-ejs is not installed)")
    enable_file_urls: bool = True  # file:// catalogs (the demo corpus)
    isolate_probe: bool = True  # probe in a child process (it decodes a frame); run.py: the segment's isolation
    probe_timeout_s: float = 300.0  # a probe that hangs longer is abandoned (the file is still stored)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.fragment_retries < 0:
            raise ValueError("retries must be >= 0")
        if self.probe_timeout_s <= 0:
            raise ValueError(f"probe timeout must be > 0 s, got {self.probe_timeout_s}")


# ---- format choice ----------------------------------------------------------------------------------
def _codec(fmt: dict) -> str:
    return (fmt.get("vcodec") or "").lower()


def _is_video(fmt: dict) -> bool:
    if _codec(fmt) == "none" or fmt.get("video_ext") == "none":
        return False
    return fmt.get("ext") != "mhtml" and "storyboard" not in (fmt.get("format_note") or "").lower()


def _has_audio(fmt: dict) -> bool:
    return (fmt.get("acodec") or "none") != "none"


def _is_hls(fmt: dict) -> bool:
    return (fmt.get("protocol") or "").startswith("m3u8")


def _rate(fmt: dict) -> float:
    return float(fmt.get("tbr") or fmt.get("filesize") or fmt.get("filesize_approx") or 0)


def choose_format(formats: list[dict], min_height: int = 360) -> dict | None:
    """The stream to download: one format, so no merge step (and no ffmpeg) is needed.

    Preference: H.264 over other codecs (decord's FFmpeg build cannot decode AV1 and reports it only as
    "cannot find video stream"), AV1 only when nothing else exists; within that, the smallest stream at or
    above ``min_height``, else the tallest below (direct links with unknown height land here); ties go to
    plain HTTP over HLS, video-only over muxed, then the lower bitrate.
    """
    video = [f for f in formats if _is_video(f)]
    if not video:
        return None
    h264 = [f for f in video if _codec(f).startswith(_H264)]
    not_av1 = [f for f in video if not _codec(f).startswith(_AV1)]
    smallest = functools.partial(min, key=lambda f: (f.get("height") or 0, _is_hls(f), _has_audio(f), _rate(f)))
    tallest = functools.partial(max, key=lambda f: (f.get("height") or -1, not _is_hls(f), not _has_audio(f),
                                                    -_rate(f)))
    for pool in (h264, not_av1):
        tall = [f for f in pool if (f.get("height") or 0) >= min_height]
        if tall:
            return smallest(tall)
    for pool in (h264, not_av1):
        if pool:
            return tallest(pool)
    tall = [f for f in video if (f.get("height") or 0) >= min_height]
    return smallest(tall) if tall else tallest(video)


def _format_selector(ctx: dict, min_height: int) -> Any:
    chosen = choose_format(ctx.get("formats") or [], min_height)
    if chosen is not None:
        yield chosen


# ---- back-off -----------------------------------------------------------------------------------------
def backoff_s(attempt: int, base_s: float, max_s: float, retry_after_s: float | None = None) -> float | None:
    """Pause before attempt ``attempt + 1``: the server's Retry-After if given, else base * 2**attempt.

    Returns None when the server asks for longer than ``max_s``: retrying sooner would be impolite and
    waiting would stall a worker, so the video fails now with the server's reason.
    """
    if retry_after_s is not None:
        return retry_after_s if retry_after_s <= max_s else None
    return min(max_s, base_s * (2 ** attempt))


def _retry_sleep(n: int, base_s: float, max_s: float) -> float:
    return min(max_s, base_s * (2 ** n))


# ---- the downloader -------------------------------------------------------------------------------------
class _Reject(Exception):  # noqa: N818 - a decision, not an error
    def __init__(self, outcome: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome, self.reason, self.detail = outcome, reason, detail


class _YtdlpLog:
    """yt-dlp's logger hook: keeps this attempt's messages (some outcomes are only reported as text)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        if not msg.startswith("[download]  ") or "%" not in msg:  # skip progress lines
            self.lines.append(msg.strip())
            log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        self.lines.append(msg.strip())
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        self.lines.append(msg.strip())
        log.info("yt-dlp: %s", msg)


def ytdlp_params(config: DownloadConfig, logger: Any) -> dict[str, Any]:
    """The YoutubeDL options for ``config``: politeness, retries, timeouts and the format choice."""
    params: dict[str, Any] = {
        "logger": logger,
        "quiet": True,
        "noprogress": True,
        "cachedir": False,
        "noplaylist": True,
        "restrictfilenames": True,
        "outtmpl": {"default": "video.%(ext)s"},
        "retries": config.retries,
        "fragment_retries": config.fragment_retries,
        "extractor_retries": config.retries,
        "retry_sleep_functions": {
            kind: functools.partial(_retry_sleep, base_s=config.site.backoff_base_s,
                                     max_s=config.site.max_backoff_s)
            for kind in ("http", "fragment", "extractor")
        },
        "socket_timeout": config.site.socket_timeout_s,
        "enable_file_urls": config.enable_file_urls,
        "format": functools.partial(_format_selector, min_height=config.min_height),
    }
    optional = {"ratelimit": config.rate_limit, "max_filesize": config.max_filesize,
                "sleep_interval": config.sleep_interval_s or None}
    params.update({k: v for k, v in optional.items() if v is not None})
    if config.js_runtime:
        name, _, path = config.js_runtime.partition(":")
        params["js_runtimes"] = {name.lower(): ({"path": path} if path else {})}
    if config.remote_components:
        params["remote_components"] = list(config.remote_components)
    return params


STALE_STAGING_S = 6 * 3600  # a staging directory this old belongs to no live download (socket timeouts ~30 s)


def remove_stale_staging(root: str, max_age_s: float = STALE_STAGING_S) -> list[str]:
    """Delete ``dl-*`` staging directories that a killed worker left under ``root``; returns them.

    Other workers share ``root`` and stage there right now, so only directories in which nothing (neither the
    directory nor a file in it) has changed for ``max_age_s`` go: a live transfer keeps its file's mtime fresh.
    """
    removed = []
    now = time.time()
    for entry in os.scandir(root) if os.path.isdir(root) else ():
        try:
            if entry.name.startswith("dl-") and entry.is_dir() and now - _newest_mtime(entry.path) > max_age_s:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
        except OSError:  # vanished meanwhile: another worker's cleanup
            continue
    if removed:
        log.info("removed %d stale staging directories under %s", len(removed), root)
    return removed


def _newest_mtime(path: str) -> float:
    return max([os.stat(path).st_mtime] + [f.stat().st_mtime for f in os.scandir(path)])


class Downloader:
    """Downloads candidates one at a time with one ``YoutubeDL`` (created once, reused per video)."""

    def __init__(self, config: DownloadConfig, site: SiteAccess | None = None) -> None:
        """``site``: the process's shared budget and breaker (the Beam stage); default a private one."""
        if not config.download_dir:
            raise ValueError("DownloadConfig.download_dir is required (run.py defaults it to <output>/videos)")
        self.config = config
        self.root = config.download_dir.rstrip("/") or "/"
        self._log = _YtdlpLog()
        self._site = site or SiteAccess(config.site)
        self._ydl = self._site.youtube_dl(ytdlp_params(config, self._log))
        self._prober: IsolatedWorker | None = None  # started on the first probe, reused, restarted after a crash
        if storage.is_local(self.root):
            self._staging_root = os.path.join(storage.local_path(self.root), ".partial")
        else:
            self._staging_root = os.path.join(tempfile.gettempdir(), "genie-partial")
        os.makedirs(self._staging_root, exist_ok=True)
        remove_stale_staging(self._staging_root)

    def close(self) -> None:
        self._ydl.close()
        if self._prober is not None:
            self._prober.close()
            self._prober = None
        with contextlib.suppress(OSError):  # leave no empty staging directory behind
            os.rmdir(self._staging_root)

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- public ------------------------------------------------------------------------------------
    def download(self, candidate: CandidateVideo) -> DownloadedVideo | Outcome:
        """The stored video, or the ``Outcome`` saying why not. Never raises for a bad video."""
        reused = self._reuse(candidate)
        if reused is not None:
            return reused
        recorded = None if self.config.retry_failed else self._recorded_failure(candidate)
        if recorded is not None:
            return recorded
        attempt = 0
        site = self._site.site_for(candidate.url)  # None: a local file (no budget, no breaker)
        while True:
            proxy = self._ydl.proxy = self._site.proxies.pick() if site else None
            try:
                if site:
                    self._site.before_attempt(site)
                stored = self._attempt(candidate)
                if site:
                    self._site.after_attempt(site, None, proxy)
                return stored
            except _Reject as rejected:
                if site:
                    self._site.after_attempt(site, None, proxy)
                return Outcome.for_video(candidate, reasons.STAGE_DOWNLOAD, rejected.outcome, rejected.reason,
                                         rejected.detail)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an Outcome
                stopped = find_in_chain(exc, BreakerOpen)
                if stopped is not None:
                    name = stopped.site or (site.name if site else "")
                    if name:
                        self._site.count(name, deferred=1)
                    return deferred(candidate, reasons.STAGE_DOWNLOAD, stopped, attempt)
                failure = classify(exc)
                if site:
                    self._site.after_attempt(site, failure, proxy)
            if site and site.open_reason and (failure.transient or failure.reason in BLOCK_REASONS):
                # the process gave up on the site: this video was refused for who asked, not for what it is
                self._site.count(site, deferred=1)
                return deferred(candidate, reasons.STAGE_DOWNLOAD, BreakerOpen(site.open_reason, site.name),
                                attempt + 1)
            pause = backoff_s(attempt, self.config.site.backoff_base_s, self.config.site.max_backoff_s,
                              failure.retry_after_s)
            if not failure.transient or attempt >= self.config.retries or pause is None:
                return self._failed(candidate, failure, attempt + 1, failure.transient and pause is None)
            log.info("download %s: %s, attempt %d, retrying in %.1f s", candidate.video_id, failure.reason,
                     attempt + 1, pause)
            time.sleep(pause)
            attempt += 1

    def marker_path(self, candidate: CandidateVideo) -> str:
        return ids.storage_path(self.root, candidate.video_id, MARKER_EXTENSION)

    def failed_marker_path(self, candidate: CandidateVideo) -> str:
        return ids.storage_path(self.root, candidate.video_id, FAILED_MARKER_EXTENSION)

    # ---- steps ---------------------------------------------------------------------------------------
    def _failed(self, candidate: CandidateVideo, failure: Failure, attempts: int, retry_after_too_long: bool
                ) -> Outcome:
        detail = failure.detail
        if retry_after_too_long:
            detail += f" (server asked to retry after {failure.retry_after_s:g} s > max back-off " \
                      f"{self.config.site.max_backoff_s:g} s)"
        elif attempts > 1:
            detail += f" (after {attempts} attempts)"
        outcome = Outcome.for_video(candidate, reasons.STAGE_DOWNLOAD, reasons.FAILED, failure.reason, detail)
        if failure.reason in FINAL_REASONS:
            try:  # best effort: without the record a rerun just asks the site again
                storage.write_bytes(self.failed_marker_path(candidate), outcome.to_json().encode("utf-8"))
            except Exception as exc:  # noqa: BLE001
                log.info("download %s: could not record the final failure (%s)", candidate.video_id, exc)
        return outcome

    def _recorded_failure(self, candidate: CandidateVideo) -> Outcome | None:
        """The final failure an earlier run recorded for this video, repeated as it was."""
        marker = self.failed_marker_path(candidate)
        try:
            if not storage.exists(marker):
                return None
            recorded = Outcome.from_json(storage.read_bytes(marker))
        except (OSError, RecordError, ValueError) as exc:
            log.info("download %s: ignoring unusable failure record %s (%s)", candidate.video_id, marker, exc)
            return None
        if recorded.item_id != candidate.video_id or recorded.reason not in FINAL_REASONS:
            return None
        log.info("download %s: %s recorded by an earlier run; not asking again (--retry-failed does)",
                 candidate.video_id, recorded.reason)
        return Outcome.for_video(candidate, reasons.STAGE_DOWNLOAD, reasons.FAILED, recorded.reason, recorded.detail)

    def _reuse(self, candidate: CandidateVideo) -> DownloadedVideo | None:
        """The record of an earlier complete download, if its marker and file are both intact."""
        marker = self.marker_path(candidate)
        try:
            if not storage.exists(marker):
                return None
            record = DownloadedVideo.from_json(storage.read_bytes(marker))
            path = f"{self.root}/{record.path.rsplit('/', 1)[-1]}"
            if not storage.exists(path) or storage.size_bytes(path) != record.size_bytes:
                return None
            return record.replace(candidate=candidate, path=path)
        except (OSError, RecordError, ValueError) as exc:
            log.info("download %s: ignoring unusable marker %s (%s)", candidate.video_id, marker, exc)
            return None

    def _attempt(self, candidate: CandidateVideo) -> DownloadedVideo:
        os.makedirs(self._staging_root, exist_ok=True)  # another worker thread may have removed it
        staging = tempfile.mkdtemp(prefix="dl-", dir=self._staging_root)
        self._log.lines.clear()
        self._ydl.params["paths"] = {"home": staging, "temp": staging}
        try:
            info = self._ydl.extract_info(candidate.url, download=False)
            self._check_metadata(info)
            info = self._ydl.process_ie_result(info, download=True)
            path = self._downloaded_file(info, staging)
            return self._store(candidate, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_metadata(self, info: dict | None) -> None:
        if not info:
            raise _Reject(reasons.FAILED, reasons.EXTRACTOR_ERROR, "yt-dlp returned no metadata")
        if info.get("_type") in ("playlist", "multi_video"):
            raise _Reject(reasons.FAILED, reasons.UNSUPPORTED_URL, "URL is a playlist, not one video")
        live = info.get("live_status")
        if info.get("is_live") or live == "is_live":
            raise _Reject(reasons.DROPPED, reasons.TOO_LONG, "live stream: it has no end to download")
        if live == "is_upcoming":
            raise _Reject(reasons.FAILED, reasons.UNAVAILABLE, "scheduled live stream that has not started")
        duration = info.get("duration")
        limit = self.config.max_duration_s
        if limit is not None and isinstance(duration, int | float) and duration > limit:
            raise _Reject(reasons.DROPPED, reasons.TOO_LONG, f"duration {duration:g} s > maximum {limit:g} s")
        size = info.get("filesize") or info.get("filesize_approx")
        if self.config.max_filesize is not None and size and size > self.config.max_filesize:
            raise _Reject(reasons.FAILED, reasons.TOO_LARGE,
                          f"format {info.get('format_id')} is {size} bytes > max-filesize "
                          f"{self.config.max_filesize} bytes (from metadata, not downloaded)")

    def _downloaded_file(self, info: dict, staging: str) -> str:
        for item in info.get("requested_downloads") or []:
            path = item.get("filepath")
            if path and os.path.isfile(path):
                size = os.path.getsize(path)
                if self.config.max_filesize is not None and size > self.config.max_filesize:
                    raise _Reject(reasons.FAILED, reasons.TOO_LARGE,
                                  f"downloaded {size} bytes > max-filesize {self.config.max_filesize} bytes")
                return path
        said = " | ".join(self._log.lines[-3:])
        if "larger than max-filesize" in said:
            raise _Reject(reasons.FAILED, reasons.TOO_LARGE, said)
        raise _Reject(reasons.FAILED, reasons.DOWNLOAD_ERROR, f"yt-dlp finished without a file: {said}")

    def _probe(self, path: str) -> dict[str, Any]:
        """The file's stream facts; ``{}`` when FFmpeg cannot read it (or its decoder crashed or hung on it).

        Empty, unreadable and decoder-crashing files are stored and passed on with no facts: diagnosing
        damage is the segment stage's job (which decodes in its own isolated child, and says why).
        """
        try:
            if not self.config.isolate_probe:
                return probe_file(path).as_fields()
            if self._prober is None:
                self._prober = IsolatedWorker(self.config.probe_timeout_s)
            return self._prober.call(probe_file, path).as_fields()
        except ProbeError as exc:
            if exc.reason == reasons.NO_VIDEO_STREAM:
                raise _Reject(reasons.FAILED, reasons.NO_VIDEO_STREAM, exc.detail) from exc
            return {}
        except (WorkerCrashed, WorkerTimeout) as exc:
            log.warning("probe of %s failed in its child process (%s); storing it without stream facts", path, exc)
            return {}

    def _store(self, candidate: CandidateVideo, path: str) -> DownloadedVideo:
        facts = self._probe(path)
        sha256, size = storage.sha256_file(path)
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        try:
            dest = ids.storage_path(self.root, candidate.video_id, ext)
        except ValueError:
            dest = ids.storage_path(self.root, candidate.video_id, "bin")
        try:  # each write is retried after transient errors (storage.retrying); then the video fails
            storage.publish_file(path, dest)
            record = DownloadedVideo(candidate=candidate, path=dest, size_bytes=size, sha256=sha256, **facts)
            storage.write_bytes(self.marker_path(candidate), record.to_json().encode("utf-8"))
        except (OSError, storage.StorageFailed) as exc:
            raise _Reject(reasons.FAILED, reasons.STORAGE_ERROR, f"cannot store {dest}: {exc}") from exc
        return record


def deferred(candidate: CandidateVideo, stage: str, why: BreakerOpen, attempts: int = 0) -> Outcome:
    """``failed``/``deferred``: the breaker stopped this video before it was finished; a rerun retries it."""
    tried = f" after {attempts} blocked attempt(s)" if attempts else ""
    return Outcome.for_video(candidate, stage, reasons.FAILED, reasons.DEFERRED,
                             f"{why}; this worker stopped contacting {why.site or 'the site'}{tried}: rerun into "
                             "the same --output to retry")


def download_one(candidate: CandidateVideo, config: DownloadConfig) -> DownloadedVideo | Outcome:
    """Download one candidate with a fresh downloader (tests, scripts); the Beam stage reuses one."""
    with Downloader(config) as downloader:
        return downloader.download(candidate)


# ---- Beam ------------------------------------------------------------------------------------------------
class DownloadFn(beam.DoFn):
    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        self._downloader: Downloader | None = None

    def setup(self) -> None:
        # The process-wide budgets and breakers; the cookies are read from their (gs://) path here, on the worker.
        self._downloader = Downloader(self.config, site_access(self.config.site))

    def process(self, candidate: CandidateVideo):
        try:
            result = self._downloader.download(candidate)
        except Exception as exc:  # noqa: BLE001 - a bug, or a store that kept refusing: never the pipeline
            refused = storage.refused(exc)
            result = Outcome.for_video(candidate, reasons.STAGE_DOWNLOAD, reasons.FAILED,
                                       reasons.STORAGE_ERROR if refused else reasons.DOWNLOAD_ERROR,
                                       f"{type(exc).__name__}: {exc}")
        if isinstance(result, Outcome):
            Metrics.counter(reasons.STAGE_DOWNLOAD, f"{result.outcome}/{reasons.reason_family(result.reason)}").inc()
            Metrics.counter(reasons.STAGE_DOWNLOAD, result.outcome).inc()
            yield beam.pvalue.TaggedOutput(OUTCOMES, result)
        else:
            Metrics.counter(reasons.STAGE_DOWNLOAD, "stored").inc()
            Metrics.counter(reasons.STAGE_DOWNLOAD, "stored_bytes").inc(result.size_bytes)
            yield result

    def finish_bundle(self):
        yield from usage_outputs(site_access(self.config.site))

    def teardown(self) -> None:
        if self._downloader is not None:
            self._downloader.close()


class Download(beam.PTransform):
    """``candidates | Download(cfg)`` -> ``{MAIN: DownloadedVideo, OUTCOMES: failed/dropped Outcome,
    SITE_USAGE: SiteUsage}`` (per site and bundle: what the requests cost, for ``stats.json``)."""

    def __init__(self, config: DownloadConfig) -> None:
        super().__init__()
        if not config.download_dir:
            raise ValueError("DownloadConfig.download_dir is required (run.py defaults it to <output>/videos)")
        self.config = config

    def download_fn(self) -> DownloadFn:
        return DownloadFn(self.config)

    def expand(self, candidates):
        results = candidates | "Fetch" >> beam.ParDo(self.download_fn()).with_outputs(
            OUTCOMES, SITE_USAGE, main=MAIN)
        return {MAIN: results[MAIN], OUTCOMES: results[OUTCOMES], SITE_USAGE: results[SITE_USAGE]}
