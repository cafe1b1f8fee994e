"""Stage 3: cut each downloaded video into 16 s clips at 10 FPS and 160x90, encoded as H.264 mp4.

Per video: index the frames (no decoding) -> plan windows on the 10 FPS grid -> decode each window (decord, PyAV
for codecs decord cannot open) -> crop/pad -> encode, one window in memory at a time. The per-video function runs
in a child process (``isolation``) so a decoder crash or hang is a ``failed: decoder_crash`` outcome, not a lost
worker. Outcomes: ``kept``, ``dropped`` (``too_short``, ``no_clips``) or ``failed`` (``empty_file``,
``corrupt_video``, ``truncated_video``, ``audio_only``, ``unsupported_codec:<codec>``, ``decoder_crash``,
``segment_error``, ``storage_error``); the tail after the last window is a clip ``dropped: short_tail``. Clips go on
as references into the clip store (``pipeline.io.clip_store``), streamed from the child: no process holds a
video's clips at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import stage
from pipeline.io import clip_store, storage, tables
from pipeline.video.cut import (  # noqa: F401 -- re-exported: the stage's per-video functions
    SegmentConfig,
    SegmentResult,
    clip_actions,
    load_actions,
    read_sidecar,
    seconds_to_frames,
    segment_video,
)
from pipeline.video.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from schemas import Clip, DownloadedVideo, Outcome, from_table, ids, reasons, to_table

log = logging.getLogger(__name__)


NOT_CACHED = (reasons.DECODER_CRASH, reasons.SEGMENT_ERROR, reasons.STORAGE_ERROR)  # the next run tries again


def _failed(video: DownloadedVideo, reason: str, detail: str) -> SegmentResult:
    return SegmentResult([], [Outcome.for_video(video.candidate, reasons.STAGE_SEGMENT, reasons.FAILED, reason,
                                                detail, duration_s=video.duration_s)])


def guarded_segment(video: DownloadedVideo, config: SegmentConfig, worker: IsolatedWorker | None,
                    fn: Callable[..., SegmentResult] = segment_video, args: tuple = ()) -> SegmentResult:
    """``fn(video, config, *args)`` (in the isolated worker when given), never raising for one video.

    A crash or timeout of the child is ``failed: decoder_crash``; anything else that goes wrong between here and
    the result (an exception ``fn`` let through, a result or exception that does not pickle or unpickle, a
    broken pipe, ``OSError``) is ``failed: segment_error`` with the exception in the detail. Either way one
    video fails and the Beam worker, with the other videos of its bundle, carries on.
    """
    try:
        result = fn(video, config, *args) if worker is None else worker.call(fn, video, config, *args)
    except (WorkerCrashed, WorkerTimeout) as exc:
        return _failed(video, reasons.DECODER_CRASH, str(exc))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return _failed(video, reasons.SEGMENT_ERROR, f"{type(exc).__name__}: {exc}")
    if not isinstance(result, SegmentResult) or not result.outcomes:
        return _failed(video, reasons.SEGMENT_ERROR, f"segmentation returned no outcome ({type(result).__name__})")
    return result


# ---- rerun cache -------------------------------------------------------------------------------------------
def sidecar_tag(video: DownloadedVideo) -> str:
    """Part of the cache key for the actions sidecar: the clips carry its actions, so its URL and content count.

    '' without a sidecar (those videos keep their earlier keys). An unreadable sidecar gets a tag of its own, so
    the result cached without actions is not reused once the sidecar can be read.
    """
    url = video.candidate.actions_url
    if not url:
        return ""
    try:
        content = hashlib.sha256(read_sidecar(url)).hexdigest()
    except Exception as exc:  # noqa: BLE001 - unreadable now; segmentation records why on the video
        content = f"unreadable:{type(exc).__name__}"
    return "-a" + hashlib.sha256(f"{url}\n{content}".encode()).hexdigest()[:12]


def cache_paths(video: DownloadedVideo, config: SegmentConfig) -> tuple[str, str]:
    """Where a video's results live: keyed by the file's content hash, the config's fingerprint and the actions
    sidecar (URL and content hash), i.e. everything the cached clips depend on. The clips' bytes are in the
    pack beside them (``pack_path``)."""
    name = f"{ids.video_key(video.video_id)}-{video.sha256[:16]}-{config.fingerprint()}{sidecar_tag(video)}"
    base = FileSystems.join(config.cache_dir, name)
    return base + ".clips.parquet", base + ".outcomes.parquet"


def pack_path(clips_path: str) -> str:
    """The clip store file of a cache entry: its clips' mp4s back to back (``pipeline.io.clip_store``)."""
    return clips_path[:-len(".clips.parquet")] + clip_store.PACK_SUFFIX


