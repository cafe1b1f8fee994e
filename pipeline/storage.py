"""Write-once storage through Beam's ``FileSystems``: local paths by default, ``gs://`` on Dataflow.

A reader must never mistake a partial file for a complete one, so every file is written under a temporary
name in the same directory and renamed into place when complete (atomic on POSIX; on object stores the
rename is a copy + delete that publishes the object whole). Completion of a downloaded video is marked by a
second file written after it (see ``pipeline.download``), following the completion-marker idea of
img2dataset/datatrove.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

CHUNK_BYTES = 1 << 20


def is_local(path: str) -> bool:
    """True for plain paths and file:// URLs (Beam's local filesystem)."""
    return FileSystems.get_scheme(path) in (None, "file")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def size_bytes(path: str) -> int:
    if is_local(path):
        return os.path.getsize(local_path(path))
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """(hex sha256, byte count) of a stream, read in chunks so large videos never sit in memory."""
    digest = hashlib.sha256()
    total = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def sha256_file(path: str) -> tuple[str, int]:
    if is_local(path):
        with open(local_path(path), "rb") as f:
            return sha256_stream(f)
    with FileSystems.open(path) as f:
        return sha256_stream(f)


def _temp_name(dest: str) -> str:
    head, tail = dest.rsplit("/", 1) if "/" in dest else ("", dest)
    name = f".{tail}.tmp-{uuid.uuid4().hex[:12]}"
    return f"{head}/{name}" if head else name


def publish_file(local_src: str, dest: str) -> None:
    """Move (local) or upload (remote) a finished local file to ``dest``, appearing there only when whole."""
    if is_local(dest):
        dest = local_path(dest)
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        try:
            os.replace(local_src, dest)  # same filesystem: atomic
            return
        except OSError:  # another device: copy beside the destination first, then rename
            tmp = _temp_name(dest)
            shutil.copyfile(local_src, tmp)
            os.replace(tmp, dest)
            return
    with open(local_src, "rb") as src, atomic_create(dest) as out:
        shutil.copyfileobj(src, out, CHUNK_BYTES)


@contextlib.contextmanager
def atomic_create(dest: str) -> Iterator[BinaryIO]:
    """A write stream whose bytes appear at ``dest`` only when the ``with`` block ends without error.

    The stream goes to a temporary name unique to this writer beside ``dest`` (so concurrent or retried
    writers of the same file never share one), which is renamed into place at the end; on error it is deleted
    and ``dest`` keeps what it had. Parent directories need no creating first: Beam's local filesystem makes
    them (``exist_ok``, so parallel writers into a new directory do not race) and object stores have none.
    """
    if is_local(dest):
        dest = local_path(dest)
    tmp = _temp_name(dest)
    try:
        with FileSystems.create(tmp) as out:
            yield out
        if not is_local(dest) and FileSystems.exists(dest):  # a local rename replaces atomically
            FileSystems.delete([dest])
        FileSystems.rename([tmp], [dest])
    except BaseException:
        delete_quietly(tmp)
        raise


def write_bytes(dest: str, data: bytes) -> None:
    """Write a small file atomically (temporary name, then rename)."""
    with atomic_create(dest) as out:
        out.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def delete_quietly(path: str) -> None:
    try:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception:  # noqa: BLE001 - best-effort cleanup of a stale file
        pass
