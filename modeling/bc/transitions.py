"""Expert shards back as episodes, and episodes as (previous frame, frame, target) training transitions.

An expert level's clips, joined in ``clip_index`` order, are its episode. The true actions come from the clips'
``actions``; ``label`` passes only the frames on (``Episode.frames``), so latent labels never see them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np

from schemas import shard_source
from schemas.clip_codec import decode_clip


@dataclasses.dataclass
class ExpertEpisode:
    video_id: str
    frames: np.ndarray  # (N, H, W, 3) uint8
    actions: np.ndarray  # (N,) int64 true actions, actions[k] taken after frames[k]


def read_episodes(expert_dir: str | Path) -> list[ExpertEpisode]:
    """The episodes of an expert dataset, sorted by video id, read back with webdataset."""
    pieces = defaultdict(list)
    try:
        urls = shard_source.resolve(str(Path(expert_dir).resolve()))  # its shards/*.tar
    except shard_source.ShardSourceError:
        raise FileNotFoundError(f"no expert shards under {expert_dir}") from None
    for sample in shard_source.read_samples(urls):
        clip = sample.clip
        pieces[clip.video_id].append((clip.clip_index, decode_clip(clip.mp4), np.asarray(clip.actions, np.int64)))
    episodes = []
    for video_id in sorted(pieces):
        parts = sorted(pieces[video_id], key=lambda p: p[0])
        episodes.append(ExpertEpisode(video_id, np.concatenate([p[1] for p in parts]),
                                      np.concatenate([p[2] for p in parts])))
    if not episodes:
        raise FileNotFoundError(f"no expert shards under {expert_dir}")
    return episodes


@dataclasses.dataclass
class Transitions:
    """Transition t of an episode: input frames (t-1, t) (the first frame doubled at t = 0), its targets."""

    frames: np.ndarray  # (M, 2, H, W, 3) uint8
    actions: np.ndarray  # (M,) true actions (for the oracle and the mapping only)
    latents: np.ndarray | None  # (M,) the LAM's label of transition t -> t+1, or None before labelling


def stack_transitions(episodes: list[ExpertEpisode], labels: dict[str, list[int]] | None = None) -> Transitions:
    """Every transition t -> t+1 of every episode (the last frame has no successor, so no latent label)."""
    frames, actions, latents = [], [], []
    for episode in episodes:
        n = len(episode.frames) - 1
        if n < 1:
            continue
        previous = np.concatenate([episode.frames[:1], episode.frames[:n - 1]])
        frames.append(np.stack([previous, episode.frames[:n]], 1))
        actions.append(episode.actions[:n])
        if labels is not None:
            latent = np.asarray(labels[episode.video_id], np.int64)
            if len(latent) != n:
                raise ValueError(f"{episode.video_id}: {len(latent)} latent labels for {n} transitions")
            latents.append(latent)
    return Transitions(np.concatenate(frames), np.concatenate(actions),
                       np.concatenate(latents) if labels is not None else None)
