"""Index a video's frames exactly, and decode chosen frames at 160x90 with decord (PyAV as the fallback).

Why two passes: the index pass (PyAV demuxing packets, no decoding) gives exact integer timestamps and the
frame count, so which frames a clip needs is decided before anything is decoded; the decode pass then asks
decord for just those frames, one clip at a time (``get_batch``), so memory holds one clip's frames plus the
decoder's state however long the video is. decord cannot open some codecs (AV1 in its bundled FFmpeg); those
are decoded by PyAV (libdav1d), streaming in presentation order. Decoding scales straight to the size that
covers 160x90 with the source's aspect ratio (display aspect, after rotation), then crops the centre as
ffmpeg's ``scale=...:force_original_aspect_ratio=increase,crop=160:90`` does.

In ``schemas/`` because the pipeline's segmentation and the model's prompt loader (``modeling.prompts``: a
prompt image or video lands on the same pixels as a clip of it) share this geometry and these decoders.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction

import av
import numpy as np

from schemas import reasons


class DecodeError(Exception):
    """A video that cannot be turned into clips; ``reason`` is a ``schemas.reasons`` code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # pickles as (reason, detail), so it can come back from the isolated child
        return type(self), (self.reason, self.detail)


@dataclasses.dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame of a video's first video stream, in presentation order."""

    codec: str
    time_base: Fraction
    pts: list[int]  # sorted, relative to the first frame (first entry is 0)
    duration_s: float  # from the first frame to the end of the last one
    width: int  # coded size (before rotation)
    height: int
    rotation: int  # degrees counter-clockwise, as PyAV reports the display matrix (0, 90, 180, 270)

    @property
    def display_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


def index_video(path: str) -> FrameIndex:
    """Read the packet timestamps of ``path``'s video stream; raise ``DecodeError`` with a specific reason."""
    if os.path.getsize(path) == 0:
        raise DecodeError(reasons.EMPTY_FILE, "the file has 0 bytes")
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        cut = truncation(path)
        if cut:
            raise DecodeError(reasons.TRUNCATED_VIDEO, f"{cut} (cannot open container: {exc})") from None
        raise DecodeError(reasons.CORRUPT_VIDEO, f"cannot open container: {exc}") from None
    with container:
        if not container.streams.video:
            if container.streams.audio:
                raise DecodeError(reasons.AUDIO_ONLY, f"{len(container.streams.audio)} audio stream(s), no video")
            raise DecodeError(reasons.CORRUPT_VIDEO, "the container has no video or audio streams")
        stream = container.streams.video[0]
        codec_context = stream.codec_context
        codec = codec_context.codec.canonical_name if codec_context and codec_context.codec else "unknown"
        if stream.time_base is None:
            raise DecodeError(reasons.CORRUPT_VIDEO, "video stream has no time base")
        pts: list[int] = []
        durations: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    pts.append(packet.pts)
                    durations.append(packet.duration or 0)
        except av.error.FFmpegError as exc:
            cut = truncation(path)
            raise DecodeError(reasons.TRUNCATED_VIDEO if cut else reasons.CORRUPT_VIDEO,
                              f"demuxing failed after {len(pts)} frames: {exc} {cut}".strip()) from None
        if not pts:
            raise DecodeError(reasons.CORRUPT_VIDEO, "the video stream has no frames")
        expected = stream.frames
        if expected and len(pts) < expected:
            raise DecodeError(reasons.TRUNCATED_VIDEO, f"the index lists {expected} frames, the file holds {len(pts)}")
        rotation = _first_frame_rotation(path, codec)
        time_base = Fraction(stream.time_base)
        width, height = stream.codec_context.width, stream.codec_context.height
    order = sorted(range(len(pts)), key=pts.__getitem__)
    first = pts[order[0]]
    rel = [pts[i] - first for i in order]
    last_duration = durations[order[-1]] or (_median_step(rel) if len(rel) > 1 else 0)
    duration_s = float((rel[-1] + last_duration) * time_base)
    if width <= 0 or height <= 0:
        raise DecodeError(reasons.CORRUPT_VIDEO, f"video stream has no frame size ({width}x{height})")
    return FrameIndex(codec, time_base, rel, duration_s, width, height, rotation)


# Boxes an MP4/MOV/3GP file can start with; anything else is another format, whose bytes are no box sizes.
_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"sidx"})


def truncation(path: str) -> str:
    """Why an MP4/MOV file looks cut short ('' when it does not, or is not ISO-BMFF): a top-level box that
    runs past the end of the file. FFmpeg only says "invalid data" for these; the box walk says why."""
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if not kind.isalnum() and kind != b"free":
                return ""
            if offset == 0 and kind not in _FIRST_BOXES:  # not ISO-BMFF (NUT, Matroska, garbage that looks like it)
                return ""
            if box_size == 1:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:  # runs to the end of the file by definition
                return ""
            if box_size < 8:
                return ""
            if offset + box_size > size:
                return f"the {kind.decode('ascii', 'replace')!r} box needs {offset + box_size} bytes, the file has {size}"
            offset += box_size
    return ""


def _median_step(pts: Sequence[int]) -> int:
    steps = np.diff(np.asarray(pts[-200:]))
    return int(np.median(steps)) if len(steps) else 0


