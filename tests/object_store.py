"""A fake object store registered with Beam (``fakeobj://``): the one fake in these tests, as no real one is reachable.

It behaves like the parts of an object store the pipeline's commits depend on: no directories; an upload visible
only once closed, never when ``terminate``d; ``rename`` a copy then a delete. Faults are injected by operation and
path: transient (``ServiceUnavailable``), permanent, or ``Crash`` (a worker killed there); every operation is
logged. Reads are modelled on GCS through Beam, so they can be counted: ``open`` is a metadata request plus ranged
GETs of ``READ_AHEAD`` bytes (Beam's 16 MB buffer); ``read_range`` (this scheme's ``storage.RANGE_READERS`` entry)
is one GET of exactly the range. ``requests`` and ``bytes_read`` count them; ``latency_s`` is slept per request,
outside the lock, so requests overlap. State is class-level (``FakeObjectStore.reset()`` empties it); Beam finds
the filesystem by its scheme once this module is imported, in that process.
"""

from __future__ import annotations

import collections
import copy
import fnmatch
import io
import threading
import time

from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem

SCHEME = "fakeobj"


class ServiceUnavailable(Exception):  # noqa: N818 - named as google-api-core's 503 error
    """A transient error: the same request a moment later succeeds."""


class Crash(BaseException):
    """The worker dies here: no cleanup in the code under test may count on running after it."""


class _Upload(io.BytesIO):
    def __init__(self, store: type[FakeObjectStore], path: str):
        super().__init__()
        self._store, self._path, self._terminated = store, path, False

    def terminate(self) -> None:
        self._terminated = True
        super().close()

    def close(self) -> None:
        if not self.closed and not self._terminated:
            self._store._fault("finalize", self._path)
            self._store._request("upload")
            with self._store.lock:
                self._store.objects[self._path] = self.getvalue()
                self._store.log.append(("finalize", self._path))
        super().close()


READ_AHEAD = 16 * 1024 * 1024  # Beam's GCS reader's buffer (gcsio.DEFAULT_READ_BUFFER_SIZE)


