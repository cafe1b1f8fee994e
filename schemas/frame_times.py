"""Which source frame becomes which clip frame: resampling to 10 FPS by presentation time, and clip windows.

The rule is ffmpeg's ``fps`` filter with its default rounding (``round=near``), so a clip matches ``ffmpeg -vf
fps=10`` on the same source (tests/pipeline/test_frame_exactness.py checks it against the binary):

    output tick n (time n/10 s) shows the LAST source frame whose timestamp, rounded to the nearest tick
    (halves up), is <= n; i.e. the last frame with  pts < (n + 1/2) / 10.

Frame k of a clip starting at ``start_s`` (on the 0.1 s grid) is tick ``round(start_s*10) + k`` (the first source
frame if none is that early). Timestamps are exact rationals (``pts * time_base``, first frame at 0): the rule has
exact ties (a 60 fps frame at 0.05 s is tick 1), and decord's float32 timestamps lose milliseconds after ~2 hours.
In ``schemas/`` because the pipeline cuts clips with it and ``modeling.prompts`` resamples prompt videos with it.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction

from schemas.clip_format import CLIP_FPS, CLIP_FRAMES


def tick_of(pts: int, time_base: Fraction, fps: int = CLIP_FPS) -> int:
    """The output tick a source timestamp rounds to (ffmpeg ``av_rescale_q_rnd`` with ``AV_ROUND_NEAR_INF``)."""
    scaled = Fraction(pts) * time_base * fps
    return int(scaled + Fraction(1, 2)) if scaled >= 0 else -int(-scaled + Fraction(1, 2))


def frames_for_ticks(source_ticks: Sequence[int], ticks: Sequence[int]) -> list[int]:
    """Index of the source frame shown at each output tick. ``source_ticks`` is sorted (presentation order)."""
    return [max(bisect.bisect_right(source_ticks, t) - 1, 0) for t in ticks]


@dataclasses.dataclass(frozen=True)
class Window:
    """One clip window on the ``fps`` grid (10 FPS by default): ticks ``first_tick .. first_tick + num_frames - 1``."""

    index: int
    first_tick: int
    num_frames: int
    fps: int = CLIP_FPS

    @property
    def start_s(self) -> float:
        return self.first_tick / self.fps

    @property
    def end_s(self) -> float:
        return (self.first_tick + self.num_frames) / self.fps


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    windows: list[Window]
    tail: Window | None  # what follows the last full window's end, dropped as ``short_tail``
    usable_ticks: int  # ticks between the skips, on the 10 FPS grid


def plan_windows(duration_s: float, clip_frames: int = CLIP_FRAMES, stride_frames: int | None = None,
                 skip_start_s: float = 0.0, skip_end_s: float = 0.0, fps: int = CLIP_FPS) -> WindowPlan:
    """Full clip windows covering ``[skip_start, duration - skip_end)`` (non-overlapping unless a stride is set),
    on the ``fps`` grid (clip_frames and stride_frames count frames at that rate).

    A window needs all of its ticks inside the video: tick t is inside when ``(t + 1)/fps <= duration``
    (a 15.99 s video has no full 16 s clip). Non-positive clip lengths or strides are refused: the loop below
    would never advance past ``end`` (``SegmentConfig`` refuses them too; this guards every other caller).
    """
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames!r}")
    if stride_frames is not None and stride_frames < 1:
        raise ValueError(f"stride_frames must be >= 1 (or None for non-overlapping), got {stride_frames!r}")
    if not (math.isfinite(skip_start_s) and math.isfinite(skip_end_s)) or skip_start_s < 0 or skip_end_s < 0:
        raise ValueError(f"skips must be finite and >= 0 s, got {skip_start_s!r} and {skip_end_s!r}")
    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps must be a whole number >= 1, got {fps!r}")
    stride = stride_frames or clip_frames
    first = round(skip_start_s * fps)
    # limit_denominator undoes binary float noise (16.1 s is 161 ticks, not 161.0000000000000142)
    end = max(math.floor(Fraction(duration_s - skip_end_s).limit_denominator(10**6) * fps), 0)
    usable = max(end - first, 0)
    windows: list[Window] = []
    tick = first
    while tick + clip_frames <= end:
        windows.append(Window(len(windows), tick, clip_frames, fps))
        tick += stride
    tail_start = windows[-1].first_tick + clip_frames if windows else first
    tail = Window(len(windows), tail_start, end - tail_start, fps) if end - tail_start > 0 else None
    return WindowPlan(windows, tail, usable)