def _read_cache(video: DownloadedVideo, config: SegmentConfig, clips_path: str,
                outcomes_path: str) -> SegmentResult | None:
    """The cached result (clips by reference into the pack), None on a miss; raises when the entry exists but
    cannot be used."""
    if not (storage.exists(outcomes_path) and storage.exists(clips_path)):
        return None
    clips = from_table(tables.read_table(clips_path), Clip)
    if clips and not storage.exists(pack_path(clips_path)):
        raise ValueError("the entry's clip store file is missing")
    clips = [c.replace(video=video.candidate, location=clip_store.resolve(c.location, config.cache_dir))
             for c in clips]
    outcomes = from_table(tables.read_table(outcomes_path), Outcome)
    if not outcomes or (outcomes[-1].item_kind, outcomes[-1].item_id) != (reasons.ITEM_VIDEO, video.video_id):
        raise ValueError("the cached outcomes do not end with this video's outcome")
    return SegmentResult(clips, outcomes)


def _noted(result: SegmentResult, note: str) -> SegmentResult:
    """``result`` with ``note`` added to the video's outcome detail (the last outcome is the video's)."""
    *rest, video = result.outcomes
    return SegmentResult(result.clips, [*rest, video.replace(detail="; ".join(filter(None, [video.detail, note])))])


def _commit(result: SegmentResult, clips_path: str, outcomes_path: str, local_pack: str) -> None:
    """Store a video's result: the pack (streamed up, bytes written once), the clip references, then the
    outcomes, which are the entry's completion marker."""
    pack = pack_path(clips_path)
    name = pack.rsplit("/", 1)[-1]
    if result.clips:
        storage.publish_file(local_pack, pack)
    relative = [c.replace(location=clip_store.reference(name, *clip_store.parse(c.location)[1:]))
                for c in result.clips]
    tables.write_table(clips_path, to_table(relative, Clip))
    tables.write_table(outcomes_path, to_table(result.outcomes, Outcome))


def cached_segment(video: DownloadedVideo, config: SegmentConfig, worker: IsolatedWorker | None) -> SegmentResult:
    """Reuse an earlier run's result for the same file and config; otherwise segment and store the result.

    With a cache directory (always, in a run) it is also the clip store: the child appends each clip to a local pack,
    the pack is published once, and the clips come back as references. The outcomes file, written last, is the
    completion marker; cached clips get the current candidate metadata. An unreadable entry is segmented again and
    overwritten (noted in the outcome detail). Clips that cannot be stored fail their video (``storage_error`` after
    ``storage.retrying``, else ``segment_error``). Failures are not cached, so the next run tries again.
    """
    if not config.cache_dir:
        return guarded_segment(video, config, worker)
    notes = []
    try:
        clips_path, outcomes_path = cache_paths(video, config)
    except Exception as exc:  # noqa: BLE001 - no key, no entry
        log.warning("segment cache: no key for %s (%s: %s)", video.video_id, type(exc).__name__, exc)
        return _failed(video, reasons.SEGMENT_ERROR, f"no clip store entry ({type(exc).__name__}: {exc})")
    try:
        cached = _read_cache(video, config, clips_path, outcomes_path)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        if storage.refused(exc):
            return _failed(video, reasons.STORAGE_ERROR, f"reading the clip store entry: {exc}")
        log.warning("segment cache for %s unusable (%s: %s); segmenting again", video.video_id,
                    type(exc).__name__, exc)
        notes.append(f"cache entry unusable, segmented again ({type(exc).__name__}: {exc})")
        cached = None
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="clips-") as workdir:
        local_pack = os.path.join(workdir, "pack" + clip_store.PACK_SUFFIX)
        result = guarded_segment(video, config, worker, args=(local_pack,))
        if any(o.reason in NOT_CACHED for o in result.outcomes):
            return _noted(result, "; ".join(notes)) if notes else result
        try:
            _commit(result, clips_path, outcomes_path, local_pack)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("segment cache: cannot store %s's result (%s: %s)", video.video_id, type(exc).__name__, exc)
            if result.clips:  # clips without a home cannot go on
                reason = reasons.STORAGE_ERROR if storage.refused(exc) else reasons.SEGMENT_ERROR
                return _failed(video, reason, f"clips not stored in {config.cache_dir} ({type(exc).__name__}: {exc})")
            notes.append(f"result not cached ({type(exc).__name__}: {exc})")
    clips = [c.replace(location=clip_store.reference(pack_path(clips_path), *clip_store.parse(c.location)[1:]))
             for c in result.clips]
    result = SegmentResult(clips, result.outcomes)
    return _noted(result, "; ".join(notes)) if notes else result


