"""Write-once storage through Beam's ``FileSystems``: local paths by default, ``gs://`` on Dataflow.

A reader must never mistake a partial file for a complete one. Locally a file is written under a temporary name
and renamed into place (atomic on POSIX). On object stores the final name is written directly: an upload appears
only when finalized, whole, while a rename there would be a copy plus a delete and leave orphans behind.
``is_transient`` tells a storage hiccup (503, timeout, reset) from a permanent failure; transient errors are
retried inside the step with bounded back-off (``retrying``, ``RETRY``). An operation still failing raises
``StorageFailed``: the step records ``failed: storage_error`` and the job goes on, because Dataflow fails a whole
job after four failures of one bundle. Nothing caches a storage failure, so a rerun retries it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar

from apache_beam.io.filesystems import FileSystems

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK_BYTES = 1 << 20
TEMP_INFIX = ".tmp-"  # temporaries are ``.<name>.tmp-<random>`` beside their destination
# Exceptions of storage clients that say "try again" (google-api-core, boto, requests): matched by name so
# that this module needs none of those libraries installed.
TRANSIENT_ERRORS = frozenset({
    "ServiceUnavailable", "TooManyRequests", "InternalServerError", "GatewayTimeout", "BadGateway",
    "DeadlineExceeded", "RetryError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError",
    "TransientStorageError"})


class StorageFailed(RuntimeError):  # noqa: N818 - an outcome's cause, named as the reason it becomes
    """A storage operation that still failed transiently after ``RETRY.attempts`` attempts. Not transient
    itself (retrying is done): the step that meets it ends its item ``failed: storage_error``."""


def is_transient(exc: BaseException) -> bool:
    """True for errors the same request may not hit again (timeouts, connection resets, 429/5xx answers),
    looking through the causes Beam's wrappers (``BeamIOError``) keep, but not into a ``StorageFailed``
    (its retries are spent)."""
    seen = set()
    todo = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen or isinstance(err, StorageFailed):
            continue
        seen.add(id(err))
        if isinstance(err, ConnectionError | TimeoutError) or type(err).__name__ in TRANSIENT_ERRORS:
            return True
        todo += [err.__cause__, err.__context__]
        details = getattr(err, "exception_details", None)  # BeamIOError: {path: exception}
        if isinstance(details, dict):
            todo += [e for e in details.values() if isinstance(e, BaseException)]
    return False


def failed_storage(exc: BaseException) -> StorageFailed | None:
    """The ``StorageFailed`` in ``exc``'s chain (a step's wrapper may hide it), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorageFailed):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def refused(exc: BaseException) -> bool:
    """True when ``exc`` is the store refusing (``storage_error``): the retries spent (``StorageFailed`` in its
    chain), or a transient error that reached a step unretried. A step ends its item ``failed: storage_error``
    then, which a rerun retries; other errors are the step's own reasons."""
    return failed_storage(exc) is not None or is_transient(exc)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Attempts per storage operation and the pauses between them: base * 2**n, at most ``max_s``. The
    default waits 0.5 + 1 + 2 + 4 s over 5 attempts (~8 s, on top of the storage client's own retries), so an
    item the storage keeps refusing costs a worker seconds, not its bundle."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 8.0

    def pause_s(self, attempt: int) -> float:
        return min(self.max_s, self.base_s * (2 ** attempt))


RETRY = RetryPolicy()


def retrying(what: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, repeated after transient errors with ``RETRY``'s back-off; ``StorageFailed``
    (naming ``what``, e.g. "reading gs://b/x") once the attempts are spent. Other errors pass through at once."""
    policy = RETRY
    for attempt in range(policy.attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt + 1 >= policy.attempts:
                raise StorageFailed(f"{what}: {type(exc).__name__}: {exc} (still failing after {policy.attempts} "
                                    "attempts)") from exc
            log.info("storage: %s: %s: %s; attempt %d of %d, retrying", what, type(exc).__name__, exc,
                     attempt + 1, policy.attempts)
            time.sleep(policy.pause_s(attempt))
    raise AssertionError("unreachable")


def is_local(path: str) -> bool:
    """True for plain paths and file:// URLs (Beam's local filesystem)."""
    return FileSystems.get_scheme(path) in (None, "file")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def exists(path: str) -> bool:
    return retrying(f"checking {path}", FileSystems.exists, path)


def size_bytes(path: str) -> int:
    if is_local(path):
        return os.path.getsize(local_path(path))
    return retrying(f"sizing {path}", lambda: FileSystems.match([path])[0].metadata_list[0].size_in_bytes)


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

    def remote() -> tuple[str, int]:
        with FileSystems.open(path) as f:
            return sha256_stream(f)

    return retrying(f"reading {path}", remote)


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

    def upload() -> None:
        with open(local_src, "rb") as src, atomic_create(dest) as out:
            shutil.copyfileobj(src, out, CHUNK_BYTES)

    retrying(f"writing {dest}", upload)


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
            out.close()  # finalizes the upload
        except BaseException:  # the block failed, or the finalizing did: never a second, later finalize
            _abandon(out)
            raise
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


def match(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (Beam's glob), sorted; the listing is retried after transient errors."""
    return sorted(m.path for m in retrying(f"listing {pattern}",
                                           lambda: FileSystems.match([pattern])[0].metadata_list))


def delete(paths: list[str]) -> None:
    """Delete ``paths``, retried after transient errors (a path an earlier attempt deleted is not asked again)."""

    def present() -> None:
        left = [path for path in paths if FileSystems.exists(path)]
        if left:
            FileSystems.delete(left)

    if paths:
        retrying(f"deleting {paths[0]}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else ""), present)


def sweep_temporaries(directory: str) -> list[str]:
    """Delete the temporaries (``.<name>.tmp-*``) writers killed mid-write left in ``directory``. Call it when
    no writer can be at work there (the end of a run)."""
    try:
        stale = match(FileSystems.join(directory, f".*{TEMP_INFIX}*"))
    except Exception:  # noqa: BLE001 - nothing to sweep where nothing can be listed
        return []
    delete(stale)
    return stale


def write_bytes(dest: str, data: bytes) -> None:
    """Write a small file atomically (``atomic_create``), retried after transient errors."""

    def write() -> None:
        with atomic_create(dest) as out:
            out.write(data)

    retrying(f"writing {dest}", write)


def read_bytes(path: str) -> bytes:
    def read() -> bytes:
        with FileSystems.open(path) as f:
            return f.read()

    return retrying(f"reading {path}", read)


# ---- ranged reads -------------------------------------------------------------------------------------------
def read_range(path: str, offset: int, size: int) -> bytes:
    """Exactly ``size`` bytes of ``path`` from ``offset``, in one request where the store allows it.

    Why not ``FileSystems.open`` + ``seek`` + ``read``: on GCS, Beam's reader fetches the object's metadata on
    every open and reads 16 MB ahead, so reading one ~140 KB clip out of a pack costs two requests and up to the
    whole pack. Here a local file is read with ``pread``, a ``gs://`` object with one ranged GET of exactly the
    range (google-cloud-storage, the client Beam itself uses), and any other scheme through the reader
    registered for it in ``RANGE_READERS``, else through ``FileSystems`` (correct, but it may read ahead).
    ValueError when the file is shorter than ``offset + size``.
    """
    if size == 0:
        return b""
    scheme = FileSystems.get_scheme(path)
    if scheme in (None, "file"):
        data = _pread(local_path(path), offset, size)
    elif scheme in RANGE_READERS:
        data = retrying(f"reading {path}", RANGE_READERS[scheme], path, offset, size)
    else:
        def read() -> bytes:
            with FileSystems.open(path) as f:
                f.seek(offset)
                return f.read(size)

        data = retrying(f"reading {path}", read)
    if len(data) != size:
        raise ValueError(f"{path}: {len(data)} of {size} bytes at offset {offset} (the file is shorter)")
    return data


def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        parts, got = [], 0
        while got < size:
            part = os.pread(fd, size - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)
    finally:
        os.close(fd)


_GCS_CLIENT = None
_GCS_LOCK = threading.Lock()
# the client's connection pool, shared by the process's threads: 64 ranged reads in flight per shard writer
# (clip_store.READ_CONCURRENCY), a few writers at once per worker process (Dataflow: one per harness thread)
GCS_CONNECTIONS = 256


def _gcs_client():
    """The process's GCS client, made once: Beam's own (its credentials, its project), with a connection pool as
    large as the reads in flight (requests' default of 10 would open and drop a connection per extra read)."""
    global _GCS_CLIENT
    with _GCS_LOCK:
        if _GCS_CLIENT is None:
            import requests.adapters
            from apache_beam.io.gcp import gcsio

            client = gcsio.GcsIO().client
            client._http.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=GCS_CONNECTIONS))
            _GCS_CLIENT = client
        return _GCS_CLIENT


def _gcs_range(path: str, offset: int, size: int) -> bytes:
    """One ranged GET (``Range: bytes=offset-end``). ``raw_download``: the stored bytes, never a decompressed
    transcoding of them; no checksum (a range has none to compare with)."""
    from apache_beam.io.gcp import gcsio

    bucket, name = gcsio.parse_gcs_path(path)
    return _gcs_client().bucket(bucket).blob(name).download_as_bytes(start=offset, end=offset + size - 1,
                                                                     raw_download=True, checksum=None)


# scheme -> read_range(path, offset, size) for object stores with ranged GETs (an S3 reader would go here)
RANGE_READERS: dict[str, Callable[[str, int, int], bytes]] = {"gs": _gcs_range}


def delete_quietly(path: str) -> None:
    try:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception:  # noqa: BLE001 - best-effort cleanup of a stale file
        pass
