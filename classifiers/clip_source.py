"""Where the classifier's clips come from: a pipeline run's output directory or WebDataset shard paths.

``--clips`` accepts a run output directory (its ``shards/*.tar`` are read), a glob (``out/shards/*.tar``),
a single tar, or webdataset brace notation (``shard-{00000..00003}.tar``). Samples are parsed with
``ShardSample.from_wds`` -- the one definition of the shard format -- and decoded with
``schemas.clip_codec.decode_clip``. A sample that cannot be parsed or decoded is reported (``SourceProblem``)
and skipped: one bad sample must not stop a training run.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator

import braceexpand
import numpy as np
import webdataset as wds

from schemas import Clip, ShardSample
from schemas.clip_codec import decode_clip


class ClipSourceError(FileNotFoundError):
    """A ``--clips`` argument names no shards (a user error: reported without a traceback by the CLI)."""


@dataclasses.dataclass(frozen=True)
class SourceProblem:
    """A sample that could not be read, and why."""

    shard: str
    key: str
    error: str


def shard_paths(source: str) -> list[str]:
    """The tar files a ``--clips`` argument names, sorted; raises ``ClipSourceError`` if none."""
    if os.path.isdir(source):
        base = os.path.join(source, "shards") if os.path.isdir(os.path.join(source, "shards")) else source
        paths = sorted(glob.glob(os.path.join(base, "*.tar")))
    else:
        paths = sorted({p for pattern in braceexpand.braceexpand(source) for p in glob.glob(pattern)})
    if not paths:
        what = "directory has no *.tar (nor shards/*.tar)" if os.path.isdir(source) else "matches no *.tar file"
        raise ClipSourceError(f"--clips {source!r}: {what}; give a pipeline output directory, a shard glob "
                              f"or a brace pattern (shard-{{00000..00009}}.tar)")
    return paths


def iter_samples(source: str, problems: list[SourceProblem] | None = None) -> Iterator[ShardSample]:
    """Every parseable ``ShardSample`` in the shards ``source`` names, in shard order."""
    for path in shard_paths(source):
        try:
            for raw in wds.WebDataset(path, shardshuffle=False, empty_check=False):
                try:
                    yield ShardSample.from_wds(raw)
                except Exception as exc:  # a malformed sample: record it, keep reading
                    if problems is not None:
                        problems.append(SourceProblem(path, str(raw.get("__key__")), f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # an unreadable tar: record it, move to the next shard
            if problems is not None:
                problems.append(SourceProblem(path, "", f"{type(exc).__name__}: {exc}"))


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
