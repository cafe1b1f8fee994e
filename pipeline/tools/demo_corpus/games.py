"""Gameplay from a real game engine: Procgen's games rendered at 512x512, played by a "sticky" random policy.

Why Procgen: its platformers (CoinRun, Jumper, Ninja, Climber) are the games the Genie paper's CoinRun
experiments use, they render real sprites, backgrounds and physics, they run at ~1000 steps/s on one core,
and a level is fully determined by ``start_level`` + ``rand_seed``, so the corpus is reproducible.

Why sticky actions: a uniformly random action per step jitters in place; people hold a button for a while.
Holding an action for a random few steps (and favouring "right" and "jump" in platformers, where the goal is
to the right) looks like someone playing and gives the latent action model varied, persistent motion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PLATFORMERS = ("coinrun", "jumper", "ninja", "climber")
NON_PLATFORMERS = ("starpilot", "bigfish", "fruitbot", "chaser")
RENDER_SIZE = 512  # Procgen's rgb_array render is 512x512

# Procgen's 15-way action space (``env.combos``): index -> buttons held.
ACTION_NAMES = ("LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
                "D", "A", "W", "S", "Q", "E")
NUM_ACTIONS = len(ACTION_NAMES)
NO_ACTION = -1  # sidecar value for steps without a game action (menus, slides, black screens)

# Weights of the sticky policy: platformers favour moving right and jumping; other games move everywhere.
_PLATFORMER_WEIGHTS = np.array([1, 6, 4, 1, 4, 8, 1, 24, 18, 1, 1, 1, 1, 1, 1], dtype=float)
_FREE_WEIGHTS = np.array([3, 8, 3, 6, 3, 6, 3, 8, 3, 2, 1, 1, 1, 1, 1], dtype=float)


class StickyPolicy:
    """Random actions, each held for ``min_hold``..``max_hold`` steps (seeded, so reproducible)."""

    def __init__(self, rng: np.random.Generator, platformer: bool, min_hold: int = 2, max_hold: int = 8):
        weights = _PLATFORMER_WEIGHTS if platformer else _FREE_WEIGHTS
        self._p = weights / weights.sum()
        self._rng = rng
        self._min_hold, self._max_hold = min_hold, max_hold
        self._action, self._left = 4, 0

    def next(self) -> int:
        if self._left == 0:
            self._action = int(self._rng.choice(NUM_ACTIONS, p=self._p))
            self._left = int(self._rng.integers(self._min_hold, self._max_hold + 1))
        self._left -= 1
        return self._action


class GameSession:
    """One Procgen game on one level; episodes that end restart automatically (it looks like a new try)."""

    def __init__(self, game: str, level: int, rand_seed: int):
        from procgen import ProcgenGym3Env  # imported here: importing gym prints a banner

        self.game = game
        self._env = ProcgenGym3Env(num=1, env_name=game, render_mode="rgb_array", distribution_mode="hard",
                                   start_level=level, num_levels=1, rand_seed=rand_seed)

    def frame(self) -> np.ndarray:
        """The current 512x512x3 uint8 render."""
        return self._env.get_info()[0]["rgb"]

    def act(self, action: int) -> None:
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"action must be in 0..{NUM_ACTIONS - 1}, got {action}")
        self._env.act(np.array([action]))


def crop_16x9(frame: np.ndarray) -> np.ndarray:
    """The central 16:9 band of a square render (the camera follows the player, so it stays in view)."""
    height = frame.shape[1] * 9 // 16
    top = (frame.shape[0] - height) // 2
    return frame[top:top + height]


def to_frame(render: np.ndarray, width: int, height: int) -> np.ndarray:
    """A square Procgen render -> a ``width`` x ``height`` frame (central 16:9 band, resized bilinearly)."""
    return np.asarray(Image.fromarray(crop_16x9(render)).resize((width, height), Image.BILINEAR))
