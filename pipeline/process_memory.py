"""How a worker process hands memory it freed back to the machine (glibc's allocator, on Linux).

Why this exists: CPython, pyarrow's buffers and gRPC's messages allocate through glibc's ``malloc``, which
keeps freed pages for reuse instead of returning them. A part writer's transient buffers (a part's rows,
its Arrow table, the sorted copy, the Parquet bytes) are freed after each part, but the pages stay in the
worker's RSS, and part after part the heap's kept pages grew: at 1M outcomes they were 46-72 MB of the
worker's peak (docs/pipeline.md, "What holds a worker's peak"). ``malloc_trim(0)`` returns them. It walks
the heap once: measured ~15 ms on a fragmented 170 MB heap with pages to give back, 1-2 ms when there are
none, against a part's ~1 s of work; one call per part is ~3,000 calls per table at the paper's 60M outcomes.

Elsewhere (macOS, musl) there is no ``malloc_trim`` and ``release_freed`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` or None (looked up once per process)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed() -> bool:
    """Return the freed pages of the process's malloc heaps to the OS; True when there is a way to (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
