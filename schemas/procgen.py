"""The Procgen environment as the CoinRun dataset and behaviour cloning play it, and its streams cut into clips.

``python -m pipeline procgen-dataset`` writes levels played by a policy; ``modeling.bc`` plays the same levels
with an expert and with trained agents. Both must see a level identically (same Procgen seed per level, same
frames, same clip keys), so the environment and the cutting live here, below both, and free of Beam.

Procgen itself is imported only when an environment is made: importing it pulls in gym, which prints a banner,
and users of ``schemas`` that never play a level do not need it installed.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from schemas import clip_format, ids
from schemas.clip_codec import encode_clip
from schemas.records import Clip

NATIVE_SIZE = 64  # Procgen's observation is 64x64 RGB
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")


def level_range(text: str) -> tuple[int, int]:
    """``A-B`` (inclusive) or a single level ``A``: an argparse type for level seeds."""
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a level range A-B, got {text!r}") from None
    if lo < 0 or hi < lo or hi >= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"expected levels 0 <= A <= B < 2^31-1, got {text!r}")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class LevelStream:
    """How a level is played (game, mode, seed, frame size) and how its frames are cut into clips."""

    game: str  # Procgen game name, e.g. "coinrun"
    distribution_mode: str  # one of DISTRIBUTION_MODES
    seed: int = 0  # with the level, fixes Procgen's seed (level_seed) and the seeds of whoever plays it
    width: int = NATIVE_SIZE  # other sizes than 64x64 box-filter Procgen's 512x512 render
    height: int = NATIVE_SIZE
    fps: float = float(clip_format.CLIP_FPS)  # recorded in the clips (Procgen has no clock)
    clip_frames: int = clip_format.CLIP_FRAMES  # frames per clip
    min_clip_frames: int = 1  # a stream's last, shorter piece is kept when at least this long

    @property
    def native(self) -> bool:
        """Frames are Procgen's own observation (no render, no resize)."""
        return (self.width, self.height) == (NATIVE_SIZE, NATIVE_SIZE)


def level_seed(seed: int, level: int) -> int:
    """Procgen's ``rand_seed`` for a level: fixed by (seed, level), so a level plays the same on every run."""
    return int(np.random.SeedSequence([seed, level]).generate_state(1)[0] % (2**31 - 1))


def level_video_id(game: str, level: int) -> str:
    return f"procgen-{game}-level{level:06d}"


def make_env(stream: LevelStream, level: int):
    """A one-environment Procgen stream of ``level`` alone (an episode that ends restarts the same level)."""
    from procgen import ProcgenGym3Env

    return ProcgenGym3Env(num=1, env_name=stream.game, distribution_mode=stream.distribution_mode,
                          start_level=level, num_levels=1, rand_seed=level_seed(stream.seed, level),
                          render_mode=None if stream.native else "rgb_array")


def observe_frame(env, stream: LevelStream) -> np.ndarray:
    """The current frame (H, W, 3) uint8 of a ``make_env`` environment, at the stream's size."""
    if stream.native:
        return env.observe()[1]["rgb"][0]
    return resize(env.get_info()[0]["rgb"], stream.width, stream.height)


def resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 512x512 render box-filtered to ``width`` x ``height`` (each output pixel averages the pixels it covers)."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))


def stream_clips(stream: LevelStream, level: int, frames: np.ndarray, actions: np.ndarray) -> list[Clip]:
    """One level's stream (frames (N, H, W, 3) uint8, ``actions[k]`` taken after frame k) cut into encoded clips
    of ``stream.clip_frames``; a last piece shorter than ``stream.min_clip_frames`` is dropped. Lossless: the
    decoded frames equal the played ones bit for bit."""
    video_id = level_video_id(stream.game, level)
    clips = []
    for index, start in enumerate(range(0, len(frames), stream.clip_frames)):
        stop = min(start + stream.clip_frames, len(frames))
        if stop - start < stream.min_clip_frames:
            break
        start_s = start / stream.fps
        clips.append(Clip(
            clip_key=ids.clip_key(video_id, start_s), video_id=video_id, clip_index=index, start_s=start_s,
            end_s=stop / stream.fps, num_frames=stop - start, fps=stream.fps, width=stream.width,
            height=stream.height, mp4=encode_clip(frames[start:stop], fps=round(stream.fps), lossless=True),
            actions=[int(a) for a in actions[start:stop]]))
    return clips
