"""Stage 3: cut each downloaded video into 16 s clips at 10 FPS and 160x90, encoded as H.264 mp4.

Per video: index the frames (exact timestamps, no decoding) -> plan the clip windows on the 10 FPS grid ->
decode each window's frames with decord (PyAV for codecs decord cannot open) -> crop/pad -> encode. One
window is in memory at a time. The whole per-video function runs in a child process (``isolation``) so a
decoder crash or hang becomes a ``failed: decoder_crash`` outcome instead of a lost worker.

Outcomes decided here: the video is ``kept`` (>= 1 clip cut), ``dropped`` (``too_short``; ``no_clips``
when the intro/outro skips leave no full window) or ``failed`` (``empty_file``, ``corrupt_video``,
``truncated_video``, ``audio_only``, ``unsupported_codec:<codec>``, ``decoder_crash``, ``segment_error``);
the remainder after the last full window is a clip ``dropped: short_tail``. Cut clips go on (MAIN).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import clip_codec, stage, tables
from pipeline.cut import (  # noqa: F401 -- re-exported: the stage's per-video functions
    SegmentConfig,
    SegmentResult,
    clip_actions,
    load_actions,
    segment_video,
)
from pipeline.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from schemas import Clip, DownloadedVideo, Outcome, from_table, ids, reasons, to_table

log = logging.getLogger(__name__)


def add_segment_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("segmentation (16 s clips at 10 FPS, 160x90)")
    g.add_argument("--clip-seconds", type=float, default=16.0, help="clip length (default 16 s = 160 frames)")
    g.add_argument("--clip-stride-s", type=float, default=None,
                   help="start a clip every N s (default: the clip length, i.e. non-overlapping)")
    g.add_argument("--skip-start-s", type=float, default=0.0, help="skip this much of every video (intros)")
    g.add_argument("--skip-end-s", type=float, default=0.0, help="skip this much at the end (outros)")
    g.add_argument("--fit", choices=("crop", "pad"), default="crop",
                   help="crop: cover 160x90 and centre-crop (default); pad: fit inside and pad")
    g.add_argument("--decoder", choices=("decord", "pyav"), default="decord",
                   help="decord (default; PyAV takes over for codecs decord cannot open, e.g. AV1) or pyav "
                        "for every video")
    g.add_argument("--crf", type=int, default=clip_codec.DEFAULT_CRF, help="x264 CRF of the stored clips")
    g.add_argument("--no-isolation", action="store_true",
                   help="decode in the worker process itself (faster to start; a decoder crash kills it)")
    g.add_argument("--video-timeout-s", type=float, default=3600.0,
                   help="fail a video whose segmentation takes longer than this")


def guarded_segment(video: DownloadedVideo, config: SegmentConfig, worker: IsolatedWorker | None,
                    fn: Callable[[DownloadedVideo, SegmentConfig], SegmentResult] = segment_video) -> SegmentResult:
    """``fn`` in the isolated worker (when given): a crash or timeout becomes ``failed: decoder_crash``."""
    if worker is None:
        return fn(video, config)
    try:
        return worker.call(fn, video, config)
    except (WorkerCrashed, WorkerTimeout) as exc:
        return SegmentResult([], [Outcome.for_video(video.candidate, reasons.STAGE_SEGMENT, reasons.FAILED,
                                                    reasons.DECODER_CRASH, str(exc), duration_s=video.duration_s)])


# ---- rerun cache -------------------------------------------------------------------------------------------
def cache_paths(video: DownloadedVideo, config: SegmentConfig) -> tuple[str, str]:
    """Where a video's results live: keyed by the file's content hash and the config's fingerprint."""
    name = f"{ids.video_key(video.video_id)}-{video.sha256[:16]}-{config.fingerprint()}"
    base = FileSystems.join(config.cache_dir, name)
    return base + ".clips.parquet", base + ".outcomes.parquet"


def cached_segment(video: DownloadedVideo, config: SegmentConfig, worker: IsolatedWorker | None) -> SegmentResult:
    """Reuse an earlier run's result for the same file and config; otherwise segment and store the result.

    The outcomes file is written last and is the completion marker. Cached clips get the current candidate
    metadata (titles may change between runs; the bytes depend only on the file and the config).
    """
    if not config.cache_dir:
        return guarded_segment(video, config, worker)
    clips_path, outcomes_path = cache_paths(video, config)
    if FileSystems.exists(outcomes_path) and FileSystems.exists(clips_path):
        clips = [c.replace(video=video.candidate) for c in from_table(tables.read_table(clips_path), Clip)]
        return SegmentResult(clips, from_table(tables.read_table(outcomes_path), Outcome))
    result = guarded_segment(video, config, worker)
    if any(o.reason == reasons.DECODER_CRASH for o in result.outcomes):
        return result  # a crash or timeout may be transient: try again on the next run
    tables.write_table(clips_path, to_table(result.clips, Clip))
    tables.write_table(outcomes_path, to_table(result.outcomes, Outcome))
    return result


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
        # depends on what ran before it in the process (clip_codec.X264_OPTIONS), so no fresh child is needed
        self._worker = IsolatedWorker(self.config.video_timeout_s) if self.config.isolate else None

    def teardown(self):
        if self._worker is not None:
            self._worker.close()

    def process(self, video: DownloadedVideo):
        started = time.monotonic()
        result = cached_segment(video, self.config, self._worker)
        elapsed = time.monotonic() - started
        self.videos.inc()
        self.clips.inc(len(result.clips))
        self.seconds.update(int(elapsed * 1000))
        final = result.outcomes[-1]
        log.info("segment: %s -> %s%s (%d clips, %.1f s)", video.video_id, final.outcome,
                 f" {final.reason}" if final.reason else "", len(result.clips), elapsed)
        for outcome in result.outcomes:
            yield beam.pvalue.TaggedOutput(stage.OUTCOMES, outcome)
        yield from result.clips


class Segment(beam.PTransform):
    """DownloadedVideo -> {MAIN: Clip (mp4 inline), OUTCOMES: video outcomes and short-tail clip outcomes}."""

    def __init__(self, config: SegmentConfig):
        super().__init__()
        self.config = config

    def expand(self, videos):
        results = (videos
                   | "Reshuffle" >> beam.Reshuffle()  # spread videos over workers before the expensive step
                   | "Cut clips" >> beam.ParDo(_SegmentFn(self.config)).with_outputs(stage.OUTCOMES,
                                                                                      main=stage.MAIN))
        return {stage.MAIN: results[stage.MAIN], stage.OUTCOMES: results[stage.OUTCOMES]}
