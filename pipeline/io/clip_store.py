"""The clip store: encoded clips written once, by the worker that cut them, and passed on by reference.

Why: carried inside every element, a clip's mp4 would be shuffled and held by the runner between stages (and
until the report's thumbnails). Instead each video's clips are appended to one pack in the segment cache
(``cache/segment/<entry>.clips.bin``), and the ``Clip`` records after Segment carry a ``location`` instead::

    gs://bucket/out/cache/segment/<entry>.clips.bin#1234567:140213     (file # offset : size)

Readers take exactly the bytes they need: ``Reader`` streams a pack front to back (the fused quality stage);
``in_order`` reads each clip of a shard with one ranged request, ``READ_CONCURRENCY`` in flight, in the writer's
order; ``clip_bytes`` reads one clip (thumbnails). A reference in the cache is relative to the cache directory, so
an entry does not depend on where the output is. Beam's ``FileSystems`` is imported where files are opened: the
isolated segment child imports this module and must start without Beam (``pipeline.video.cut``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from schemas import Clip

PACK_SUFFIX = ".clips.bin"


def reference(path: str, offset: int, size: int) -> str:
    return f"{path}#{offset}:{size}"


def is_reference(location: str) -> bool:
    try:
        parse(location)
    except ValueError:
        return False
    return True


def parse(location: str) -> tuple[str, int, int]:
    """(file, offset, size) of a store reference; ValueError for anything else (a shard path, '')."""
    path, sep, span = location.rpartition("#")
    offset, colon, size = span.partition(":")
    if not sep or not colon or not offset.isdigit() or not size.isdigit():
        raise ValueError(f"not a clip store reference: {location!r}")
    return path, int(offset), int(size)


def resolve(location: str, base_dir: str) -> str:
    """A reference relative to ``base_dir`` (as stored in the cache) made absolute."""
    from apache_beam.io.filesystems import FileSystems

    path, offset, size = parse(location)
    return reference(FileSystems.join(base_dir, path), offset, size)


def relative(location: str) -> str:
    """The reference with only the file's base name: what does not depend on the output directory."""
    path, offset, size = parse(location)
    return reference(path.rsplit("/", 1)[-1], offset, size)


def size_of(clip: Clip) -> int:
    """Encoded bytes of a clip, inline or by reference (0 when it has neither)."""
    if clip.mp4 is not None:
        return len(clip.mp4)
    return parse(clip.location)[2] if is_reference(clip.location) else 0


class Reader:
    """Reads clips' bytes by reference, keeping the last file open (sequential reads within a pack)."""

    def __init__(self):
        self._path: str | None = None
        self._file: BinaryIO | None = None

    def read(self, clip: Clip) -> bytes:
        """The clip's mp4: inline bytes as they are, else read from the store. ValueError when it has none;
        ``storage.StorageFailed`` when the store kept refusing (each attempt reopens the pack)."""
        if clip.mp4 is not None:
            return clip.mp4
        if not is_reference(clip.location):
            raise ValueError(f"clip has no encoded bytes (location {clip.location!r})")
        from pipeline.io import storage

        path, offset, size = parse(clip.location)
        data = storage.retrying(f"reading {path}", self._read, path, offset, size)
        if len(data) != size:
            raise ValueError(f"{path}: {len(data)} of {size} bytes at offset {offset} (truncated pack)")
        return data

    def _read(self, path: str, offset: int, size: int) -> bytes:
        from apache_beam.io.filesystems import FileSystems

        try:
            if path != self._path:
                self.close()
                self._file, self._path = FileSystems.open(path), path
            if self._file.tell() != offset:
                self._file.seek(offset)
            return self._file.read(size)
        except Exception:
            self.close()  # the next attempt opens the pack again
            raise

    def close(self) -> None:
        file, self._file, self._path = self._file, None, None
        if file is not None:
            file.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_exact(clip: Clip) -> bytes:
    """The clip's mp4: inline bytes as they are, else one ranged read of exactly its bytes from the store.
    ValueError when it has none, or the store holds fewer."""
    if clip.mp4 is not None:
        return clip.mp4
    if not is_reference(clip.location):
        raise ValueError(f"clip has no encoded bytes (location {clip.location!r})")
    from pipeline.io import storage

    path, offset, size = parse(clip.location)
    return storage.read_range(path, offset, size)


clip_bytes = read_exact  # one clip's mp4 (the report's thumbnails, tests)

READ_CONCURRENCY = 64  # ranged reads in flight per shard writer: ~64 x 140 KB held, 50 ms latency hidden


def reads_in_flight(clips: Iterable[Clip]) -> int:
    """How many reads a writer of ``clips`` keeps in flight: ``READ_CONCURRENCY`` when some clip lives on an
    object store (each read waits on a request), 1 when all are inline or local files (a ``pread`` waits on
    nothing a thread pool would hide, and the pool's threads cost CPU)."""
    from pipeline.io import storage

    remote = any(not storage.is_local(parse(c.location)[0]) for c in clips
                 if c.mp4 is None and is_reference(c.location))
    return READ_CONCURRENCY if remote else 1


class in_order:  # noqa: N801 - used like a function: ``with in_order(clips) as read``
    """``read(clip)`` for clips asked for in the order given, each fetched by ``read_exact``, ahead of time when
    ``concurrency`` > 1.

    ``concurrency`` reads run at once on a thread pool (the requests wait on the network, not the GIL) and at
    most ``concurrency`` clips' bytes are held, so memory does not grow with the shard; with 1, each clip is
    read when asked for. Asking out of order is a bug of the caller: ValueError. A read's error is raised when
    its clip is asked for.
    """

    def __init__(self, clips: Iterable[Clip], concurrency: int = READ_CONCURRENCY):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._clips = iter(clips)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="clip-read") if concurrency > 1 else None
        self._pending: collections.deque = collections.deque()
        self._concurrency = concurrency

    def _fill(self) -> None:
        while len(self._pending) < self._concurrency:
            clip = next(self._clips, None)
            if clip is None:
                return
            self._pending.append((clip, self._pool.submit(read_exact, clip) if self._pool else None))

    def read(self, clip: Clip) -> bytes:
        self._fill()
        if not self._pending or self._pending[0][0] is not clip:
            raise ValueError(f"clip {clip.clip_key!r} asked for out of the order given")
        _, future = self._pending.popleft()
        self._fill()
        return future.result() if future is not None else read_exact(clip)

    def __enter__(self) -> Callable[[Clip], bytes]:
        return self.read

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            for _, future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
