"""A fake object store registered with Beam (``fakeobj://``): the one fake in these tests, because a real one
(GCS, S3) cannot be reached from them.

It behaves like the parts of an object store the pipeline's commits depend on: no directories; an upload
becomes visible only when closed (finalized) and never when ``terminate``d (google-cloud-storage's
``BlobWriter``); ``rename`` is a copy followed by a delete, two steps with a moment in between. Faults can be
injected by operation and path: a transient error (``ServiceUnavailable``, named like google-api-core's), a
permanent one, or ``Crash``, a ``BaseException`` standing for a worker killed at that point. Every operation is
logged, so a test can say which steps a commit took.

State is class-level (one store per test process); ``FakeObjectStore.reset()`` empties it. Beam finds the
filesystem by its scheme once this module is imported, in the process that uses it (the in-process runner).
"""

from __future__ import annotations

import fnmatch
import io
import threading

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
            with self._store.lock:
                self._store.objects[self._path] = self.getvalue()
                self._store.log.append(("finalize", self._path))
        super().close()


class FakeObjectStore(FileSystem):
    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    faults: list[list] = []  # [operation, path substring, exception, times left]
    lock = threading.Lock()

    @classmethod
    def scheme(cls):
        return SCHEME

    @classmethod
    def reset(cls) -> None:
        cls.objects.clear()
        cls.log.clear()
        cls.faults.clear()

    @classmethod
    def inject(cls, operation: str, path_part: str, exc: BaseException, times: int = 1) -> None:
        cls.faults.append([operation, path_part, exc, times])

    @classmethod
    def _fault(cls, operation: str, path: str) -> None:
        for fault in cls.faults:
            if fault[0] == operation and fault[1] in path and fault[3] > 0:
                fault[3] -= 1
                raise fault[2]

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
        return io.BytesIO(self.objects[path])

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
