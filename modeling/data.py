"""Training data: random T-frame windows from the pipeline's WebDataset shards, decoded in loader workers.

Stream per DataLoader worker (WebDataset stages, with explicit splitting)::

    shard URLs --(per-epoch shuffle, endless when resampled)--> split_by_node --> split_by_worker
      --> tarfile_to_samples --> shuffle buffer --> (sample, window start) --> skip --> decode window --> batch

- Each sample is a ``ShardSample`` (``<key>.mp4`` + ``<key>.json``). Only the needed window is decoded
  (``pipeline.clip_codec.decode_clip`` seeks to the keyframe before it), so a 16-frame window costs at most
  16 + GOP frames of decoding instead of 160.
- Everything random is a pure function of ``(seed, rank, worker, epoch, window index)``, so the stream is
  reproducible and a resumed run can SKIP to where it stopped: ``start_batch`` skips the windows already
  consumed without decoding them (``DataLoader`` takes batches from workers round-robin, so each worker knows
  which of the first ``start_batch`` batches were its own). Exact resume needs the same world size and
  ``num_workers``.
- ``resampled=True`` streams endless epochs (each a fresh shuffle of the shard list) for long runs.

Batches are dicts: ``video`` uint8 (B, T, H, W, 3) -- channels LAST, as decoded; ``to_float_video`` makes the
models' float (B, T, 3, H, W) in [0, 1] --, ``actions`` long (B, T) (ground truth from the shard json,
-1 where unknown), ``start`` long (B,), ``key`` list of clip keys.

URLs: local paths, globs, directories, brace patterns (``shard-{00000..00099}.tar``), and anything
``webdataset.gopen`` opens (``http(s)://`` via curl, ``gs://`` via gsutil, ``pipe:...``).
"""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Iterator
from itertools import count, islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.clip_codec import CLIP_HEIGHT, CLIP_WIDTH, decode_clip
from schemas.records import ShardSample


class ShardError(ValueError):
    """A shard does not hold what the models need (wrong frame size, too few frames, unreadable sample)."""


def expand_shards(pattern_or_urls: str | list[str]) -> list[str]:
    """Shard URLs from a list, a glob, a directory, a brace pattern or URLs; raises when nothing matched."""
    if isinstance(pattern_or_urls, list | tuple):
        urls = [str(u) for u in pattern_or_urls]
    else:
        urls = []
        for part in wds.shardlists.expand_urls(str(pattern_or_urls)):
            if "://" in part or part.startswith("pipe:"):
                urls.append(part)
            elif os.path.isdir(part):
                urls.extend(sorted(str(p) for p in Path(part).glob("*.tar")))
            elif any(c in part for c in "*?["):
                urls.extend(sorted(glob.glob(part)))
            elif os.path.isfile(part):
                urls.append(part)
    if not urls:
        raise FileNotFoundError(f"no shards matched {pattern_or_urls!r}")
    return urls


