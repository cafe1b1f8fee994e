"""Where the classifier's clips come from: ``--clips``, any shard spec ``schemas.shard_source`` resolves.

``--clips`` accepts what every command accepts for shards: a run output directory (its ``shards/*.tar``), a
shard directory, a glob (``out/shards/*.tar``), a single tar, a brace pattern (``shard-{00000..00003}.tar``),
a ``::`` list or ``gs://`` URLs. Samples are parsed with ``ShardSample.from_wds`` -- the one definition of the
shard format -- and decoded with ``schemas.clip_codec.decode_clip``. A sample that cannot be parsed or decoded
is reported (``SourceProblem``) and skipped: one bad sample must not stop a training run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from schemas import Clip, ShardSample, shard_source
from schemas.clip_codec import decode_clip
from schemas.shard_source import ShardSourceError


@dataclasses.dataclass(frozen=True)
class SourceProblem:
    """A sample that could not be read, and why."""

    shard: str
    key: str
    error: str


def iter_samples(source: str, problems: list[SourceProblem] | None = None) -> Iterator[ShardSample]:
    """Every parseable ``ShardSample`` in the shards ``source`` names, in shard order; raises
    ``ShardSourceError`` (a user error, naming ``--clips``) when it names no shards."""
    try:
        shard_source.resolve(source)  # fail on the spec before the first sample, naming the flag
    except ShardSourceError as exc:
        raise ShardSourceError(f"--clips {source!r}: {exc}") from None

    def skip(shard: str, key: str, exc: Exception) -> None:
        if problems is not None:
            problems.append(SourceProblem(shard, key, f"{type(exc).__name__}: {exc}"))

    yield from shard_source.read_samples(source, on_error=skip)


def iter_clips(source: str, problems: list[SourceProblem] | None = None) -> Iterator[tuple[Clip, np.ndarray]]:
    """``(clip record without bytes, decoded frames (T, 90, 160, 3) uint8)`` for every readable sample."""
    for sample in iter_samples(source, problems):
        clip = sample.clip
        try:
            frames = decode_clip(clip.mp4)
        except Exception as exc:
            if problems is not None:
                problems.append(SourceProblem(clip.location or "", clip.clip_key, f"decode: {exc}"))
            continue
        yield clip.replace(mp4=None), frames
