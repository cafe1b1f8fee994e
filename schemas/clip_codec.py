"""Encode and decode the stored clip format: H.264 mp4, 160x90, 10 FPS, yuv420p.

The pipeline writes it and the classifier and model loaders read it, so it lives in ``schemas/`` with the rest of
the data contract (settings in ``schemas.clip_format``) and none of them imports another's package for it.

Encoding is deterministic, the same bytes on every run and every x86-64 CPU with AVX: x264 single-threaded with
the macroblock tree off (``clip_format.X264_OPTIONS``), no wall-clock metadata in the mp4
(docs/measurements/2026-11-25-x264-determinism.md). A short keyframe interval (``DEFAULT_GOP``) bounds a random
window's decode to at most ``gop - 1`` extra frames. ``lossless=True`` (``libx264rgb`` at qp 0) stores RGB exactly,
for pixel art such as Procgen's 64x64 frames, which yuv420p's halved chroma blurs at any CRF; PyAV and decord
both read it.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from schemas.clip_format import CLIP_FPS, DEFAULT_CRF, DEFAULT_GOP, DEFAULT_PRESET, X264_OPTIONS


def encode_clip(frames: np.ndarray, fps: int = CLIP_FPS, crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP,
                preset: str = DEFAULT_PRESET, lossless: bool = False) -> bytes:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB as an H.264 mp4 and return its bytes (``crf`` is ignored when
    ``lossless``: RGB at qp 0, decoded back to exactly ``frames``)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {frames.shape[2]}x{frames.shape[1]}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264rgb" if lossless else "libx264", rate=fps)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1  # x264's decisions depend on its thread count: pin it
        quality = {"qp": "0"} if lossless else {"crf": str(crf)}
        stream.options = {**X264_OPTIONS, **quality, "preset": preset, "keyint_min": str(gop)}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_clip(data: bytes, start: int = 0, count: int | None = None) -> np.ndarray:
    """Decode frames ``start .. start+count-1`` of a clip (all from ``start`` when ``count`` is None).

    Seeks to the keyframe at or before ``start`` so only the needed window (plus at most one GOP) is
    decoded. Returns (N, H, W, 3) uint8 RGB; raises ``ValueError`` when the clip has fewer frames.
    """
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"bad window start={start} count={count}")
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        rate = stream.average_rate or Fraction(CLIP_FPS)
        first_pts = stream.start_time or 0
        if start > 0:
            target = first_pts + int(round(start / rate / time_base))
            container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = int(round((frame.pts - first_pts) * time_base * rate))
            if index < start:
                continue
            # One scaling thread: a small frame gains nothing from swscale's slice threads, and a decode in a
            # forked DataLoader worker was seen to wait on them forever.
            out.append(frame.to_ndarray(format="rgb24", threads=1))
            if count is not None and len(out) == count:
                break
    if count is not None and len(out) < count:
        raise ValueError(f"clip has too few frames for window start={start} count={count} (got {len(out)})")
    if not out:
        raise ValueError(f"clip has no frames at or after {start}")
    return np.stack(out)