def delete_source(video: DownloadedVideo, config: SegmentConfig) -> bool:
    """With ``--delete-videos`` (``pipeline.retention``): delete the video's downloaded file once its segmentation
    has ended. Only files under ``config.delete_sources_in`` (the download directory) go, never a catalog's own
    file; the download's marker stays. A rerun skips the download of a video whose result is committed to the
    cache, and downloads again one whose result was not (``NOT_CACHED``), so
    the sources on disk are bounded by the videos in flight, whatever fails."""
    root = config.delete_sources_in.rstrip("/") + "/"
    if not video.path.startswith(root):
        return False
    storage.delete_quietly(video.path)
    return True


# ---- Beam ------------------------------------------------------------------------------------------------
class _SegmentFn(beam.DoFn):
    def __init__(self, config: SegmentConfig):
        self.config = config
        self._worker: IsolatedWorker | None = None
        self.videos = beam.metrics.Metrics.counter("segment", "videos_in")
        self.clips = beam.metrics.Metrics.counter("segment", "clips_cut")
        self.seconds = beam.metrics.Metrics.distribution("segment", "video_ms")

    def setup(self):
        # one child per worker, reused for every video (restarted after a crash or timeout): encoding no longer
        # depends on what ran before it in the process (clip_format.X264_OPTIONS), so no fresh child is needed
        self._worker = IsolatedWorker(self.config.video_timeout_s) if self.config.isolate else None

    def teardown(self):
        if self._worker is not None:
            self._worker.close()

    def process(self, video: DownloadedVideo):
        started = time.monotonic()
        try:
            result = cached_segment(video, self.config, self._worker)
            final = result.outcomes[-1]
        except Exception as exc:  # noqa: BLE001 - a bug here fails this video, never the job
            log.exception("segment: %s failed outside the guarded call", video.video_id)
            reason = reasons.STORAGE_ERROR if storage.refused(exc) else reasons.SEGMENT_ERROR
            result = _failed(video, reason, f"{type(exc).__name__}: {exc}")
            final = result.outcomes[-1]
        if self.config.delete_sources_in:
            delete_source(video, self.config)
        elapsed = time.monotonic() - started
        self.videos.inc()
        self.clips.inc(len(result.clips))
        self.seconds.update(int(elapsed * 1000))
        log.info("segment: %s -> %s%s (%d clips, %.1f s)", video.video_id, final.outcome,
                 f" {final.reason}" if final.reason else "", len(result.clips), elapsed)
        for outcome in result.outcomes:
            yield beam.pvalue.TaggedOutput(stage.OUTCOMES, outcome)
        yield from result.clips


class Segment(beam.PTransform):
    """DownloadedVideo -> {MAIN: Clip (by reference into the clip store; inline without a cache dir), OUTCOMES:
    video outcomes and short-tail clip outcomes}.

    No shuffle (GroupByKey, Reshuffle) and no Flatten sits between a video's download and its segmentation: the
    runner fuses the two steps, so each worker thread downloads a video, cuts it and (``--delete-videos``)
    deletes it before taking the next. A shuffle there would be a barrier (Dataflow batch runs a stage only when
    its input is complete): every source video would land before the first clip is cut. The candidates are
    spread over the workers before the download (the search's ``SpreadCandidates``), which is what balances
    the expensive step. ``tests/pipeline/test_no_download_barrier.py`` holds the graph to this."""

    def __init__(self, config: SegmentConfig):
        super().__init__()
        self.config = config

    def expand(self, videos):
        results = videos | "Cut clips" >> beam.ParDo(_SegmentFn(self.config)).with_outputs(stage.OUTCOMES,
                                                                                           main=stage.MAIN)
        return {stage.MAIN: results[stage.MAIN], stage.OUTCOMES: results[stage.OUTCOMES]}
