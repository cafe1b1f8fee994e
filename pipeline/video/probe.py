"""Probe a stored video's stream facts with PyAV (the same FFmpeg libraries that decode it later).

The facts come from the file, not from the source's metadata: a search hit says "1080p" but the format
selector may have picked 360p, and a direct link says nothing at all. ``DownloadedVideo`` carries them so
the segment stage and the report can see codec, frame rate and size without reopening every file.

The display rotation is only exposed on decoded frames, so probing decodes the first frame: untrusted bytes
through a native decoder. The download stage therefore calls ``probe_file`` in an isolated child process
(``pipeline.video.isolation``, as segmentation does), so a decoder segfault or hang on a hostile download fails
that probe, not the Beam worker. ``ProbeError`` pickles with its reason, so it crosses the process boundary.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import av

from schemas import reasons


class ProbeError(Exception):
    """The file cannot be used as a video; ``reason`` is a ``schemas.reasons`` code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # the default re-creates exceptions from ``args`` (one string), not (reason, detail)
        return type(self), (self.reason, self.detail)


@dataclasses.dataclass(frozen=True)
class StreamFacts:
    """The first video stream's facts, named as ``DownloadedVideo``'s fields."""

    container: str
    codec: str
    fps: float | None
    width: int
    height: int
    duration_s: float | None
    rotation: int

    def as_fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _rotation(container: Any, stream: Any) -> int:
    """Display rotation in degrees, read from the first decoded frame (PyAV exposes it there)."""
    try:
        for frame in container.decode(stream):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except (av.FFmpegError, ValueError):  # decodability is the segment stage's question, not the probe's
        return 0
    return 0


def probe_file(path: str, read_rotation: bool = True) -> StreamFacts:
    """Open ``path`` (a local file) and describe its first video stream.

    Raises ``ProbeError`` with ``empty_file`` (0 bytes), ``corrupt_video`` (FFmpeg cannot open it) or
    ``no_video_stream`` (audio only, subtitles, an HTML error page...).
    """
    # Messages name the file by its base name: the caller probes a staging copy under a random directory,
    # and outcome details must not change from run to run (reruns reproduce outcomes.parquet byte for byte).
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise ProbeError(reasons.EMPTY_FILE, f"{name} is empty")
    try:
        container = av.open(path)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise ProbeError(reasons.CORRUPT_VIDEO, f"FFmpeg cannot open {name}: {str(exc).replace(path, name)}") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise ProbeError(reasons.NO_VIDEO_STREAM, f"{name} has no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate and float(rate) > 0 else None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = None
        return StreamFacts(
            container=container.format.name,
            codec=stream.codec_context.name,
            fps=fps,
            width=int(stream.codec_context.width or 0),
            height=int(stream.codec_context.height or 0),
            duration_s=duration_s,
            rotation=_rotation(container, stream) if read_rotation else 0,
        )
