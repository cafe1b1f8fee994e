"""Cut one video into clips: the per-video work of the segment stage, free of Beam.

Per video: index the frames (exact timestamps, no decoding) -> plan the clip windows on the 10 FPS grid ->
decode each window's frames (decord; PyAV for codecs decord cannot open) -> crop/pad -> encode as H.264. One window
is in memory at a time. This module imports no Beam so that the isolated child process that runs it
(``pipeline.video.isolation``; one per worker, restarted after a crash) starts in ~0.1 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from pipeline.cli import cli_types
from pipeline.cli.options import derived, option
from pipeline.io.clip_store import reference
from schemas import (
    Clip,
    DownloadedVideo,
    Outcome,
    clip_codec,
    clip_format,
    decoders,
    frame_times,
    ids,
    reasons,
)

log = logging.getLogger(__name__)
CACHE_VERSION = 4  # bump when the clip bytes or the entry format change (4: bytes in a pack, clips by reference)
DEFAULT_GEOMETRY = (clip_format.CLIP_WIDTH, clip_format.CLIP_HEIGHT, clip_format.CLIP_FPS)  # 160x90 at 10 FPS


def _frames_arg(text: str) -> float:
    """argparse type for --clip-seconds/--clip-stride-s: at least one 10 FPS frame (0 or less would make the
    window planner loop forever; refusing it here names the flag instead of hanging the run)."""
    value = cli_types.seconds(text)
    if seconds_to_frames(value) < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0.1 s (one frame at 10 FPS), got {text!r}")
    return value


def _clip_size(text: str) -> tuple[int, int]:
    """argparse type for --clip-size: 'WxH', both even (H.264 yuv420p) and >= 2."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"must look like WIDTHxHEIGHT (e.g. 160x90 or 64x64), got {text!r}")
    size = int(width), int(height)
    if min(size) < 2 or size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"width and height must be even and >= 2 (H.264 yuv420p), got {text!r}")
    return size


