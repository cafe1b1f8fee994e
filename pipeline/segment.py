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
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import clip_codec, decoders, frame_times, stage, tables
from pipeline.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from schemas import Clip, DownloadedVideo, Outcome, from_table, ids, reasons, to_table

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the clip bytes for the same input and config would change


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    clip_frames: int = 160  # 16 s at 10 FPS
    stride_frames: int | None = None  # None: non-overlapping windows
    skip_start_s: float = 0.0  # intro to skip
    skip_end_s: float = 0.0  # outro to skip
    fit: str = "crop"  # "crop": cover 160x90 and crop the centre; "pad": fit inside and pad with black
    crf: int = clip_codec.DEFAULT_CRF  # x264 quality of the stored clips (docs/pipeline.md has the table)
    isolate: bool = True  # decode in a child process (a decoder segfault fails one video, not the worker)
    video_timeout_s: float = 3600.0  # a video whose segmentation takes longer fails as decoder_crash
    cache_dir: str = ""  # per-video results kept here make reruns skip decoding ("" disables)

    def fingerprint(self) -> str:
        """What the clip bytes depend on (not isolation, timeout or the cache location)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("isolate", "video_timeout_s", "cache_dir")}
        fields["version"] = CACHE_VERSION
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> SegmentConfig:
        return cls(clip_frames=round(ns.clip_seconds * frame_times.CLIP_FPS),
                   stride_frames=round(ns.clip_stride_s * frame_times.CLIP_FPS) if ns.clip_stride_s else None,
                   skip_start_s=ns.skip_start_s, skip_end_s=ns.skip_end_s, fit=ns.fit, crf=ns.crf,
                   isolate=not ns.no_isolation, video_timeout_s=ns.video_timeout_s)


def add_segment_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("segmentation (16 s clips at 10 FPS, 160x90)")
    g.add_argument("--clip-seconds", type=float, default=16.0, help="clip length (default 16 s = 160 frames)")
    g.add_argument("--clip-stride-s", type=float, default=None,
                   help="start a clip every N s (default: the clip length, i.e. non-overlapping)")
    g.add_argument("--skip-start-s", type=float, default=0.0, help="skip this much of every video (intros)")
    g.add_argument("--skip-end-s", type=float, default=0.0, help="skip this much at the end (outros)")
    g.add_argument("--fit", choices=("crop", "pad"), default="crop",
                   help="crop: cover 160x90 and centre-crop (default); pad: fit inside and pad")
    g.add_argument("--crf", type=int, default=clip_codec.DEFAULT_CRF, help="x264 CRF of the stored clips")
    g.add_argument("--no-isolation", action="store_true",
                   help="decode in the worker process itself (faster to start; a decoder crash kills it)")
    g.add_argument("--video-timeout-s", type=float, default=3600.0,
                   help="fail a video whose segmentation takes longer than this")


@dataclasses.dataclass
class SegmentResult:
    clips: list[Clip]
    outcomes: list[Outcome]


# ---- actions sidecar -------------------------------------------------------------------------------------
def load_actions(url: str) -> list[int]:
    """The ``actions`` list of a sidecar JSON (local path, file:// or any Beam filesystem URL)."""
    path = url[len("file://"):] if url.startswith("file://") else url
    with FileSystems.open(path) as f:
        data = json.loads(f.read())
    actions = data["actions"]
    if not isinstance(actions, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in actions):
        raise ValueError("'actions' must be a list of integers")
    if data.get("step_fps", frame_times.CLIP_FPS) != frame_times.CLIP_FPS:
        raise ValueError(f"step_fps is {data.get('step_fps')}, clips are {frame_times.CLIP_FPS} FPS")
    return actions


def clip_actions(actions: list[int], first_tick: int, num_frames: int) -> list[int]:
    """Actions of a clip's frames: sidecar step ``first_tick + k`` for frame k; -1 past the sidecar's end."""
    return [actions[t] if 0 <= t < len(actions) else -1 for t in range(first_tick, first_tick + num_frames)]


# ---- one video -------------------------------------------------------------------------------------------
def _local_copy(path: str, workdir: str) -> str:
    """decord and PyAV read local files: copy ``gs://...`` (any non-local Beam path) into ``workdir``."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if "://" not in path:
        return path
    local = os.path.join(workdir, "video")
    with FileSystems.open(path) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return local


def segment_video(video: DownloadedVideo, config: SegmentConfig) -> SegmentResult:
    """Clips and outcomes of one video. Never raises for a bad video: its failure is an Outcome."""
    candidate = video.candidate
    try:
        with tempfile.TemporaryDirectory(prefix="segment-") as workdir:
            return _segment_local(video, _local_copy(video.path, workdir), config)
    except decoders.DecodeError as exc:
        return SegmentResult([], [Outcome.for_video(candidate, reasons.STAGE_SEGMENT, reasons.FAILED, exc.reason,
                                                    exc.detail, duration_s=video.duration_s)])
    except Exception as exc:  # a bug or an unexpected library error: recorded, never raised past the stage
        detail = f"{type(exc).__name__}: {exc}"
        return SegmentResult([], [Outcome.for_video(candidate, reasons.STAGE_SEGMENT, reasons.FAILED,
                                                    reasons.SEGMENT_ERROR, detail, duration_s=video.duration_s)])


def _segment_local(video: DownloadedVideo, path: str, config: SegmentConfig) -> SegmentResult:
    candidate = video.candidate
    index = decoders.index_video(path)
    plan = frame_times.plan_windows(index.duration_s, config.clip_frames, config.stride_frames,
                                    config.skip_start_s, config.skip_end_s)
    seg, vid = reasons.STAGE_SEGMENT, video.video_id
    if not plan.windows:
        clip_s = config.clip_frames / frame_times.CLIP_FPS
        if index.duration_s < clip_s:
            reason, detail = reasons.TOO_SHORT, f"{index.duration_s:.2f} s is shorter than one {clip_s:g} s clip"
        else:
            reason, detail = reasons.NO_CLIPS, (f"{plan.usable_ticks / frame_times.CLIP_FPS:.1f} s left after "
                                                f"skipping {config.skip_start_s:g} s + {config.skip_end_s:g} s")
        return SegmentResult([], [Outcome.for_video(candidate, seg, reasons.DROPPED, reason, detail,
                                                    duration_s=index.duration_s)])
    notes = []
    actions = None
    if candidate.actions_url:
        try:
            actions = load_actions(candidate.actions_url)
        except Exception as exc:  # the clips are still good; the missing ground truth is noted on the video
            notes.append(f"actions sidecar unreadable ({type(exc).__name__}: {exc})")
    source_ticks = [frame_times.tick_of(p, index.time_base) for p in index.pts]
    frame_lists = [frame_times.frames_for_ticks(source_ticks, range(w.first_tick, w.first_tick + w.num_frames))
                   for w in plan.windows]
    size = decoders.decode_size(index, clip_codec.CLIP_WIDTH, clip_codec.CLIP_HEIGHT, config.fit)
    try:
        batches = decoders.decode_windows_decord(path, index, frame_lists, size)
        first = next(batches)
        backend = "decord"
    except Exception as exc:  # decord cannot open this codec/container: PyAV decodes it
        log.info("decord cannot decode %r (%s); using PyAV", vid, exc)
        batches = decoders.decode_windows_pyav(path, index, frame_lists, size)
        first = next(batches)
        backend = "pyav"
    clips = []
    for window, frames in zip(plan.windows, _chain_first(first, batches), strict=True):
        frames = decoders.to_output(frames, clip_codec.CLIP_WIDTH, clip_codec.CLIP_HEIGHT, config.fit)
        clips.append(Clip(
            clip_key=ids.clip_key(vid, window.start_s), video_id=vid, clip_index=window.index,
            start_s=window.start_s, end_s=window.end_s, num_frames=window.num_frames,
            fps=float(frame_times.CLIP_FPS), width=clip_codec.CLIP_WIDTH, height=clip_codec.CLIP_HEIGHT,
            mp4=clip_codec.encode_clip(frames, crf=config.crf),
            actions=clip_actions(actions, window.first_tick, window.num_frames) if actions is not None else None,
            video=candidate))
    outcomes = []
    if plan.tail is not None:
        tail = plan.tail
        outcomes.append(Outcome(
            item_id=ids.clip_key(vid, tail.start_s), item_kind=reasons.ITEM_CLIP, stage=seg,
            outcome=reasons.DROPPED, reason=reasons.SHORT_TAIL, video_id=vid, duration_s=tail.num_frames / 10,
            detail=f"{tail.num_frames / 10:.1f} s after the last full clip (needs {config.clip_frames / 10:g} s)"))
    detail = "; ".join([f"{len(clips)} clips via {backend} ({index.codec} {index.width}x{index.height}, "
                        f"rotation {index.rotation})", *notes])
    outcomes.append(Outcome.for_video(candidate, seg, reasons.KEPT, detail=detail, duration_s=index.duration_s))
    return SegmentResult(clips, outcomes)


def _chain_first(first, rest):
    yield first
    yield from rest


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
