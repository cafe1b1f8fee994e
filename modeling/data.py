"""Training data: random T-frame windows from clip shards (any ``schemas.shard_source`` spec), decoded in loader workers.

Per DataLoader worker::

    shard URLs --(per-epoch shuffle, endless when resampled)--> split by rank, then by worker
      --> tar samples --> shuffle buffer --> (sample, window start) --> decode window --> batch

Only the needed window is decoded. Everything random is a pure function of ``(seed, rank, worker, epoch, counter)``
and the shard split is arithmetic, so the stream is reproducible and resumes exactly: each batch carries its
worker's ``StreamPosition`` (``batch["position"]``), and from a run's last positions (``resume``) a worker reopens
only the shards it still needs, decoding no video; exactness needs the same world size, workers and shuffle buffer.
Batches: ``video`` uint8 (B, T, H, W, 3) (``to_float_video``: float (B, T, 3, H, W) in [0, 1]), ``actions`` long
(B, T) (-1 unknown), ``start``, ``key``, ``position``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.clip_codec import decode_clip
from schemas.clip_format import CLIP_HEIGHT, CLIP_WIDTH
from schemas.records import ShardSample
from schemas.shard_source import ShardError, raw_samples, resolve

_SHUFFLE_STREAM = 1  # appended to the shuffle buffer's seeds so they never coincide with the window seeds


def to_float_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 3, H, W) in [0, 1], the models' input format."""
    return video.permute(0, 1, 4, 2, 3).float().div_(255.0)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class StreamPosition:
    """Where one worker's window stream stands after a batch: all a resumed worker needs to continue it exactly.

    Plain ints and lists, so that it crosses the DataLoader's worker queue and goes into checkpoints as is.
    A sample is named by ``[shard, sample]``: the index of its shard in this worker's shard sequence and its
    index inside that shard.
    """

    worker: int = 0  # the (virtual) worker whose stream this is, see ClipWindowDataset.__iter__
    shard: int = 0  # index of the shard being read, in this worker's shard sequence
    read: int = 0  # samples already read from that shard
    buffer: list[list[int]] = field(default_factory=list)  # the samples in the shuffle buffer, in buffer order
    picks: int = 0  # samples taken out of the buffer so far: the shuffle's random counter
    windows: int = 0  # windows cut so far: the window starts' random counter
    current: list[int] | None = None  # [shard, sample, windows already cut] of a sample cut only partly


@dataclass(frozen=True)
class LoaderConfig:
    """How a window loader reads its shards, for the clip loader (``clip_windows``) and the token loader
    (``modeling.token_shards.token_windows``) alike: one object instead of a dozen positional parameters.

    Everything that decides WHICH windows come in which order is here (with the shards and ``resume``); the
    DataLoader fields (workers, pinning, prefetch) change only speed and memory, except ``num_workers``, which
    decides how the shards are split (see ``modeling.train``: the layout a resume needs)."""

    window: int = 16  # frames per window (T)
    batch_size: int = 8  # windows per batch (batched in the workers)
    shuffle: bool = True  # shuffled shards, a shuffle buffer, random starts; False: shard order, windows from frame 0
    resampled: bool = False  # endless epochs, each a fresh shuffle of the shard list
    seed: int = 0  # every random choice is a function of (seed, rank, worker, epoch, counter)
    shuffle_buffer: int = 256  # samples mixed before one is cut into windows
    windows_per_clip: int = 1  # windows cut from each sample (clip loader only; token windows: 1)
    start_batch: int = 0  # batches already consumed (resume; see ``ClipWindowDataset``)
    drop_last: bool = False  # drop a last, short batch
    num_workers: int = 0  # DataLoader worker processes (0: in the calling process)
    pin_memory: bool = False
    prefetch_factor: int = 4  # batches each worker keeps ready
    persistent_workers: bool = False  # keep the workers alive between iterations of the loader