def _frames(seconds: float | None, flags) -> int | None:
    """A flag in seconds as frames at the clips' ``--clip-fps`` (None stays None)."""
    return None if seconds is None else seconds_to_frames(seconds, flags["--clip-fps"])


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    """How videos are cut; each flag of the segment stage is declared on the field it sets (``pipeline.cli.options``)."""

    # Clip geometry: the paper's Platformers clips by default; Appendix F's CoinRun is 64x64. Recorded in every
    # Clip (width, height, fps), hence in each shard sample's JSON and in the manifest.
    clip_width: int = option(
        "--clip-size", type=_clip_size, default=clip_format.CLIP_WIDTH,
        flag_default=(clip_format.CLIP_WIDTH, clip_format.CLIP_HEIGHT), to_field=lambda size, _: size[0],
        metavar="WxH", help="clip frame size (default 160x90, the paper's Platformers clips; its CoinRun case study "
                            "uses 64x64); recorded in every clip's metadata")
    clip_height: int = derived(lambda flags: flags["--clip-size"][1], default=clip_format.CLIP_HEIGHT)
    clip_fps: int = option("--clip-fps", type=cli_types.integer(1, 240, "clip "), default=clip_format.CLIP_FPS,
                           help="clip frame rate (default 10); --clip-seconds and --clip-stride-s stay in seconds")
    clip_frames: int = option(  # 16 s at 10 FPS (frames at clip_fps)
        "--clip-seconds", type=_frames_arg, default=clip_format.CLIP_FRAMES, flag_default=float(clip_format.CLIP_SECONDS),
        to_field=_frames,
        help="clip length (default 16 s = 160 frames)")
    stride_frames: int | None = option(  # None: non-overlapping windows
        "--clip-stride-s", type=_frames_arg, default=None, to_field=_frames,
        help="start a clip every N s (default: the clip length, i.e. non-overlapping)")
    skip_start_s: float = option("--skip-start-s", type=cli_types.seconds, default=0.0,
                                 help="skip this much of every video (intros)")
    skip_end_s: float = option("--skip-end-s", type=cli_types.seconds, default=0.0,
                               help="skip this much at the end (outros)")
    fit: str = option(  # "crop": cover the clip size and crop the centre; "pad": fit inside and pad with black
        "--fit", choices=("crop", "pad"), default="crop",
        help="crop: cover the clip size and centre-crop (default); pad: fit inside and pad")
    decoder: str = option(  # "decord" (PyAV still decodes what decord cannot open) or "pyav" for everything
        "--decoder", choices=("decord", "pyav"), default="decord",
        help="decord (default; PyAV takes over for codecs decord cannot open, e.g. AV1) or pyav for every video")
    # decord's demuxer reads ahead into an unbounded packet queue: its memory grows to about the FILE SIZE
    # (+660 MB for a 660 MB file: docs/measurements/2026-12-01-decoder-memory.md), so bigger files go to PyAV,
    # which streams in flat memory at about the same speed. 0 sends every file to PyAV.
    decord_max_mb: float = option(
        "--decord-max-mb", type=cli_types.non_negative("MB"), default=256.0, metavar="MB",
        help="decode files larger than this with PyAV (decord's memory grows to about the file size; PyAV streams "
             "in flat memory); default 256, 0 = PyAV for every file")
    x264_preset: str = option(  # x264 speed/size trade-off of the stored clips
        "--x264-preset", choices=clip_format.X264_PRESETS, default=clip_format.DEFAULT_PRESET,
        help="x264 preset of the stored clips (default %(default)s: half medium's encode time at the same bytes, "
             "-0.2 dB)")
    crf: int = option(  # x264 quality of the stored clips (docs/pipeline.md has the table)
        "--crf", type=cli_types.integer(0, 51, "x264's "), default=clip_format.DEFAULT_CRF,
        help="x264 CRF of the stored clips")
    isolate: bool = option(  # decode in a child process (a decoder segfault fails one video, not the worker)
        "--no-isolation", action="store_false", dest="isolate", default=True,
        help="decode (and probe downloads) in the worker process itself (faster to start; a decoder crash kills it)")
    video_timeout_s: float = option(  # a video whose segmentation takes longer fails as decoder_crash
        "--video-timeout-s", type=cli_types.positive("s"), default=3600.0,
        help="fail a video whose segmentation takes longer than this")
    cache_dir: str = ""  # per-video results kept here make reruns skip decoding ("" disables); the clip store
    # delete a video's downloaded file under this directory once its result is committed to the cache
    # ("" keeps every download; pipeline.retention)
    delete_sources_in: str = ""

    def __post_init__(self) -> None:
        """Refuse settings that cannot cut clips, here rather than per video: a zero clip length or a
        non-positive stride would make ``frame_times.plan_windows`` loop forever on every video."""
        if not isinstance(self.clip_frames, int) or self.clip_frames < 1:
            raise ValueError(f"clip length must be at least 1 frame (at {self.clip_fps} FPS), "
                             f"got {self.clip_frames!r} frames")
        if not isinstance(self.clip_fps, int) or self.clip_fps < 1:
            raise ValueError(f"clip fps must be a whole number >= 1, got {self.clip_fps!r}")
        for name in ("clip_width", "clip_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2 or value % 2:
                raise ValueError(f"{name} must be an even number of pixels >= 2 (H.264 yuv420p), got {value!r}")
        if self.stride_frames is not None and (not isinstance(self.stride_frames, int) or self.stride_frames < 1):
            raise ValueError(f"clip stride must be at least 1 frame, got {self.stride_frames!r} frames")
        for name in ("skip_start_s", "skip_end_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"fit must be 'crop' or 'pad', got {self.fit!r}")
        if self.decoder not in ("decord", "pyav"):
            raise ValueError(f"decoder must be 'decord' or 'pyav', got {self.decoder!r}")
        if not math.isfinite(self.decord_max_mb) or self.decord_max_mb < 0:
            raise ValueError(f"decord_max_mb must be a finite number >= 0, got {self.decord_max_mb!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be within x264's 0..51, got {self.crf!r}")
        if self.x264_preset not in clip_format.X264_PRESETS:
            raise ValueError(f"x264 preset must be one of {clip_format.X264_PRESETS}, got {self.x264_preset!r}")
        if not self.video_timeout_s > 0:
            raise ValueError(f"video timeout must be > 0 s, got {self.video_timeout_s!r}")

    def fingerprint(self) -> str:
        """What the clip bytes depend on (not isolation, timeout, the cache location or source retention)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("isolate", "video_timeout_s", "cache_dir", "delete_sources_in")}
        if self.clip_geometry == DEFAULT_GEOMETRY:  # the default geometry keeps the keys cached before the flags
            for name in ("clip_width", "clip_height", "clip_fps"):
                del fields[name]
        fields["version"] = CACHE_VERSION
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def clip_geometry(self) -> tuple[int, int, int]:
        """(width, height, fps) of the clips this config cuts."""
        return self.clip_width, self.clip_height, self.clip_fps


def seconds_to_frames(seconds: float, fps: int = clip_format.CLIP_FPS) -> int:
    """A duration in seconds as a whole number of frames at ``fps`` (0.04 s at 10 FPS rounds to 0: not usable)."""
    return round(seconds * fps)


@dataclasses.dataclass
class SegmentResult:
    clips: list[Clip]
    outcomes: list[Outcome]


# ---- actions sidecar -------------------------------------------------------------------------------------
def read_sidecar(url: str) -> bytes:
    """The raw bytes of an actions sidecar (local path, file:// or any Beam filesystem URL)."""
    return _read(url[len("file://"):] if url.startswith("file://") else url)


def load_actions(url: str, fps: int = clip_format.CLIP_FPS) -> list[int]:
    """The ``actions`` list of a sidecar JSON (local path, file:// or any Beam filesystem URL); its steps must be
    at the clips' ``fps``."""
    data = json.loads(read_sidecar(url))
    actions = data["actions"]
    if not isinstance(actions, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in actions):
        raise ValueError("'actions' must be a list of integers")
    if data.get("step_fps", clip_format.CLIP_FPS) != fps:
        raise ValueError(f"step_fps is {data.get('step_fps', clip_format.CLIP_FPS)}, clips are {fps} FPS")
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
    from apache_beam.io.filesystems import FileSystems  # only for remote files: keeps the child's start cheap

    from pipeline.io import storage

    local = os.path.join(workdir, "video")

    def copy() -> None:
        with FileSystems.open(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    storage.retrying(f"reading {path}", copy)
    return local


def _read(path: str) -> bytes:
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def segment_video(video: DownloadedVideo, config: SegmentConfig, pack_path: str = "") -> SegmentResult:
    """Clips and outcomes of one video. Never raises for a bad video: its failure is an Outcome.

    With ``pack_path`` (a local file) each clip's mp4 is appended there as soon as it is encoded and the clip
    comes back as a reference (``location`` ``#offset:size``, no bytes): memory stays one window's worth
    however long the video (the clip store, ``pipeline.io.clip_store``). Without it the clips hold their bytes.
    """
    candidate = video.candidate
    try:
        with tempfile.TemporaryDirectory(prefix="segment-") as workdir:
            if not pack_path:
                return _segment_local(video, _local_copy(video.path, workdir), config, None)
            with open(pack_path, "wb") as pack:
                return _segment_local(video, _local_copy(video.path, workdir), config, pack)
    except decoders.DecodeError as exc:
        return SegmentResult([], [Outcome.for_video(candidate, reasons.STAGE_SEGMENT, reasons.FAILED, exc.reason,
                                                    exc.detail, duration_s=video.duration_s)])
    except Exception as exc:  # a bug or an unexpected library error: recorded, never raised past the stage
        detail = f"{type(exc).__name__}: {exc}"
        reason = reasons.STORAGE_ERROR if type(exc).__name__ == "StorageFailed" else reasons.SEGMENT_ERROR
        return SegmentResult([], [Outcome.for_video(candidate, reasons.STAGE_SEGMENT, reasons.FAILED,
                                                    reason, detail, duration_s=video.duration_s)])


def _stored(clip: Clip, pack) -> Clip:
    """``clip`` with its bytes appended to ``pack`` and replaced by a reference (unchanged without a pack)."""
    if pack is None:
        return clip
    offset = pack.tell()
    pack.write(clip.mp4)
    return clip.replace(mp4=None, location=reference("", offset, len(clip.mp4)))


def _segment_local(video: DownloadedVideo, path: str, config: SegmentConfig, pack) -> SegmentResult:
    candidate = video.candidate
    index = decoders.index_video(path)
    fps = config.clip_fps
    plan = frame_times.plan_windows(index.duration_s, config.clip_frames, config.stride_frames,
                                    config.skip_start_s, config.skip_end_s, fps)
    seg, vid = reasons.STAGE_SEGMENT, video.video_id
    if not plan.windows:
        clip_s = config.clip_frames / fps
        if index.duration_s < clip_s:
            reason, detail = reasons.TOO_SHORT, f"{index.duration_s:.2f} s is shorter than one {clip_s:g} s clip"
        else:
            reason, detail = reasons.NO_CLIPS, (f"{plan.usable_ticks / fps:.1f} s left after "
                                                f"skipping {config.skip_start_s:g} s + {config.skip_end_s:g} s")
        return SegmentResult([], [Outcome.for_video(candidate, seg, reasons.DROPPED, reason, detail,
                                                    duration_s=index.duration_s)])
    notes = []
    actions = None
    if candidate.actions_url:
        try:
            actions = load_actions(candidate.actions_url, fps)
        except Exception as exc:  # the clips are still good; the missing ground truth is noted on the video
            notes.append(f"actions sidecar unreadable ({type(exc).__name__}: {exc})")
    backend, clip_frames = decode_clips(path, index, plan.windows, config)
    clips = []
    for window, frames in zip(plan.windows, clip_frames, strict=True):
        clips.append(_stored(Clip(
            clip_key=ids.clip_key(vid, window.start_s), video_id=vid, clip_index=window.index,
            start_s=window.start_s, end_s=window.end_s, num_frames=window.num_frames,
            fps=float(fps), width=config.clip_width, height=config.clip_height,
            mp4=clip_codec.encode_clip(frames, fps=fps, crf=config.crf, preset=config.x264_preset),
            actions=clip_actions(actions, window.first_tick, window.num_frames) if actions is not None else None,
            video=candidate), pack))
    outcomes = []
    if plan.tail is not None:
        tail = plan.tail
        outcomes.append(Outcome(
            item_id=ids.clip_key(vid, tail.start_s), item_kind=reasons.ITEM_CLIP, stage=seg,
            outcome=reasons.DROPPED, reason=reasons.SHORT_TAIL, video_id=vid, duration_s=tail.num_frames / fps,
            detail=f"{tail.num_frames / fps:.1f} s after the last full clip (needs {config.clip_frames / fps:g} s)"))
    detail = "; ".join([f"{len(clips)} clips via {backend} ({index.codec} {index.width}x{index.height}, "
                        f"rotation {index.rotation})", *notes])
    outcomes.append(Outcome.for_video(candidate, seg, reasons.KEPT, detail=detail, duration_s=index.duration_s))
    return SegmentResult(clips, outcomes)


def decode_clips(path: str, index: decoders.FrameIndex, windows: Sequence[frame_times.Window],
                 config: SegmentConfig) -> tuple[str, Iterator[np.ndarray]]:
    """The decoder used and each window's RGB frames (T, clip_height, clip_width, 3), one window at a time.

    Frames are picked on the ``clip_fps`` grid by presentation time, decoded by decord (PyAV when decord cannot
    open the file, e.g. AV1, or when the file is over ``config.decord_max_mb``) and cropped or padded to the clip
    size (160x90 by default):
    exactly the frames ``segment_video`` encodes.
    """
    if not windows:
        return config.decoder, iter(())
    # One int64 per source frame, and each window's frame list made when its turn comes: the per-frame
    # bookkeeping of a 3-hour video is a few MB, not Python lists of every tick and every window's frames.
    source_ticks = np.fromiter((frame_times.tick_of(p, index.time_base, config.clip_fps) for p in index.pts),
                               dtype=np.int64, count=len(index.pts))
    frame_lists = (_frames_for_window(source_ticks, w) for w in windows)
    size = decoders.decode_size(index, config.clip_width, config.clip_height, config.fit)
    backend = decoder_for(path, config)
    if backend == "decord":
        try:
            batches = decoders.decode_windows_decord(path, index, frame_lists, size)
            first = next(batches)
        except Exception as exc:  # decord cannot open this codec/container (AV1): PyAV decodes it
            log.info("decord cannot decode %s (%s); using PyAV", path, exc)
            backend = "pyav"
    if backend == "pyav":
        batches = decoders.decode_windows_pyav(path, index, frame_lists, size)
        first = next(batches)
    return backend, (decoders.to_output(frames, config.clip_width, config.clip_height, config.fit)
                     for frames in _chain_first(first, batches))


def _frames_for_window(source_ticks: np.ndarray, window: frame_times.Window) -> list[int]:
    """``frame_times.frames_for_ticks`` for one window on a sorted array (``searchsorted`` is its bisect)."""
    ticks = np.arange(window.first_tick, window.first_tick + window.num_frames)
    return np.maximum(np.searchsorted(source_ticks, ticks, side="right") - 1, 0).tolist()


def decoder_for(path: str, config: SegmentConfig) -> str:
    """The decoder to try first: ``config.decoder``, except PyAV for files decord would hold in memory whole."""
    if config.decoder == "decord" and os.path.getsize(path) > config.decord_max_mb * 1024 * 1024:
        return "pyav"
    return config.decoder


def _chain_first(first, rest):
    yield first
    yield from rest


