"""Prompts for generation: frames the world model starts from, as float (1, P, 3, H, W) in [0, 1].

Genie (Section 3) prompts with one image (a screenshot, a photo, a sketch) or frames of a real clip. Every loader
brings its source to ``size`` = (height, width), the model's frame size, by the dataset pipeline's own rules:
- an image file (any size, mode or format): scaled to cover and centre-cropped (``fit="pad"``: fitted and padded
  with black), EXIF orientation applied, transparency laid over ``background`` (white: a sketch on a transparent
  canvas reads as strokes on paper); an animated image gives one frame per image frame;
- a video file: resampled to 10 FPS and scaled as the pipeline cuts clips (``schemas.frame_times``, ``decoders``);
- a shard clip, ``shard.tar#<key>`` (or ``shard.tar``: its first sample; local or a URL), decoded as stored and
  refused at another size (a model sees its training geometry only; resizing would blur it).
``start`` (a 10 FPS frame index) and ``num_frames`` (``None``: all) pick the frames; a mistake a user can fix
raises ``PromptError`` with a one-line message.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from modeling.data import to_float_video
from schemas import clip_format, decoders, frame_times, shard_source
from schemas.clip_codec import decode_clip
from schemas.clip_format import CLIP_HEIGHT, CLIP_WIDTH
from schemas.records import ShardSample

FITS = ("crop", "pad")
WHITE = (255, 255, 255)
CLIP_SIZE = (CLIP_HEIGHT, CLIP_WIDTH)  # (height, width) of the pipeline's clips: the default prompt size


class PromptError(ValueError):
    """A prompt that cannot be loaded as asked (missing file, unreadable image, unknown sample key, ...)."""


def load_prompt(source: str | os.PathLike, start: int = 0, num_frames: int | None = 1, fit: str = "crop",
                background: tuple[int, int, int] = WHITE, size: tuple[int, int] = CLIP_SIZE) -> torch.Tensor:
    """The prompt ``source`` names (see the module docstring) as float (1, P, 3, H, W) in [0, 1]."""
    frames = load_prompt_frames(source, start, num_frames, fit, background, size)
    return frames_to_prompt(frames)


def frames_to_prompt(frames: np.ndarray) -> torch.Tensor:
    """uint8 (P, H, W, 3) -> float (1, P, 3, H, W) in [0, 1]."""
    return to_float_video(torch.from_numpy(np.ascontiguousarray(frames))[None])


def load_prompt_frames(source: str | os.PathLike, start: int = 0, num_frames: int | None = 1, fit: str = "crop",
                       background: tuple[int, int, int] = WHITE, size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """The prompt ``source`` names as uint8 (P, H, W, 3) RGB frames, (H, W) = ``size``."""
    if fit not in FITS:
        raise PromptError(f"fit must be one of {FITS}, got {fit!r}")
    if start < 0 or (num_frames is not None and num_frames < 1):
        raise PromptError(f"prompt frames must start at >= 0 and number >= 1, got start={start} count={num_frames}")
    source = str(source)
    path, key = _split_shard_spec(source)
    if path is not None:
        return _clip_frames(path, key, start, num_frames, size)
    if not os.path.exists(source):
        raise PromptError(f"prompt file not found: {source}")
    if not os.path.isfile(source):
        raise PromptError(f"prompt must be a file, {source} is a directory")
    if os.path.getsize(source) == 0:
        raise PromptError(f"prompt file is empty: {source}")
    try:
        image = Image.open(source)
    except UnidentifiedImageError:
        return _video_frames(source, start, num_frames, fit, size)
    except OSError as exc:
        raise PromptError(f"cannot read {source}: {exc}") from None
    with image:
        return image_frames(image, start, num_frames, fit, background, name=source, size=size)


def load_image_bytes(data: bytes, fit: str = "crop", background: tuple[int, int, int] = WHITE,
                     size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """An uploaded image (its file bytes) as one uint8 (1, H, W, 3) frame: the play page's uploads and sketches."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise PromptError(f"not a readable image ({len(data)} bytes; expected PNG, JPEG, WebP, GIF, ...)") from None
    except OSError as exc:
        raise PromptError(f"not a readable image ({len(data)} bytes): {exc}") from None
    with image:
        return image_frames(image, 0, 1, fit, background, name="the uploaded image", size=size)