class ClipWindowDataset(IterableDataset):
    """Batches of random ``window``-frame windows; see the module docstring for the stream and its guarantees.

    ``resume`` maps a worker id to the ``batch["position"]`` of its last consumed batch (workers absent from it
    start from the beginning); with ``resume`` given, ``start_batch`` only decides which worker goes first.
    """

    def __init__(self, urls: str | list[str], config: LoaderConfig = LoaderConfig(),
                 frame_size: tuple[int, int] | None = (CLIP_HEIGHT, CLIP_WIDTH),
                 resume: dict[int, dict[str, Any]] | None = None):
        super().__init__()
        self.urls = resolve(urls)
        self.config = config
        self.frame_size = frame_size
        self.resume = resume

    def _epoch_order(self, epoch: int) -> list[str]:
        order = list(self.urls)
        if self.config.shuffle:
            random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def _shard_sequence(self, rank: int, world: int, worker: int, num_workers: int) -> Callable[[int], str | None]:
        """j -> URL of this worker's j-th shard (None past the end of a non-resampled stream).

        The global shard stream (epoch after epoch) is dealt round-robin to ranks, then to workers, so the j-th
        shard is at global index ``rank + world * (worker + num_workers * j)`` -- arithmetic, which lets a
        resumed worker jump to its shard j without touching the shards before it.
        """
        orders: dict[int, list[str]] = {}

        def url(j: int) -> str | None:
            epoch, index = divmod(rank + world * (worker + num_workers * j), len(self.urls))
            if epoch > 0 and not self.config.resampled:
                return None
            if epoch not in orders:
                if len(orders) > 2:
                    orders.clear()
                orders[epoch] = self._epoch_order(epoch)
            return orders[epoch][index]

        return url

    @staticmethod
    def _read_shard(url: str | None) -> Iterator[dict[str, Any]]:
        """Raw samples of one shard (bytes, nothing decoded)."""
        return raw_samples(url)

    def _restore(self, pos: StreamPosition, shard_url: Callable[[int], str | None]
                 ) -> tuple[dict[tuple[int, int], dict[str, Any]], Iterator[dict[str, Any]]]:
        """The raw samples ``pos`` still needs (buffered or partly cut), and its current shard read up to ``pos``.

        Only shards holding such samples are opened, each read just up to the last sample needed; the current
        shard's first ``pos.read`` samples are read as bytes and dropped. Nothing is decoded.
        """
        wanted = {tuple(ref) for ref in pos.buffer} | ({tuple(pos.current[:2])} if pos.current else set())
        found: dict[tuple[int, int], dict[str, Any]] = {}
        for shard in sorted({s for s, _ in wanted if s < pos.shard}):
            need = {m for s, m in wanted if s == shard}
            for m, raw in enumerate(self._read_shard(shard_url(shard))):
                if m in need:
                    found[(shard, m)] = raw
                    need.discard(m)
                    if not need:
                        break
        reader = self._read_shard(shard_url(pos.shard))
        read = 0
        for read, raw in enumerate(islice(reader, pos.read), 1):
            if (pos.shard, read - 1) in wanted:
                found[(pos.shard, read - 1)] = raw
        if read < pos.read or len(found) < len(wanted):
            raise ShardError(f"cannot resume the data stream: shard {shard_url(pos.shard)} (or one before it) "
                             "holds fewer samples than when the checkpoint was written; were the shards changed?")
        return found, reader

    def _samples(self, pos: StreamPosition, shard_url: Callable[[int], str | None],
                 reader: Iterator[dict[str, Any]]) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """([shard, sample], raw) from ``reader`` (the current shard) on, then from the following shards."""
        while True:
            for raw in reader:
                pos.read += 1
                yield [pos.shard, pos.read - 1], raw
            if shard_url(pos.shard + 1) is None:
                return
            pos.shard, pos.read = pos.shard + 1, 0
            reader = self._read_shard(shard_url(pos.shard))

    def _pick(self, pos: StreamPosition, raws: list[dict[str, Any]], rank: int) -> tuple[list[int], dict[str, Any]]:
        """Take a random sample out of the shuffle buffer (``pos.buffer`` and the parallel ``raws``)."""
        i = 0
        if len(raws) > 1:
            i = int(np.random.default_rng([self.config.seed, rank, pos.worker, pos.picks, _SHUFFLE_STREAM])
                    .integers(len(raws)))
        pos.picks += 1
        ref, raw = pos.buffer[i], raws[i]
        pos.buffer[i], raws[i] = pos.buffer[-1], raws[-1]
        pos.buffer.pop()
        raws.pop()
        return ref, raw

    def _cut(self, pos: StreamPosition, ref: list[int], raw: dict[str, Any], first: int, rank: int
             ) -> Iterator[tuple[dict[str, Any], int]]:
        """Windows ``first..windows_per_clip-1`` of one sample; ``pos`` is up to date at every yield."""
        num_frames = self._check(raw)
        if num_frames < self.config.window:
            return  # a short tail piece of a longer video (see ``_check``): no window fits in it
        for k in range(first, self.config.windows_per_clip):
            rng = np.random.default_rng([self.config.seed, rank, pos.worker, pos.windows])
            start = self._pick_start(rng, num_frames, k)
            pos.windows += 1
            pos.current = [*ref, k + 1] if k + 1 < self.config.windows_per_clip else None
            yield raw, start

    def _windows(self, pos: StreamPosition, rank: int, world: int, num_workers: int
                 ) -> Iterator[tuple[dict[str, Any], int]]:
        """(raw sample, window start) pairs from ``pos`` on, before any decoding; ``pos`` is kept up to date."""
        shard_url = self._shard_sequence(rank, world, pos.worker, num_workers)
        found, reader = self._restore(pos, shard_url)
        raws = [found[tuple(ref)] for ref in pos.buffer]
        if pos.current is not None:
            shard, sample, done = pos.current
            yield from self._cut(pos, [shard, sample], found[(shard, sample)], done, rank)
        size = max(self.config.shuffle_buffer, 1) if self.config.shuffle else 1
        for ref, raw in self._samples(pos, shard_url, reader):
            pos.buffer.append(ref)
            raws.append(raw)
            while len(raws) >= size:
                yield from self._cut(pos, *self._pick(pos, raws, rank), 0, rank)
        while raws:
            yield from self._cut(pos, *self._pick(pos, raws, rank), 0, rank)

    def _pick_start(self, rng: np.random.Generator, num_frames: int, k: int) -> int:
        """Window start: uniform when shuffling; otherwise consecutive windows from frame 0."""
        hi = num_frames - self.config.window
        return int(rng.integers(0, hi + 1)) if self.config.shuffle else min(k * self.config.window, hi)

    def _check(self, raw: dict[str, Any]) -> int:
        url, key = raw.get("__url__", "?"), raw.get("__key__", "?")
        try:
            clip = ShardSample.from_wds(raw).clip
        except Exception as e:  # a malformed sample makes the whole shard suspect: say which
            raise ShardError(f"shard {url}: sample {key!r} is not a valid ShardSample: {e}") from e
        if self.frame_size is not None and (clip.height, clip.width) != tuple(self.frame_size):
            raise ShardError(f"shard {url}: clip {key!r} is {clip.width}x{clip.height}, the model takes "
                             f"{self.frame_size[1]}x{self.frame_size[0]} frames (config tokenizer.frame_width/"
                             "frame_height; the coinrun preset is 64x64, the others 160x90)")
        # A video longer than a clip is cut into clip-length pieces, so its last piece can be short (procgen and
        # bc expert episodes end where the game ends): such a tail holds no window and is skipped. A FIRST piece
        # shorter than the window means the window does not fit the data: that fails, as it would train on nothing.
        if clip.num_frames < self.config.window and clip.clip_index == 0:
            raise ShardError(f"shard {url}: clip {key!r} has {clip.num_frames} frames, fewer than the "
                             f"window of {self.config.window}")
        return clip.num_frames

    def check_first_sample(self) -> None:
        """Validate the first sample of the first shard in THIS process, so that a wrong clip size or length is
        reported before any model is built (loader workers re-check every sample as they read it)."""
        for raw in self._read_shard(self.urls[0]):
            self._check(raw)
            return
        raise ShardError(f"shard {self.urls[0]} holds no samples")

    def _decode(self, raw: dict[str, Any], start: int) -> dict[str, Any]:
        meta = ShardSample.from_wds(raw).clip
        frames = decode_clip(bytes(raw["mp4"]), start, self.config.window)
        if self.frame_size is not None and frames.shape[1:3] != tuple(self.frame_size):
            raise ShardError(f"shard {raw.get('__url__', '?')}: clip {raw.get('__key__')!r} decodes to "
                             f"{frames.shape[2]}x{frames.shape[1]}, expected {self.frame_size[1]}x{self.frame_size[0]}")
        actions = np.full(self.config.window, -1, np.int64)
        if meta.actions is not None:
            actions[:] = meta.actions[start:start + self.config.window]
        return {"video": frames, "actions": actions, "start": start, "key": meta.clip_key}

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"video": torch.from_numpy(np.stack([i["video"] for i in items])),
                "actions": torch.from_numpy(np.stack([i["actions"] for i in items])),
                "start": torch.tensor([i["start"] for i in items], dtype=torch.long),
                "key": [i["key"] for i in items]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = _rank_world()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # The DataLoader takes batch b from worker b % num_workers and always starts at worker 0. On resume at
        # batch n, worker w therefore plays "virtual worker" (w + n) % num_workers of the uninterrupted run.
        virtual = (worker + self.config.start_batch) % num_workers
        skip = 0
        if self.resume is not None:
            pos = StreamPosition(**self.resume[virtual]) if virtual in self.resume else StreamPosition(virtual)
        else:  # no positions: replay the stream, dropping this worker's windows of the first n batches
            pos = StreamPosition(virtual)
            skip = max(0, -(-(self.config.start_batch - virtual) // num_workers)) * self.config.batch_size
        batch: list[dict[str, Any]] = []
        for i, (raw, start) in enumerate(self._windows(pos, rank, world, num_workers)):
            if i < skip:
                continue
            batch.append(self._decode(raw, start))
            if len(batch) == self.config.batch_size:
                yield {**self._collate(batch), "position": asdict(pos)}
                batch = []
        if batch and not self.config.drop_last:
            yield {**self._collate(batch), "position": asdict(pos)}


def shard_geometry(urls: str | list[str]) -> tuple[int, int, float]:
    """(height, width, fps) of the clips, read from the first sample's metadata (the pipeline records the
    geometry it was run with, ``--clip-size`` / ``--clip-fps``, in every sample)."""
    url = resolve(urls)[0]
    for raw in ClipWindowDataset._read_shard(url):
        try:
            clip = ShardSample.from_wds(raw).clip
        except Exception as e:
            raise ShardError(f"shard {url}: sample {raw.get('__key__')!r} is not a valid ShardSample: {e}") from e
        return clip.height, clip.width, clip.fps
    raise ShardError(f"shard {url} holds no samples")


def check_first_clip(urls: list[str], window: int = 16,
                     frame_size: tuple[int, int] | None = (CLIP_HEIGHT, CLIP_WIDTH)) -> None:
    """``ClipWindowDataset.check_first_sample`` for clip shards: a clip size other than the model's
    ``frame_size`` (height, width), or a clip shorter than ``window``, fails before any model is built."""
    ClipWindowDataset(urls[:1], LoaderConfig(window=window, shuffle=False), frame_size).check_first_sample()


def window_loader(dataset: ClipWindowDataset) -> DataLoader:
    """The DataLoader of a window dataset (clip or token windows), set up from its ``LoaderConfig``: batching
    happens in the workers, so the DataLoader only moves whole batches."""
    c = dataset.config
    return DataLoader(dataset, batch_size=None, num_workers=c.num_workers, pin_memory=c.pin_memory,
                      persistent_workers=c.persistent_workers and c.num_workers > 0,
                      prefetch_factor=c.prefetch_factor if c.num_workers else None)


def clip_windows(pattern_or_urls: str | list[str], config: LoaderConfig = LoaderConfig(),
                 frame_size: tuple[int, int] | None = (CLIP_HEIGHT, CLIP_WIDTH),
                 resume: dict[int, dict[str, Any]] | None = None) -> DataLoader:
    """A DataLoader of window batches (see ``ClipWindowDataset``); ``frame_size`` (height, width) is the
    model's: other clips are refused (None: any size)."""
    return window_loader(ClipWindowDataset(pattern_or_urls, config, frame_size, resume))
