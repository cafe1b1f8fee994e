"""Tiny real WebDataset shards for the modeling tests: rendered clips with known actions, encoded with the
pipeline's own codec (``schemas.clip_codec.encode_clip``) and written by the pipeline's own shard writer
(``schemas.shard_writer.write_shard``: ``ShardSample`` records, sorted by key, deterministic tar headers).

Each clip shows a bright square on a coloured background; action k (0..3 = right, left, down, up) taken after
frame t moves the square by ``STEP_PX`` pixels to produce frame t+1, so ``actions[t]`` is the ground truth the
latent action model should recover. ``actions[-1]`` is -1 (no following frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas import ids
from schemas.clip_codec import encode_clip
from schemas.clip_format import CLIP_FPS, shard_name
from schemas.records import CandidateVideo, Clip, ShardSample
from schemas.shard_writer import write_shard

MOVES = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])  # (dy, dx) of actions 0..3: right, left, down, up
STEP_PX = 6
SQUARE_PX = 14


def render_clip(actions: np.ndarray, rng: np.random.Generator, height: int = 90, width: int = 160) -> np.ndarray:
    """Frames (len(actions), H, W, 3) uint8: a square moved by ``actions[t]`` between frames t and t+1."""
    frames = np.empty((len(actions), height, width, 3), np.uint8)
    background = rng.integers(30, 120, size=3)
    colour = rng.integers(160, 256, size=3)
    y, x = rng.integers(0, height - SQUARE_PX), rng.integers(0, width - SQUARE_PX)
    for t in range(len(actions)):
        frames[t] = background
        frames[t, y:y + SQUARE_PX, x:x + SQUARE_PX] = colour
        if actions[t] >= 0:
            dy, dx = MOVES[actions[t]] * STEP_PX
            y = int(np.clip(y + dy, 0, height - SQUARE_PX))
            x = int(np.clip(x + dx, 0, width - SQUARE_PX))
    return frames


def make_sample(index: int, frames: int, rng: np.random.Generator, height: int = 90, width: int = 160,
                video_id: str | None = None) -> ShardSample:
    actions = rng.integers(0, len(MOVES), size=frames)
    actions[-1] = -1
    pixels = render_clip(actions, rng, height, width)
    vid = video_id or f"tiny{index:04d}"
    video = CandidateVideo(video_id=vid, source="catalog", url=f"file:///tiny/{vid}.mp4", title=f"tiny clip {index}")
    clip = Clip(clip_key=ids.clip_key(vid, 0.0), video_id=vid, clip_index=0, start_s=0.0,
                end_s=frames / CLIP_FPS, num_frames=frames, fps=float(CLIP_FPS), width=width, height=height,
                mp4=encode_clip(pixels), actions=[int(a) for a in actions], video=video, quality_score=0.9)
    return ShardSample.from_clip(clip)


def write_tiny_shards(directory: str | Path, n_clips: int, frames: int = 32, clips_per_shard: int = 4,
                      seed: int = 0, height: int = 90, width: int = 160) -> list[str]:
    """Write ``n_clips`` rendered clips into ``directory/shard-%05d.tar``; returns the shard paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for start in range(0, n_clips, clips_per_shard):
        path = str(directory / shard_name(start // clips_per_shard))
        write_shard(path, [make_sample(i, frames, rng, height, width).clip
                           for i in range(start, min(start + clips_per_shard, n_clips))])
        paths.append(path)
    return paths
