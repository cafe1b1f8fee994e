"""Write-once storage through Beam's ``FileSystems``: local paths by default, ``gs://`` on Dataflow.

A reader must never mistake a partial file for a complete one. Locally every file is written under a
temporary name in the same directory and renamed into place when complete (atomic on POSIX). On object stores
(``gs://``, ``s3://``) the final name is written directly: an upload becomes visible only when it is
finalized, whole, and an abandoned one (``terminate``) never appears; a rename there would be a copy plus a
delete, i.e. a moment with the old object gone, and a killed worker would leave temporaries nobody matches.

Errors: ``is_transient`` tells a storage hiccup (the runner should retry the bundle) from a permanent
failure (recorded as an outcome). Completion of a downloaded video is marked by a second file written after
it (see ``pipeline.download``), following the completion-marker idea of img2dataset/datatrove.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import BinaryIO, NoReturn

from apache_beam.io.filesystems import FileSystems

CHUNK_BYTES = 1 << 20
TEMP_INFIX = ".tmp-"  # temporaries are ``.<name>.tmp-<random>`` beside their destination
# Exceptions of storage clients that say "try again" (google-api-core, boto, requests): matched by name so
# that this module needs none of those libraries installed.
TRANSIENT_ERRORS = frozenset({
    "ServiceUnavailable", "TooManyRequests", "InternalServerError", "GatewayTimeout", "BadGateway",
    "DeadlineExceeded", "RetryError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError",
    "TransientStorageError"})


def is_transient(exc: BaseException) -> bool:
    """True for errors the same request may not hit again (timeouts, connection resets, 429/5xx answers),
    looking through the causes Beam's wrappers (``BeamIOError``) keep. A transient error should reach the
    runner, which retries the bundle; anything else becomes an outcome with a reason."""
    seen = set()
    todo = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConnectionError | TimeoutError) or type(err).__name__ in TRANSIENT_ERRORS:
            return True
        todo += [err.__cause__, err.__context__]
        details = getattr(err, "exception_details", None)  # BeamIOError: {path: exception}
        if isinstance(details, dict):
            todo += [e for e in details.values() if isinstance(e, BaseException)]
    return False


class ItemStorageError(RuntimeError):
    """A transient storage error re-raised naming the item it stopped (``reraise_naming``): still transient
    (its cause is), so the runner retries the bundle; if the job fails, its one line says which item."""


def reraise_naming(item: str, exc: BaseException) -> NoReturn:
    """Re-raise the transient ``exc`` as an ``ItemStorageError`` naming ``item`` ("video 'abc'"), once."""
    if isinstance(exc, ItemStorageError):
        raise exc
    raise ItemStorageError(f"{item}: {type(exc).__name__}: {exc}") from exc


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
    name = f".{tail}{TEMP_INFIX}{uuid.uuid4().hex[:12]}"
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

    Locally: a temporary name unique to this writer beside ``dest`` (so concurrent or retried writers of the
    same file never share one), renamed into place at the end; on error it is deleted and ``dest`` keeps what
    it had. Beam's local filesystem makes parent directories (``exist_ok``: parallel writers into a new
    directory do not race). On an object store: ``dest`` itself, finalized on success and abandoned
    (``terminate``, as google-cloud-storage's writer does on error) otherwise, so ``dest`` keeps what it had.
    """
    if not is_local(dest):
        out = FileSystems.create(dest)
        try:
            yield out
        except BaseException:
            _abandon(out)
            raise
        out.close()
        return
    dest = local_path(dest)
    tmp = _temp_name(dest)
    try:
        with FileSystems.create(tmp) as out:
            yield out
        FileSystems.rename([tmp], [dest])
    except BaseException:
        delete_quietly(tmp)
        raise


def _abandon(stream) -> None:
    """Cancel an object-store upload without finalizing it (a plain ``close`` would publish the part)."""
    for wrapped in (stream, getattr(stream, "raw", None), getattr(stream, "_file", None)):
        terminate = getattr(wrapped, "terminate", None)
        if callable(terminate):
            with contextlib.suppress(Exception):  # the upload is abandoned either way
                terminate()
            return


def sweep_temporaries(directory: str) -> list[str]:
    """Delete the temporaries (``.<name>.tmp-*``) writers killed mid-write left in ``directory``. Call it when
    no writer can be at work there (the end of a run)."""
    pattern = FileSystems.join(directory, f".*{TEMP_INFIX}*")
    try:
        stale = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # noqa: BLE001 - nothing to sweep where nothing can be listed
        return []
    if stale:
        FileSystems.delete(stale)
    return stale


def write_bytes(dest: str, data: bytes) -> None:
    """Write a small file atomically (``atomic_create``)."""
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
