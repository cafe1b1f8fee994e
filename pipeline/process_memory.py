"""How a worker process hands memory it freed back to the machine (glibc's allocator, on Linux).

Why this exists: CPython, pyarrow's buffers and gRPC's messages allocate through glibc's ``malloc``, which
keeps freed pages for reuse instead of returning them. A part writer's transient buffers (a part's rows,
its Arrow table, the sorted copy, the Parquet bytes) are freed after each part, but the pages stay in the
worker's RSS, and part after part the heap's kept pages grew: at 1M outcomes they were 46-72 MB of the
worker's peak (docs/pipeline.md, "What holds a worker's peak"). ``malloc_trim(0)`` returns them. It walks
the heap once: measured ~15 ms on a fragmented 170 MB heap with pages to give back, 1-2 ms when there are
none, against a part's ~1 s of work; one call per part is ~3,000 calls per table at the paper's 60M outcomes.

Elsewhere (macOS, musl) there is no ``malloc_trim`` and ``release_freed`` does nothing.

``ALLOCATOR_ENV`` is glibc's tuning for the worker processes, as environment variables because glibc reads
them at process start and Beam starts the workers (local runs set them before that; the worker image sets the
same values, which ``tests/pipeline/test_process_memory.py`` checks):

- ``MALLOC_ARENA_MAX=2``: glibc gives each thread its own arena (up to 8 per core) and rarely returns what
  they freed, so each stage's transient buffers stayed in RSS; the 100k worker peak fell from 823 to 695 MB.

Measured and left out: ``MALLOC_MMAP_THRESHOLD_=131072`` (blocks of 128 KB and more always mapped, and given
back when freed; by default glibc raises that threshold after the first such free, and Beam's 10-16 MB
data-plane buffers then stay in the heap). It took the 1M audit's worker peak from 597 to 520 MB at no time
cost there, but segmentation of 720p sources, where decoders allocate source-size frames, used 1-2% more CPU
(within the noise of four runs), and segmentation is the job's main cost while the audit's peak does not
size the workers (docs/pipeline.md, "What holds a worker's peak").
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
