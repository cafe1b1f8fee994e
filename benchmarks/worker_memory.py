"""What holds an SDK worker's memory: diagnostics for ``benchmarks/scale_bench.py`` (``--malloc-stats``,
``--memray``), run inside Beam's SDK worker processes through a ``sitecustomize`` on their ``PYTHONPATH``.

Why: a worker's peak RSS alone cannot tell memory that some code holds (growing with the items or bounded)
from memory the allocator keeps after it was freed, nor Beam's own buffers from the pipeline's. These two
answer that at no cost when they are off:

- ``--malloc-stats``: a thread samples RSS and glibc's ``mallinfo2`` every 0.2 s and keeps the peak RSS with
  what malloc held live and free-but-kept at that moment. With ``PYTHONMALLOC=malloc`` Python's objects count
  as live too; with ``WORKER_MEMORY_MALLOC_TRIM=1`` the thread also calls ``malloc_trim(0)`` at each sample,
  which shows how much of the RSS is glibc keeping freed pages.
- ``--memray``: memray (``pip install memray``; not a project dependency) records every allocation with its
  native and Python stack, aggregated at the worker's high-water mark; ``holders`` sorts that peak into the
  buffers that hold it (Beam's output streams, protobuf messages of the data plane, Python objects, ...).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

# Runs in every process that gets the site dir on its path; acts only in SDK workers, and only when asked.
_IS_WORKER = """
import os
def _is_sdk_worker():  # sys.argv is not set yet while site runs: read the command line
    with open("/proc/self/cmdline", "rb") as f:
        return b"sdk_worker_main" in f.read()
"""

MALLOC_STATS_PATCH = _IS_WORKER + """
if os.environ.get("WORKER_MEMORY_MALLOC_STATS") and _is_sdk_worker():
    import ctypes, json, threading, time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    def _sample(path):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        peak = {"rss_mb": 0, "live_mb_at_rss_peak": 0, "free_kept_mb_at_rss_peak": 0, "live_peak_mb": 0}
        trim = os.environ.get("WORKER_MEMORY_MALLOC_TRIM") == "1"  # give glibc's free pages back, each sample
        while True:
            if trim:
                libc.malloc_trim(0)
            m = libc.mallinfo2()
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            live, kept = (m.uordblks + m.hblkhd) / 2**20, m.fordblks / 2**20
            if rss > peak["rss_mb"]:
                peak.update(rss_mb=round(rss), live_mb_at_rss_peak=round(live), free_kept_mb_at_rss_peak=round(kept))
            peak["live_peak_mb"] = max(peak["live_peak_mb"], round(live))
            with open(path + ".tmp", "w") as f:
                json.dump(peak, f)
            os.replace(path + ".tmp", path)
            time.sleep(0.2)

    _path = os.path.join(os.environ["WORKER_MEMORY_MALLOC_STATS"], f"worker-{os.getpid()}.json")
    threading.Thread(target=_sample, args=(_path,), daemon=True, name="malloc-stats").start()
"""

# The local runner lets its SDK workers exit normally at the end of the job, so atexit closes the capture.
MEMRAY_PATCH = _IS_WORKER + """
if os.environ.get("WORKER_MEMORY_MEMRAY") and _is_sdk_worker():
    import atexit, memray
    _tracker = memray.Tracker(os.path.join(os.environ["WORKER_MEMORY_MEMRAY"], f"worker-{os.getpid()}.bin"),
                              native_traces=True, file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS)
    _tracker.__enter__()
    atexit.register(_tracker.__exit__, None, None, None)
"""

# Native frames that say who holds an allocation, most specific first.
HOLDERS = (
    ("Beam output streams (bundle outputs before each flush)", ("OutputStream_extend",)),
    ("protobuf messages (gRPC data plane, send and receive)", ("upb_Arena",)),
    ("Python objects", ("_PyObject_ArenaMmap", "_PyObject_Malloc", "_PyObject_Calloc", "_PyObject_Realloc")),
    ("Arrow's mimalloc reserve (address space, not resident)", ("unix_mmap_prim", "_mi_os_")),
)


def malloc_stats(directory: str) -> dict[str, dict]:
    """Per worker, what ``MALLOC_STATS_PATCH`` recorded."""
    return {f.stem: json.loads(f.read_text()) for f in sorted(Path(directory).glob("worker-*.json"))}


def holders(capture: str | Path) -> dict[str, float]:
    """MB per holder at the worker's high-water mark, from a memray aggregated capture; the rest is
    ``other native``."""
    import memray

    sizes: collections.Counter[str] = collections.Counter()
    for record in memray.FileReader(str(capture)).get_high_watermark_allocation_records(merge_threads=True):
        frames = " ".join(f"{f[0]} {f[1]}" for f in record.native_stack_trace(max_stacks=16))
        holder = next((name for name, marks in HOLDERS if any(m in frames for m in marks)), "other native")
        sizes[holder] += record.size
    return {name: round(size / 2**20, 1) for name, size in sizes.most_common()}


def memray_holders(directory: str) -> dict[str, dict[str, float]]:
    """``holders`` of every worker capture in ``directory``."""
    return {f.stem: holders(f) for f in sorted(Path(directory).glob("worker-*.bin")) if f.stat().st_size}