# ---- images ----------------------------------------------------------------------------------------------
def image_frames(image: Image.Image, start: int = 0, num_frames: int | None = 1, fit: str = "crop",
                 background: tuple[int, int, int] = WHITE, name: str = "the image",
                 size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """Frames ``start ..`` of a PIL image (one frame unless animated) as uint8 (P, H, W, 3)."""
    count = getattr(image, "n_frames", 1)
    stop = count if num_frames is None else start + num_frames
    if stop > count:
        raise PromptError(f"{name} has {count} frame(s); asked for frames {start}..{stop - 1}")
    out = []
    try:
        for i, frame in enumerate(ImageSequence.Iterator(image)):
            if start <= i < stop:
                out.append(image_to_frame(frame, fit, background, size))
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data surfaces on decode, not open
        raise PromptError(f"cannot decode {name}: {exc}") from None
    return np.stack(out)


def image_to_frame(image: Image.Image, fit: str = "crop", background: tuple[int, int, int] = WHITE,
                   size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """One image of any mode and size -> uint8 (H, W, 3) with the pipeline's scale-then-crop (or pad) geometry.

    Resampling is PIL's bicubic with antialiasing (a large photo shrinks without aliasing); the geometry is the
    pipeline's, so a screenshot and a frame of the same game's video land on the same pixels.
    """
    image = ImageOps.exif_transpose(image)
    rgba = image.convert("RGBA")  # palette transparency, LA and grayscale all go through RGBA
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    height, width = size
    scaled_size = decoders.scaled_size(rgb.width, rgb.height, width, height, fit)
    scaled = np.asarray(rgb.resize(scaled_size, Image.Resampling.BICUBIC))
    return decoders.to_output(scaled[None], width, height, fit)[0]


# ---- videos ----------------------------------------------------------------------------------------------
def _video_frames(path: str, start: int, num_frames: int | None, fit: str,
                  size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """10 FPS frames of a video file, chosen, scaled and cropped as the pipeline cuts clips."""
    try:
        index = decoders.index_video(path)
    except decoders.DecodeError as exc:
        raise PromptError(f"cannot read {path} as an image or a video ({exc.detail})") from None
    ticks_available = max(1, math.ceil(round(index.duration_s * clip_format.CLIP_FPS, 6)))
    stop = ticks_available if num_frames is None else start + num_frames
    if stop > ticks_available:
        raise PromptError(f"{path} has {ticks_available} frame(s) at {clip_format.CLIP_FPS} FPS; "
                          f"asked for frames {start}..{stop - 1}")
    source_ticks = [frame_times.tick_of(p, index.time_base) for p in index.pts]
    chosen = frame_times.frames_for_ticks(source_ticks, range(start, stop))
    height, width = size
    decode_size = decoders.decode_size(index, width, height, fit)
    try:
        frames = next(decoders.decode_windows_pyav(path, index, [chosen], decode_size))
    except decoders.DecodeError as exc:
        raise PromptError(f"cannot decode {path}: {exc.detail}") from None
    return decoders.to_output(frames, width, height, fit)


# ---- shard clips -----------------------------------------------------------------------------------------
def _split_shard_spec(source: str) -> tuple[str | None, str | None]:
    """(shard path or URL, sample key or None) for ``x.tar`` / ``x.tar#key``; (None, None) for anything else."""
    if source.endswith(".tar"):
        return source, None
    head, sep, key = source.rpartition("#")
    if sep and head.endswith(".tar"):
        return head, key or None
    return None, None


def _clip_frames(shard: str, key: str | None, start: int, num_frames: int | None,
                 size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    if not shard_source.is_remote(shard) and not os.path.isfile(shard):
        raise PromptError(f"shard not found: {shard}")
    sample, seen = None, []
    try:
        for raw in shard_source.raw_samples(shard):
            seen.append(raw["__key__"])
            if key is None or raw["__key__"] == key:
                sample = ShardSample.from_wds(raw)
                break
    except Exception as exc:  # tarfile, gopen and record errors: the shard itself is unusable
        raise PromptError(f"cannot read shard {shard}: {type(exc).__name__}: {exc}") from None
    if sample is None:
        if key is None:
            raise PromptError(f"shard {shard} holds no samples")
        listed = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "")
        raise PromptError(f"shard {shard} has no sample {key!r} ({len(seen)} samples: {listed})")
    total = sample.clip.num_frames
    stop = total if num_frames is None else start + num_frames
    if stop > total:
        raise PromptError(f"clip {sample.key} has {total} frames; asked for frames {start}..{stop - 1}")
    try:
        frames = decode_clip(sample.clip.mp4, start, stop - start)
    except (ValueError, av.error.FFmpegError) as exc:
        raise PromptError(f"cannot decode clip {sample.key} of {shard}: {exc}") from None
    if frames.shape[1:3] != tuple(size):
        raise PromptError(f"clip {sample.key} is {frames.shape[2]}x{frames.shape[1]}, the model takes "
                          f"{size[1]}x{size[0]} frames")
    return frames


def describe(source: str | os.PathLike) -> str:
    """A short label for a prompt source (file name and sample key) for logs and the play page."""
    path, key = _split_shard_spec(str(source))
    if path is not None:
        return f"{Path(path).name}#{key}" if key else Path(path).name
    return Path(str(source)).name
