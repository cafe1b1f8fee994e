"""A CoinRun expert that looks ahead with Procgen's state save/restore, and its episodes as clip shards.

No trained RL agent is available (the paper's expert is one), so the expert plans: every ``hold`` steps it tries
each candidate action (right, right+jump, jump, no-op, left, left+jump) held ``hold`` steps, then ``rollouts``
random right-biased continuations of ``depth`` held actions, and plays the candidate whose best rollout reaches
the coin soonest (else survives and pushes right most; deaths last). The environment is deterministic given the
restored state, so the real steps are the simulated ones. Episodes are written like ``procgen-dataset``'s
streams (``schemas.procgen``, the same shard writer, true actions in ``actions``), one per level; ``expert.json``
records which levels the expert solved, by the environment's own reward.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from schemas import clip_format, shard_writer
from schemas.procgen import LevelStream, make_env, stream_clips

# Procgen's combined action indices (procgen/env.py: buttons of each of the 15 actions); UP is jump in CoinRun.
LEFT, LEFT_JUMP, NOOP, JUMP, RIGHT, RIGHT_JUMP = 1, 2, 4, 5, 7, 8
CANDIDATES = (RIGHT, RIGHT_JUMP, JUMP, NOOP, LEFT, LEFT_JUMP)  # tie order: the first best candidate is played
RIGHTWARD = (RIGHT, RIGHT_JUMP)
EXPERT_JSON = "expert.json"
GAME = "coinrun"  # the planner's actions and its notion of progress are CoinRun's


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    hold: int = 4  # steps a chosen action is held (the planner decides every `hold` steps)
    depth: int = 8  # held actions per look-ahead rollout after the candidate (depth * hold steps)
    rollouts: int = 3  # random continuations per candidate
    right_bias: float = 0.6  # probability a rollout's held action is rightward (else any candidate)
    max_steps: int = 1000  # steps per episode (CoinRun's own time limit is 1000)


@dataclasses.dataclass
class Episode:
    frames: np.ndarray  # (N, 64, 64, 3) uint8, the observation before each action
    actions: np.ndarray  # (N,) int64, actions[k] taken after frames[k]
    solved: bool  # the episode ended with Procgen's reward (the coin)
    died: bool  # the episode ended without reward before max_steps


def _simulate(env, actions: list[int]) -> tuple[str, int]:
    """Play ``actions`` from the env's current state: ("solved" | "died" | "alive", steps played)."""
    for n, action in enumerate(actions, 1):
        env.act(np.array([action]))
        reward, _, first = env.observe()
        if first[0]:
            return ("solved" if reward[0] > 0 else "died"), n
    return "alive", len(actions)


def _value(outcome: str, steps: int, actions: list[int]) -> float:
    if outcome == "solved":
        return 10_000.0 - steps
    if outcome == "died":
        return -10_000.0 + steps
    return float(sum(a in RIGHTWARD for a in actions))


class LookaheadExpert:
    """Plans one held action at a time from the environment's saved state (see the module docstring)."""

    def __init__(self, config: ExpertConfig, rng: np.random.Generator):
        self.config, self.rng = config, rng

    def _rollout_actions(self, candidate: int) -> list[int]:
        c = self.config
        held = [candidate]
        for _ in range(c.depth):
            rightward = self.rng.random() < c.right_bias
            held.append(int(self.rng.choice(RIGHTWARD if rightward else CANDIDATES)))
        return [a for a in held for _ in range(c.hold)]

    def plan(self, env) -> int:
        """The candidate action to hold next; leaves the env in the state it was given."""
        state = env.callmethod("get_state")
        best, best_value = CANDIDATES[0], -np.inf
        for candidate in CANDIDATES:
            value = -np.inf
            for _ in range(self.config.rollouts):
                env.callmethod("set_state", state)
                actions = self._rollout_actions(candidate)
                outcome, steps = _simulate(env, actions)
                value = max(value, _value(outcome, steps, actions[:steps]))
            if value > best_value:
                best, best_value = candidate, value
        env.callmethod("set_state", state)
        return best


def play_episode(stream: LevelStream, level: int, config: ExpertConfig) -> Episode:
    """One expert episode of ``level`` (env and seeds as ``procgen-dataset`` makes them)."""
    env = make_env(stream, level)
    expert = LookaheadExpert(config, np.random.default_rng([stream.seed, level]))
    frames, actions = [], []
    outcome = "alive"
    while outcome == "alive" and len(actions) < config.max_steps:
        action = expert.plan(env)
        for _ in range(min(config.hold, config.max_steps - len(actions))):
            frames.append(env.observe()[1]["rgb"][0].copy())
            actions.append(action)
            outcome, _ = _simulate(env, [action])
            if outcome != "alive":
                break
    return Episode(np.stack(frames), np.asarray(actions, np.int64), outcome == "solved", outcome == "died")


def level_stream(mode: str, seed: int = 0) -> LevelStream:
    """The env and clip settings of expert data and evaluation: procgen-dataset's, in ``mode``, every frame kept."""
    return LevelStream(game=GAME, distribution_mode=mode, seed=seed, min_clip_frames=1)


def write_expert_dataset(out: str | Path, mode: str, levels: tuple[int, int], config: ExpertConfig,
                         seed: int = 0, levels_per_shard: int = 50, log=print) -> dict:
    """Expert episodes of ``levels`` (inclusive) -> ``out/shards/shard-*.tar`` and ``out/expert.json``."""
    out = Path(out)
    stream = level_stream(mode, seed)
    started = time.perf_counter()
    per_level, written = {}, 0
    for index, first in enumerate(range(levels[0], levels[1] + 1, levels_per_shard)):
        clips = []
        for level in range(first, min(first + levels_per_shard - 1, levels[1]) + 1):
            episode = play_episode(stream, level, config)
            clips += stream_clips(stream, level, episode.frames, episode.actions)
            per_level[level] = {"steps": len(episode.actions), "solved": episode.solved, "died": episode.died}
        path = out / clip_format.SHARD_DIR / clip_format.shard_name(index)
        written += len(shard_writer.write_shard(str(path), clips)[0])
        log(f"bc expert: {mode}: levels {levels[0]}-{level}: {sum(v['solved'] for v in per_level.values())} of "
            f"{len(per_level)} solved ({time.perf_counter() - started:.0f} s)")
    summary = {
        "mode": mode, "levels": list(levels), "seed": seed, "expert": dataclasses.asdict(config),
        "clips": written, "transitions": sum(v["steps"] for v in per_level.values()),
        "solved_share": float(np.mean([v["solved"] for v in per_level.values()])),
        "died_share": float(np.mean([v["died"] for v in per_level.values()])),
        "seconds": time.perf_counter() - started,
        "per_level": {str(k): v for k, v in sorted(per_level.items())}}
    os.makedirs(out, exist_ok=True)
    (out / EXPERT_JSON).write_text(json.dumps(summary, indent=1))
    return summary


def read_expert_json(expert_dir: str | Path) -> dict:
    path = Path(expert_dir) / EXPERT_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not an expert dataset (python -m modeling bc expert)")
    return json.loads(path.read_text())