def to_float_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 3, H, W) in [0, 1], the models' input format."""
    return video.permute(0, 1, 4, 2, 3).float().div_(255.0)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ClipWindowDataset(IterableDataset):
    """Batches of random ``window``-frame windows; see the module docstring for the stream and its guarantees."""

    def __init__(self, urls: str | list[str], window: int = 16, batch_size: int = 8, shuffle: bool = True,
                 resampled: bool = False, seed: int = 0, shuffle_buffer: int = 256, windows_per_clip: int = 1,
                 start_batch: int = 0, drop_last: bool = False, frame_size: tuple[int, int] = (CLIP_HEIGHT,
                                                                                                  CLIP_WIDTH)):
        super().__init__()
        self.urls = expand_shards(urls)
        self.window, self.batch_size = window, batch_size
        self.shuffle, self.resampled, self.seed = shuffle, resampled, seed
        self.shuffle_buffer, self.windows_per_clip = shuffle_buffer, windows_per_clip
        self.start_batch, self.drop_last = start_batch, drop_last
        self.frame_size = frame_size

    def _shard_stream(self) -> Iterator[dict[str, str]]:
        for epoch in count():
            order = list(self.urls)
            if self.shuffle:
                random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            for url in order:
                yield {"url": url, "epoch": epoch}
            if not self.resampled:
                return

    def _windows(self, rank: int, worker: int, num_workers: int) -> Iterator[tuple[dict[str, Any], int]]:
        """(raw sample, window start) pairs, before any decoding."""
        src: Iterator = self._shard_stream()
        src = wds.split_by_node(src)
        src = islice(src, worker, None, num_workers)  # split by (virtual) worker, see __iter__
        src = wds.tarfile_to_samples()(src)
        if self.shuffle and self.shuffle_buffer > 1:
            src = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer,
                              seed=hash((self.seed, rank, worker)) & 0xFFFFFFFF)(src)
        index = 0
        for raw in src:
            num_frames = self._check(raw)
            for k in range(self.windows_per_clip):
                rng = np.random.default_rng([self.seed, rank, worker, index])
                index += 1
                yield raw, self._pick_start(rng, num_frames, k)

    def _pick_start(self, rng: np.random.Generator, num_frames: int, k: int) -> int:
        """Window start: uniform when shuffling; otherwise consecutive windows from frame 0."""
        hi = num_frames - self.window
        return int(rng.integers(0, hi + 1)) if self.shuffle else min(k * self.window, hi)

    def _check(self, raw: dict[str, Any]) -> int:
        url, key = raw.get("__url__", "?"), raw.get("__key__", "?")
        try:
            clip = ShardSample.from_wds(raw).clip
        except Exception as e:  # a malformed sample makes the whole shard suspect: say which
            raise ShardError(f"shard {url}: sample {key!r} is not a valid ShardSample: {e}") from e
        if (clip.height, clip.width) != tuple(self.frame_size):
            raise ShardError(f"shard {url}: clip {key!r} is {clip.width}x{clip.height}, the models need "
                             f"{self.frame_size[1]}x{self.frame_size[0]} (the pipeline's clip format)")
        if clip.num_frames < self.window:
            raise ShardError(f"shard {url}: clip {key!r} has {clip.num_frames} frames, fewer than the "
                             f"window of {self.window}")
        return clip.num_frames

    def _decode(self, raw: dict[str, Any], start: int) -> dict[str, Any]:
        meta = ShardSample.from_wds(raw).clip
        frames = decode_clip(bytes(raw["mp4"]), start, self.window)
        if frames.shape[1:3] != tuple(self.frame_size):
            raise ShardError(f"shard {raw.get('__url__', '?')}: clip {raw.get('__key__')!r} decodes to "
                             f"{frames.shape[2]}x{frames.shape[1]}, expected {self.frame_size[1]}x{self.frame_size[0]}")
        actions = np.full(self.window, -1, np.int64)
        if meta.actions is not None:
            actions[:] = meta.actions[start:start + self.window]
        return {"video": frames, "actions": actions, "start": start, "key": meta.clip_key}

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"video": torch.from_numpy(np.stack([i["video"] for i in items])),
                "actions": torch.from_numpy(np.stack([i["actions"] for i in items])),
                "start": torch.tensor([i["start"] for i in items], dtype=torch.long),
                "key": [i["key"] for i in items]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, _ = _rank_world()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # The DataLoader takes batch b from worker b % num_workers and always starts at worker 0. On resume at
        # batch n, worker w therefore plays "virtual worker" (w + n) % num_workers of the uninterrupted run, and
        # skips the windows of that virtual worker's batches among the first n.
        virtual = (worker + self.start_batch) % num_workers
        own = max(0, -(-(self.start_batch - virtual) // num_workers))
        skip = own * self.batch_size
        batch: list[dict[str, Any]] = []
        for i, (raw, start) in enumerate(self._windows(rank, virtual, num_workers)):
            if i < skip:
                continue
            batch.append(self._decode(raw, start))
            if len(batch) == self.batch_size:
                yield self._collate(batch)
                batch = []
        if batch and not self.drop_last:
            yield self._collate(batch)


def check_first_clip(urls: list[str], window: int = 16) -> None:
    """Validate the first sample of the first shard in THIS process, so that a wrong clip size or length is
    reported before any model is built (loader workers re-check every sample as they read it)."""
    dataset = ClipWindowDataset(urls[:1], window=window, shuffle=False)
    for raw in wds.tarfile_to_samples()(iter([{"url": urls[0]}])):
        dataset._check(raw)
        return
    raise ShardError(f"shard {urls[0]} holds no samples")


def clip_windows(pattern_or_urls: str | list[str], window: int = 16, batch_size: int = 8, shuffle: bool = True,
                 resampled: bool = False, seed: int = 0, num_workers: int = 0, shuffle_buffer: int = 256,
                 windows_per_clip: int = 1, start_batch: int = 0, drop_last: bool = False,
                 pin_memory: bool = False) -> DataLoader:
    """A DataLoader of window batches (batching happens in the workers; see ``ClipWindowDataset``)."""
    dataset = ClipWindowDataset(pattern_or_urls, window, batch_size, shuffle, resampled, seed, shuffle_buffer,
                                windows_per_clip, start_batch, drop_last)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=4 if num_workers else None)