def _first_frame_rotation(path: str, codec: str) -> int:
    """Decode one frame (also proving the codec decodes at all) and read its display rotation."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            for frame in container.decode(stream):
                return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except av.error.DecoderNotFoundError:
        raise DecodeError(reasons.unsupported_codec(codec), f"no decoder for codec {codec!r}") from None
    except av.error.FFmpegError as exc:
        raise DecodeError(reasons.CORRUPT_VIDEO, f"the first frame does not decode: {exc}") from None
    except ValueError as exc:  # PyAV raises this when the codec context cannot open
        raise DecodeError(reasons.unsupported_codec(codec), str(exc)) from None
    raise DecodeError(reasons.CORRUPT_VIDEO, "no frame decodes")


# ---- geometry ------------------------------------------------------------------------------------------
def _rescale(a: int, b: int, c: int) -> int:
    """a * b / c rounded half away from zero, like FFmpeg's ``av_rescale``."""
    return int(Fraction(a * b, c) + Fraction(1, 2))


def scaled_size(src_w: int, src_h: int, out_w: int, out_h: int, fit: str = "crop") -> tuple[int, int]:
    """Size to scale a (display-oriented) frame to: covering ``out`` for ``crop``, inside it for ``pad``."""
    tmp_w, tmp_h = _rescale(out_h, src_w, src_h), _rescale(out_w, src_h, src_w)
    if fit == "crop":
        return max(tmp_w, out_w), max(tmp_h, out_h)
    if fit == "pad":
        return max(min(tmp_w, out_w), 1), max(min(tmp_h, out_h), 1)
    raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")


def centre_offset(size: int, out: int) -> int:
    """ffmpeg ``crop``'s default ``(in-out)/2``: rounded to nearest (even on ties), then down to an even pixel."""
    return round((size - out) / 2) & ~1


def to_output(frames: np.ndarray, out_w: int, out_h: int, fit: str) -> np.ndarray:
    """Centre-crop or centre-pad display-oriented (T, H, W, 3) frames to ``out_h x out_w``."""
    h, w = frames.shape[1:3]
    if fit == "crop":
        y, x = centre_offset(h, out_h), centre_offset(w, out_w)
        return np.ascontiguousarray(frames[:, y:y + out_h, x:x + out_w])
    out = np.zeros((frames.shape[0], out_h, out_w, 3), np.uint8)
    y, x = (out_h - h) // 2, (out_w - w) // 2
    out[:, y:y + h, x:x + w] = frames
    return out


def decode_size(index: FrameIndex, out_w: int, out_h: int, fit: str) -> tuple[int, int]:
    """The display-oriented (width, height) to decode to before the crop or pad."""
    return scaled_size(*index.display_size, out_w, out_h, fit)


# ---- decoding --------------------------------------------------------------------------------------------
DECORD_CHUNK = 64  # frames per get_batch call: bounds memory at high frame rates


def decode_windows_decord(path: str, index: FrameIndex, windows: Sequence[Sequence[int]],
                          size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Yield one display-oriented (T, h, w, 3) array per window of frame indices, one window at a time.

    decord applies the rotation itself and scales to the requested display-oriented size. Frames are read
    as *contiguous* ranges (the gap between consecutive windows included) and the needed ones picked here:
    ``get_batch`` on sparse indices takes decord's frame-skipping path, reported to return inconsistent
    frames (dmlc/decord#195); contiguous reads avoid it at no measurable cost here (benchmarks/segment_bench.py).
    """
    import decord

    reader = decord.VideoReader(path, width=size[0], height=size[1], num_threads=1, ctx=decord.cpu(0))
    if len(reader) != len(index.pts):
        raise DecodeError(reasons.CORRUPT_VIDEO,
                          f"decord sees {len(reader)} frames, the container index {len(index.pts)}")
    position = None  # the next frame a contiguous read continues from
    for frame_indices in windows:
        wanted = np.asarray(frame_indices)
        lo, hi = int(wanted.min()), int(wanted.max())
        start = position if position is not None and position <= lo else lo
        picked: dict[int, np.ndarray] = {}
        needed = set(wanted.tolist())
        for chunk_start in range(start, hi + 1, DECORD_CHUNK):
            chunk = list(range(chunk_start, min(chunk_start + DECORD_CHUNK, hi + 1)))
            batch = reader.get_batch(chunk).asnumpy()
            picked.update({i: batch[i - chunk_start] for i in chunk if i in needed})
        position = hi + 1
        yield np.stack([picked[i] for i in frame_indices])


def decode_windows_pyav(path: str, index: FrameIndex, windows: Sequence[Sequence[int]],
                        size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The same as ``decode_windows_decord`` by streaming every frame through PyAV in presentation order."""
    coded = (size[1], size[0]) if index.rotation % 180 else size
    turns = (index.rotation // 90) % 4  # PyAV reports the counter-clockwise angle; np.rot90 turns that way
    first_pts = None
    pts_to_index: dict[int, int] = {}
    window_iter = iter(windows)
    current = next(window_iter, None)
    if current is None:
        return
    buffer: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        position = -1
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    position += 1
                else:
                    if first_pts is None:
                        first_pts = frame.pts - index.pts[0]
                        pts_to_index = {p: i for i, p in enumerate(index.pts)}
                    position = pts_to_index.get(frame.pts - first_pts, position + 1)
                while current is not None:
                    if position in current and position not in buffer:
                        rgb = frame.reformat(width=coded[0], height=coded[1], format="rgb24",
                                             interpolation="BICUBIC").to_ndarray()
                        buffer[position] = np.rot90(rgb, k=turns) if turns else rgb
                    if position < max(current):
                        break
                    yield np.stack([buffer[i] for i in current])
                    current = next(window_iter, None)
                    keep = set(current or ())
                    buffer = {i: a for i, a in buffer.items() if i in keep}
                if current is None:
                    return
        except av.error.FFmpegError as exc:
            raise DecodeError(reasons.CORRUPT_VIDEO, f"decoding failed near frame {position}: {exc}") from None
    if current is not None:
        raise DecodeError(reasons.TRUNCATED_VIDEO, f"decoding ended at frame {position} of {len(index.pts)}")
