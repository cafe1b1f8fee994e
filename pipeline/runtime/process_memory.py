"""How a worker process hands memory it freed back to the machine (glibc's allocator, on Linux).

glibc keeps freed pages for reuse instead of returning them, so a part writer's transient buffers (a part's
rows, its Arrow table, the sorted copy, the Parquet bytes) would stay in the worker's RSS part after part.
``release_freed`` calls ``malloc_trim(0)``: one heap walk per part, milliseconds against a part's ~1 s of work.
Elsewhere (macOS, musl) there is no ``malloc_trim`` and it does nothing.

``ALLOCATOR_ENV`` is glibc's tuning for the worker processes, as environment variables because glibc reads
them at process start and Beam starts the workers (local runs set them before that; the worker image sets the
same values, which ``tests/pipeline/test_process_memory.py`` checks): ``MALLOC_ARENA_MAX=2``, so that the
bundle threads' arenas give back what a stage freed. glibc's mmap threshold is left alone: pinning it lowers
the audit's peak but costs segmentation, the job's main cost, more CPU. Figures:
docs/measurements/2026-12-04-audit-worker-memory.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import MutableMapping

ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": "2"}


def set_allocator_env(env: MutableMapping[str, str] = os.environ) -> None:
    """Put ``ALLOCATOR_ENV`` into ``env`` for the processes started after this, keeping values already set."""
    for name, value in ALLOCATOR_ENV.items():
        env.setdefault(name, value)


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
