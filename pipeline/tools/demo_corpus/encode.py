"""Write RGB frames as an H.264 mp4 the way internet video is stored (30 fps, yuv420p, faststart).

Why a writer of our own rather than ``schemas.clip_codec.encode_clip``: that codec holds a whole 16 s clip
in memory and fixes the clip format (160x90, 10 fps). The demo corpus streams minutes of 640x360 video
straight to disk, and shows each game step for several video frames, so the writer converts a step's
picture to yuv420p once and encodes it ``repeat`` times.

Determinism: x264 runs single-threaded (multi-threaded x264 is not bit-exact across runs) and the muxer
writes no wall-clock metadata, so two builds of the same plan produce byte-identical files.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    fps: int = 30  # video frame rate
    crf: int = 23  # x264 quality: 23 is x264's default, typical of web uploads
    preset: str = "veryfast"  # fast enough for the < 2 min default build on 2 cores
    gop: int = 60  # keyframe every 2 s, like streaming sites, so readers can seek cheaply


class H264Writer:
    """Stream frames into ``path`` (written as ``path + '.part'`` and renamed on a clean close)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int,
                 config: EncoderConfig = EncoderConfig()):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even frame sizes, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=config.fps)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = Fraction(1, config.fps)
        self._stream.codec_context.gop_size = config.gop
        self._stream.codec_context.thread_count = 1
        self._stream.options = {"crf": str(config.crf), "preset": config.preset, "threads": "1"}
        self.frames_written = 0

    def write(self, rgb: np.ndarray, repeat: int = 1) -> None:
        """Append ``rgb`` (H, W, 3) uint8 as ``repeat`` consecutive video frames."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        for _ in range(repeat):
            # the encoder takes its own reference to the frame, so re-sending it with a new pts is safe
            frame.pts = self.frames_written
            self._container.mux(self._stream.encode(frame))
            self.frames_written += 1

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