class _Download:
    """An object's bytes as Beam's GCS reader serves them (google-cloud-storage's ``BlobReader``): a read past
    the buffer is one ranged GET of at least ``READ_AHEAD`` bytes from the position; a seek keeps the buffer
    when it lands inside it."""

    def __init__(self, store: type[FakeObjectStore], path: str):
        self._store, self._path = store, path
        self._size = len(store.objects[path])
        self._pos, self._buffer, self._buffer_at = 0, b"", 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence] + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if want <= 0:
            return b""
        start = self._pos - self._buffer_at
        if not 0 <= start <= len(self._buffer) or start + want > len(self._buffer):
            self._buffer = self._store._get(self._path, self._pos, max(want, READ_AHEAD))
            self._buffer_at, start = self._pos, 0
        data = self._buffer[start:start + want]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self.closed, self._buffer = True, b""

    def __enter__(self) -> _Download:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FakeObjectStore(FileSystem):
    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    faults: list[list] = []  # [operation, path substring, exception, times left]
    lock = threading.Lock()
    latency_s = 0.0  # slept per request
    requests: collections.Counter = collections.Counter()  # kind ("metadata", "get", "upload") -> count
    bytes_read = 0

    @classmethod
    def _request(cls, kind: str, nbytes: int = 0) -> None:
        if cls.latency_s:
            time.sleep(cls.latency_s)
        with cls.lock:
            cls.requests[kind] += 1
            cls.bytes_read += nbytes

    @classmethod
    def _get(cls, path: str, offset: int, size: int) -> bytes:
        """One ranged GET."""
        cls._fault("get", path)
        data = cls.objects[path][offset:offset + size]
        cls._request("get", len(data))
        return data

    @classmethod
    def read_range(cls, path: str, offset: int, size: int) -> bytes:
        """``storage.read_range`` on this store: one ranged GET of exactly the range."""
        if path not in cls.objects:
            raise FileNotFoundError(path)
        cls.log.append(("range", path))
        return cls._get(path, offset, size)

    @classmethod
    def scheme(cls):
        return SCHEME

    @classmethod
    def reset(cls) -> None:
        cls.objects.clear()
        cls.log.clear()
        cls.faults.clear()
        cls.requests.clear()
        cls.latency_s, cls.bytes_read = 0.0, 0
        cls.every, cls.operations = None, 0

    @classmethod
    def inject(cls, operation: str, path_part: str, exc: BaseException, times: int = 1) -> None:
        cls.faults.append([operation, path_part, exc, times])

    every: tuple[int, BaseException, tuple[str, ...]] | None = None  # (n, error, path prefixes)
    operations = 0

    @classmethod
    def inject_every(cls, n: int, exc: BaseException, prefixes: tuple[str, ...] = ("",), phase: int = 0) -> None:
        """Every ``n``-th operation on a path under one of ``prefixes`` (default: all), counted over those
        operations from ``phase``, raises ``exc``; its retry is another operation, so each failure happens once."""
        cls.every, cls.operations = (n, exc, prefixes), phase

    @classmethod
    def _fault(cls, operation: str, path: str) -> None:
        if cls.every is not None and path.startswith(cls.every[2]):
            with cls.lock:
                cls.operations += 1
                due = cls.operations % cls.every[0] == 0
            if due:
                cls.log.append(("fault", f"{operation} {path}"))
                raise copy.copy(cls.every[1])
        for fault in cls.faults:
            if fault[0] == operation and fault[1] in path and fault[3] > 0:
                fault[3] -= 1
                raise copy.copy(fault[2])

    @classmethod
    def ops(cls, operation: str | None = None) -> list[tuple[str, str]]:
        return [entry for entry in cls.log if operation is None or entry[0] == operation]

    # ---- Beam's FileSystem interface ----------------------------------------------------------------------
    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        self.log.append(("list", dir_or_prefix))
        for path, data in sorted(self.objects.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 0.0)

    def match(self, patterns, limits=None):
        from apache_beam.io.filesystem import MatchResult

        results = []
        for pattern in patterns:
            self._fault("list", pattern)
            self.log.append(("list", pattern))
            found = [FileMetadata(p, len(d), 0.0) for p, d in sorted(self.objects.items())
                     if fnmatch.fnmatchcase(p, pattern)]
            results.append(MatchResult(pattern, found))
        return results

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        self._fault("create", path)
        self.log.append(("create", path))
        return _Upload(type(self), path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        self._fault("open", path)
        self.log.append(("open", path))
        if path not in self.objects:
            raise BeamIOError(f"open {path}", {path: FileNotFoundError(path)})
        self._request("metadata")
        return _Download(type(self), path)

    def copy(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names, strict=True):
            self._fault("copy", dst)
            self.log.append(("copy", dst))
            self.objects[dst] = self.objects[src]

    def rename(self, source_file_names, destination_file_names):
        """Copy, then delete: what an object store's rename is."""
        self.copy(source_file_names, destination_file_names)
        for src in source_file_names:
            self._fault("rename-delete", src)
        self.delete(source_file_names)

    def exists(self, path):
        self._fault("exists", path)
        return path in self.objects

    def size(self, path):
        return len(self.objects[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(len(self.objects[path]))

    def metadata(self, path):
        return FileMetadata(path, len(self.objects[path]), 0.0)

    def delete(self, paths):
        missing = {}
        for path in paths:
            self._fault("delete", path)
            self.log.append(("delete", path))
            if self.objects.pop(path, None) is None:
                missing[path] = FileNotFoundError(path)
        if missing:
            raise BeamIOError("delete", missing)


def _register_range_reader() -> None:
    from pipeline.io import storage

    storage.RANGE_READERS[SCHEME] = FakeObjectStore.read_range


_register_range_reader()


def packed_clips(root: str, videos: int, clips_per_video: int, clip_bytes: int, keep_every: int = 2,
                 seed: int = 0) -> list:
    """Fill the store with one clip store pack per video (``clips_per_video`` random clips of ``clip_bytes``
    back to back) and return references to every ``keep_every``-th clip: what reaches the shard writer after
    the quality stage dropped the rest."""
    import random

    from pipeline.io import clip_store
    from schemas import Clip, ids

    rng = random.Random(seed)
    kept = []
    for v in range(videos):
        video_id = f"video{v:06d}"
        path = f"{root}/{video_id}{clip_store.PACK_SUFFIX}"
        FakeObjectStore.objects[path] = rng.randbytes(clips_per_video * clip_bytes)
        for c in range(0, clips_per_video, keep_every):
            kept.append(Clip(clip_key=ids.clip_key(video_id, 16.0 * c), video_id=video_id, clip_index=c,
                             start_s=16.0 * c, end_s=16.0 * (c + 1), num_frames=160, fps=10.0, width=160,
                             height=90, location=clip_store.reference(path, c * clip_bytes, clip_bytes)))
    return kept
