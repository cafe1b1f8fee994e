"""Write clips as one WebDataset tar shard, deterministically and atomically: the one shard writer.

The pipeline's shard stage, ``procgen-dataset``, the behaviour-cloning expert and the tests all write shards here,
so every shard has the same layout (``schemas.clip_format``) and the same bytes for the same clips: samples
sorted by clip key, tar headers with mtime 0, mode 0444 and a fixed owner, the JSON from ``ShardSample.to_wds``.

The destination and the clips' byte source are parameters (by default a local temporary file renamed into place,
and inline mp4 bytes); the pipeline passes its object-store writer and clip store, keeping ``schemas/`` free of
Beam. The tar is written with ``tarfile``, header for header what ``webdataset.TarWriter`` writes
(tests/schemas/test_shard_writer.py compares), because importing ``webdataset`` imports torch into every worker
that writes shards (docs/measurements/2026-12-04-audit-worker-memory.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from schemas.clip_format import TAR_MODE, TAR_MTIME, TAR_OWNER
from schemas.records import Clip, ShardSample


@contextlib.contextmanager
def atomic_local_file(dest: str) -> Iterator[BinaryIO]:
    """A write stream whose bytes appear at ``dest`` only when the ``with`` block ends without error (a
    temporary name unique to this writer beside ``dest``, renamed into place; parent directories are made)."""
    directory, name = os.path.split(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as out:
            yield out
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def inline_bytes(clip: Clip) -> bytes:
    """The clip's mp4 carried in the record (the default source of a shard's bytes)."""
    if clip.mp4 is None:
        raise ValueError(f"clip {clip.clip_key!r} has no encoded bytes (location {clip.location!r})")
    return clip.mp4


class _Hashing:
    """A write stream that hashes what passes through (the shard's sha256, without reading it back)."""

    def __init__(self, stream):
        self._stream, self.digest = stream, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self._stream.write(data)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def write_shard(path: str, clips: Iterable[Clip], read: Callable[[Clip], bytes | None] = inline_bytes,
                create: Callable[[str], contextlib.AbstractContextManager[BinaryIO]] = atomic_local_file
                ) -> tuple[list[Clip], str]:
    """Write ``clips`` sorted by key to ``path``; return the written ones in order and the file's sha256.

    ``read`` gives a clip's mp4 (called one clip at a time, in key order, so memory holds one clip), or None
    to leave the clip out (the caller records why); ``create`` opens the atomic write stream for ``path``.
    """
    ordered = sorted(clips, key=lambda c: c.clip_key)
    written = []
    with create(path) as f:
        hashing = _Hashing(f)
        with tarfile.open(fileobj=hashing, mode="w|") as tar:
            for clip in ordered:
                data = read(clip)
                if data is None:
                    continue
                write_sample(tar, ShardSample.from_clip(clip.replace(mp4=data, location="")).to_wds())
                written.append(clip)
    return written, hashing.digest.hexdigest()


def write_sample(tar: tarfile.TarFile, sample: dict) -> None:
    """One WebDataset sample (``{"__key__": key, ext: bytes or str, ...}``) as ``<key>.<ext>`` members in
    extension order, with the fixed headers of ``schemas.clip_format``."""
    key = sample["__key__"]
    for ext in sorted(k for k in sample if not k.startswith("_")):
        value = sample[ext]
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
        info.uname = info.gname = TAR_OWNER
        tar.addfile(info, io.BytesIO(data))
