"""Synthetic test videos, encoded for real with PyAV (and remuxed with the ffmpeg binary where PyAV cannot).

Frames show a smooth pattern that moves fast with *time* (not frame index), so two different source frames
differ by far more than the error of one scaler versus another: a test that picks the wrong source frame
fails its PSNR check, one that picks the right frame passes it whatever the scaler.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FFMPEG = shutil.which("ffmpeg")


def pattern_frame(t: float, width: int, height: int) -> np.ndarray:
    """An RGB frame for time ``t`` seconds: moving diagonal bands and a bar that crosses the frame every 1 s."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / max(width, 1), y / max(height, 1)
    phase = 2 * np.pi * t * 2.3
    r = 127 + 100 * np.sin(2 * np.pi * (u * 2 + v) + phase)
    g = 127 + 100 * np.sin(2 * np.pi * (v * 3 - u) - 1.7 * phase)
    b = 127 + 100 * np.cos(2 * np.pi * (u + v) * 1.5 + 0.6 * phase)
    bar = np.abs(u - (t % 1.0)) < 0.06
    r = np.where(bar, 250, r)
    g = np.where(bar, 250, g)
    b = np.where(bar, 20, b)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def write_video(path: str | Path, *, fps: float | Fraction = 30, duration_s: float = 2.0, width: int = 320,
                height: int = 180, codec: str = "libx264", times_s: Sequence[float] | None = None,
                audio: bool = False, gop: int = 30, bframes: int = 0) -> Path:
    """Encode a test video. ``times_s`` gives explicit (variable-rate) presentation times instead of ``fps``;
    ``bframes`` > 0 lets x264 use B-frames (decode order then differs from presentation order)."""
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    if times_s is None:
        n = int(round(duration_s * rate))
        times_s = [float(i / rate) for i in range(n)]
    time_base = Fraction(1, 90000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate if codec != "libsvtav1" else int(round(rate)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base  # keeps variable-rate timestamps exact
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "veryfast", "bf": str(bframes), "threads": "1"}
        astream = container.add_stream("aac", rate=16000) if audio else None
        for t in times_s:
            frame = av.VideoFrame.from_ndarray(pattern_frame(t, width, height), format="rgb24")
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            _write_tone(container, astream, max(times_s) if times_s else 0.0)
    return path


def _write_tone(container, stream, duration_s: float) -> None:
    samples = int(duration_s * 16000)
    t = np.arange(samples) / 16000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    pts = 0
    for start in range(0, samples, 1024):
        chunk = tone[start:start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = pts
        pts += len(chunk)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio_only(path: str | Path, duration_s: float = 2.0) -> Path:
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        _write_tone(container, stream, duration_s)
    return path


def with_rotation(src: str | Path, dst: str | Path, degrees: int) -> Path:
    """Remux ``src`` with a display-rotation tag (ffmpeg binary: PyAV cannot write the display matrix)."""
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", "-metadata:s:v:0",
                    f"rotate={degrees}", str(dst)], check=True)
    return Path(dst)


def write_undecodable(path: str | Path, duration_s: float = 2.0) -> Path | None:
    """A real video stream no decoder here can decode: Commodore 64 multicolour (``a64multi``, an encoder-only
    codec in FFmpeg) in a NUT container. None when the ffmpeg binary lacks that encoder."""
    path = Path(path)
    done = subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                           f"testsrc=size=320x200:rate=10:duration={duration_s}", "-c:v", "a64multi", "-f", "nut",
                           str(path)], capture_output=True) if FFMPEG else None
    return path if done is not None and done.returncode == 0 and path.stat().st_size > 0 else None


def has_b_frames(path: str | Path) -> bool:
    """Whether the first video stream's packets arrive out of presentation order (B-frames)."""
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None]
    return any(b < a for a, b in zip(pts, pts[1:], strict=False))


def truncate(src: str | Path, dst: str | Path, keep_fraction: float) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(dst)


def ffmpeg_frames(path: str | Path, vf: str, width: int = 160, height: int = 90) -> np.ndarray:
    """Frames the ffmpeg binary produces with the filter chain ``vf`` (autorotation on), as (N, H, W, 3) RGB."""
    out = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-vf", vf, "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
