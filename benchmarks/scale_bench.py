"""Memory and time of the run's audit (``pipeline.audit.audit_stage.Audit``) as the number of items grows.

    .venv/bin/python benchmarks/scale_bench.py [--sizes 10000,100000,1000000] [--workers 2] [--runner-as-is]

N synthetic outcomes, births and manifest rows, generated inside the SDK workers so the launcher never holds
them, go through the Audit on Beam's local FnApiRunner with ``--workers`` processes, one fresh process per size.
Per size: peak RSS of the largest worker and of the launcher, seconds per 100k outcomes, the largest bundle input,
and violations (0 expected); the last lines compare the largest size with the smallest (targets: worker peak
<= 1.3x, linear time). It runs the local runner as the product does (``beam_runtime.streamed_inputs``, the glibc
tuning, the 1 MB / 8 MB data-plane buffers); ``--runner-as-is`` and ``--beam-buffers`` measure Beam's own.
Diagnostics: ``--data-queue-mb``, ``--flush-mb``, ``--release-output-streams``, ``--bounded-bundles``,
``--malloc-stats``, ``--memray``; ``PYTHONTRACEMALLOC=1`` adds Python's peak. Record:
docs/measurements/2026-12-04-audit-worker-memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import worker_memory  # noqa: E402

from pipeline import job  # noqa: E402
from pipeline.beam_runtime import (  # noqa: E402
    data_plane_buffers,
    streamed_inputs,
)
from pipeline.beam_runtime.runner_probes import (  # noqa: E402
    WORKER_PATCH,
    bound_bundles,
    watch_bundle_inputs,
    watch_runner_drops,
    watch_stages,
)
from pipeline.runtime import process_memory  # noqa: E402
from schemas.stats import Stats  # noqa: E402

CHUNK = 10_000  # outcomes generated per element of the seed collection
CLIPS_PER_VIDEO = 30


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = []
        try:  # a child belongs to the thread that started it: read every thread's list
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        out += kids
        todo += kids
    return out


class PeakWatcher(threading.Thread):
    """Polls the peak RSS (VmHWM) of this process and of every descendant (the SDK workers) until stopped."""

    def __init__(self, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.workers: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.stop = threading.Event()
        self.stage = "start"  # the stage the local runner is running (set by ``watch_stages``)
        self.by_stage: dict[str, int] = {}  # stage -> the largest worker RSS seen while it ran (kB)

    def run(self):
        while not self.stop.is_set():
            stage = self.stage
            for pid in _descendants(os.getpid()):
                self.workers[pid] = max(self.workers.get(pid, 0), _status_kb(pid, "VmHWM"))
                self.by_stage[stage] = max(self.by_stage.get(stage, 0), _status_kb(pid, "VmRSS"))
                if pid not in self.names:
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            self.names[pid] = f.read().replace(b"\0", b" ").decode()[-60:]
                    except OSError:
                        self.names[pid] = "?"
            self.stop.wait(self.every_s)


# ---- synthetic records (built in the workers) ----------------------------------------------------------
def make_records(chunk: int, total: int):
    """Outcomes, births and manifest clips of ``chunk`` (CHUNK outcomes at most), tagged by kind."""
    from pipeline.audit.aggregates import Registration
    from schemas import Clip, Outcome, ids, reasons

    first = chunk * CHUNK
    for n in range(first, min(first + CHUNK, total)):
        if n % (CLIPS_PER_VIDEO + 1) == 0:
            vid = f"video{n:09d}"
            failed = n % 7 == 0
            yield "outcome", Outcome(
                item_id=vid, item_kind="video", stage="download" if failed else "segment",
                outcome="failed" if failed else "kept", reason=reasons.HTTP_404 if failed else "",
                detail=f"HTTP Error 404: Not Found for {vid}" if failed else "", video_id=vid,
                duration_s=600.0 + n % 3000)
            yield "birth", Registration("video", vid, "download", True)
            continue
        vid = f"video{n - n % (CLIPS_PER_VIDEO + 1):09d}"
        key = ids.clip_key(vid, 16.0 * (n % (CLIPS_PER_VIDEO + 1)))
        score = (n * 7919 % 1000) / 1000
        kind = n % 10
        if kind < 6:
            outcome = Outcome(item_id=key, item_kind="clip", stage="shard", outcome="kept", video_id=vid,
                              duration_s=16.0, quality_score=score, detail="shards/shard-00000.tar")
            yield "manifest", Clip(clip_key=key, video_id=vid, clip_index=n % 31, start_s=16.0 * (n % 31),
                                   end_s=16.0 * (n % 31) + 16, num_frames=160, fps=10.0, width=160, height=90,
                                   location="shards/shard-00000.tar", quality_score=score)
        elif kind < 9:
            outcome = Outcome(item_id=key, item_kind="clip", stage="quality", outcome="dropped",
                              reason=reasons.LOW_QUALITY, detail=f"score {score:.3f} < threshold 0.500",
                              video_id=vid, duration_s=16.0, quality_score=score)
        else:
            outcome = Outcome(item_id=key, item_kind="clip", stage="segment", outcome="dropped",
                              reason=reasons.SHORT_TAIL, detail="remainder of 3.2 s", video_id=vid, duration_s=3.2)
        yield "outcome", outcome
        yield "birth", Registration("clip", key, "quality" if kind < 9 else "segment", True)
        if kind < 6:
            yield "birth", Registration("clip", key, "shard", False)


def kept_clips(total: int) -> int:
    """How many of ``make_records``' clips are kept (manifest rows; the one shard's samples)."""
    return sum(1 for n in range(total) if n % (CLIPS_PER_VIDEO + 1) and n % 10 < 6)


def input_chunk_bytes() -> int:
    """The size of the messages a streamed bundle input is cut into: ``--input-chunk-mb``, else ``--flush-mb``
    (a runner's data plane cuts its own messages at its flush threshold), else the product's
    (``streamed_inputs.CHUNK_BYTES``). The SDK worker's receive queue holds up to 5 of them (Beam's cap: 100 MB;
    the pipeline's workers: 8 MB)."""
    for name in ("SCALE_BENCH_INPUT_CHUNK_MB", "SCALE_BENCH_FLUSH_MB"):
        if os.environ.get(name):
            return int(os.environ[name]) << 20
    return streamed_inputs.CHUNK_BYTES


def short_stage(name: str) -> str:
    """A fused stage's name, ``((((a)+(b))+(c))``, as ``a .. c`` without Beam's reference prefixes."""
    parts = [p.replace("ref_AppliedPTransform_", "").replace("ref_", "")
             for p in re.findall(r"\(([^()]+)\)", name)] or [name]
    return parts[0] if len(parts) == 1 else f"{parts[0]} .. {parts[-1]}"


def worker_peaks(_, path: str) -> None:
    """In the worker that ran the audit's last step: its peak RSS, the peak of pyarrow's memory pool and, with
    ``PYTHONTRACEMALLOC`` set (the workers inherit it), the peak of Python's own allocations (objects, bytes
    buffers): to tell what grows apart from the data plane's C buffers and the allocator's retention."""
    import tracemalloc

    import pyarrow as pa

    pool = pa.default_memory_pool()
    peaks = {"pid": os.getpid(), "rss_peak_mb": round(_status_kb(os.getpid(), "VmHWM") / 1024),
             "arrow_pool": pool.backend_name, "arrow_pool_peak_mb": round(pool.max_memory() / 2**20)}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        peaks.update(python_traced_peak_mb=round(peak / 2**20), python_traced_now_mb=round(current / 2**20))
    Path(path).write_text(json.dumps(peaks))


def run_one(n: int, workers: int, stream_inputs: bool = False, bounded: bool = False) -> dict:
    import apache_beam as beam

    from pipeline.audit import audit_stage

    runner_drops = watch_runner_drops()
    bundle_inputs = watch_bundle_inputs(stream_inputs, input_chunk_bytes())
    bundles_per_stage = bound_bundles() if bounded else [1]

    watcher = PeakWatcher()
    watch_stages(watcher)
    watcher.start()
    out = tempfile.mkdtemp(prefix="scale_bench_")
    started = time.monotonic()
    options = job.local_options([], workers)  # the pipeline's: its workers send outputs at 1 MB
    if os.environ.get("SCALE_BENCH_BEAM_BUFFERS"):  # --beam-buffers, or the sizes --flush-mb etc. give
        options = data_plane_buffers.without_worker_plugin(options)
    p = beam.Pipeline(runner=job.local_runner([], options, stream_inputs=stream_inputs), options=options)
    records = (p
               | "Chunks" >> beam.Create(range((n + CHUNK - 1) // CHUNK))
               | "Spread" >> beam.Reshuffle()
               | "Make" >> beam.FlatMap(make_records, n))
    kinds = {k: records | f"Only{k}" >> beam.Filter(lambda r, k=k: r[0] == k) | f"Strip{k}" >> beam.Map(lambda r: r[1])
             for k in ("outcome", "birth", "manifest")}
    inputs = {"outcomes": kinds["outcome"], "births": kinds["birth"], "manifest": kinds["manifest"],
              "shard_index": p | "Index" >> beam.Create([{"name": "shards/shard-00000.tar", "clips": kept_clips(n),
                                                          "bytes": 1}]),
              "clips": p | "NoClips" >> beam.Create([])}
    stats_out = inputs | "Audit" >> audit_stage.Audit(out, None)
    _ = stats_out | "WorkerPeaks" >> beam.Map(worker_peaks, str(Path(out).parent / f"{Path(out).name}.traced"))
    p.run().wait_until_finish()
    wall = time.monotonic() - started
    watcher.stop.set()
    watcher.join()
    stats = Stats.from_json(Path(out, "stats.json").read_bytes())
    traced = Path(f"{out}.traced")
    python_peak = json.loads(traced.read_text()) if traced.exists() else None
    traced.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    assert stats.tables["outcomes"].rows == n, stats.tables
    return {"n": n, "wall_s": wall, "worker_peak_mb": max(watcher.workers.values(), default=0) / 1024,
            "workers_seen": len(watcher.workers),
            "processes_mb": {f"{p} {watcher.names.get(p, '?')}": round(kb / 1024) for p, kb in watcher.workers.items()},
            "launcher_peak_mb": _status_kb(os.getpid(), "VmHWM") / 1024,
            "outcome_parts": stats.tables["outcomes"].parts, "manifest_rows": stats.tables["manifest"].rows,
            "violations": stats.conservation.num_violations,
            "violations_listed": stats.conservation.violations[:5], "last_step_worker": python_peak, "runner_dropped_buffers": runner_drops[0],
            "runner_dropped_chunks": runner_drops[1], "stream_inputs": stream_inputs,
            "bounded_bundles": bounded, "most_bundles_per_worker_and_stage": bundles_per_stage[0],
            "worker_rss_by_stage_mb": {short_stage(k): round(v / 1024) for k, v in watcher.by_stage.items()},
            "largest_bundle_input_mb": round(max(bundle_inputs.values(), default=0) / 2**20, 1),
            "bundle_inputs_mb": {k: round(v / 2**20, 1) for k, v in sorted(bundle_inputs.items(), key=lambda kv: -kv[1])[:8]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="outcome counts, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="SDK worker processes (default 2)")
    parser.add_argument("--runner-as-is", action="store_true",
                        help="Beam's local runner unchanged: each bundle's whole input in one message, glibc's "
                             "default allocator settings (default: inputs streamed in ~1 MB messages, glibc tuned as "
                             "the pipeline's workers are: pipeline.runtime.process_memory.ALLOCATOR_ENV)")
    parser.add_argument("--beam-buffers", action="store_true",
                        help="the SDK workers keep Beam's own buffer sizes (outputs sent at 10 MB, 100 MB "
                             "queues; the pipeline's workers: 1 MB and 8 MB, pipeline.beam_runtime.data_plane_buffers)")
    parser.add_argument("--data-queue-mb", type=int,
                        help="cap each of Beam's data-plane queues (send, staging, receive) at this many MB in the "
                             "launcher and every SDK worker (Beam's default: 100 MB each): shows how much of a "
                             "worker's peak is those bounded buffers")
    parser.add_argument("--flush-mb", type=int,
                        help="send each bundle output once it holds this many MB (Beam's default: 10 MB per "
                             "output), in every process of the run")
    parser.add_argument("--input-chunk-mb", type=int,
                        help="with inputs streamed, send them in messages of this many MB (default: 1 MB, the "
                             "runner side of Beam's Java runners; or the --flush-mb size)")
    parser.add_argument("--release-output-streams", action="store_true",
                        help="diagnostic: SDK workers drop each bundle's output buffers when the bundle finishes "
                             "(Beam keeps them, up to 16 MB per output, in the bundle processors it caches)")
    parser.add_argument("--malloc-stats", action="store_true",
                        help="diagnostic: per SDK worker, the peak RSS with glibc's live and free-but-kept bytes "
                             "at that moment (mallinfo2); add PYTHONMALLOC=malloc to count Python objects as live")
    parser.add_argument("--memray", action="store_true",
                        help="diagnostic (needs memray installed): per SDK worker, its heap at the high-water mark "
                             "by holder (Beam's output streams, data-plane messages, Python objects, ...); slow")
    parser.add_argument("--bounded-bundles", action="store_true",
                        help="run each worker's share of a stage as bundles of one input chunk each, in "
                             "turn, as Dataflow bounds its bundles (Beam's local runner: one bundle per worker "
                             "per stage, N / workers elements)")
    parser.add_argument("--stream-inputs", action="store_true", help=argparse.SUPPRESS)  # internal, with --one
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    ns = parser.parse_args()
    if ns.one is not None:
        print(json.dumps(run_one(ns.one, ns.workers, ns.stream_inputs, ns.bounded_bundles)))
        return 0
    env = dict(os.environ)
    if not ns.runner_as_is:  # read at process start: the size's process and the SDK workers it starts
        env.update(process_memory.ALLOCATOR_ENV)  # as local runs and the worker image set them
    if (ns.data_queue_mb is not None or ns.flush_mb is not None or ns.release_output_streams or ns.malloc_stats
            or ns.memray):
        site = Path(tempfile.mkdtemp(prefix="scale_bench_site_"))  # sitecustomize runs in every process: workers too
        (site / "sitecustomize.py").write_text(
            WORKER_PATCH + worker_memory.MALLOC_STATS_PATCH + worker_memory.MEMRAY_PATCH)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for name, value in (("SCALE_BENCH_DATA_QUEUE_MB", ns.data_queue_mb), ("SCALE_BENCH_FLUSH_MB", ns.flush_mb)):
            if value is not None:
                env[name] = str(value)
        if ns.release_output_streams:
            env["SCALE_BENCH_RELEASE_OUTPUT_STREAMS"] = "1"
    if ns.input_chunk_mb is not None:
        env["SCALE_BENCH_INPUT_CHUNK_MB"] = str(ns.input_chunk_mb)
    if ns.beam_buffers or ns.data_queue_mb is not None or ns.flush_mb is not None:
        env["SCALE_BENCH_BEAM_BUFFERS"] = "1"  # the workers without the pipeline's worker plugin
        sizes = f"queues capped at {ns.data_queue_mb or 100} MB, outputs flushed at {ns.flush_mb or 10} MB"
    else:
        sizes = (f"SDK workers' queues capped at {data_plane_buffers.QUEUE_BYTES >> 20} MB, outputs flushed at "
                 f"{data_plane_buffers.FLUSH_BYTES >> 20} MB (the pipeline's worker plugin)")
    print(f"data plane: {sizes}" + (", output buffers released after each bundle" if ns.release_output_streams
                                    else ""), file=sys.stderr)
    print("local runner: " + ("as is" if ns.runner_as_is else
                              "bundle inputs streamed, "
                              + " ".join(f"{k}={v}" for k, v in process_memory.ALLOCATOR_ENV.items())), file=sys.stderr)
    rows = []
    for n in (int(x) for x in ns.sizes.split(",")):
        diag = {name: tempfile.mkdtemp(prefix="scale_bench_worker_memory_") for name, on in
                (("WORKER_MEMORY_MALLOC_STATS", ns.malloc_stats), ("WORKER_MEMORY_MEMRAY", ns.memray)) if on}
        env.update(diag)
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--workers", str(ns.workers)]
                              + ([] if ns.runner_as_is else ["--stream-inputs"])
                              + (["--bounded-bundles"] if ns.bounded_bundles else []),
                              capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            print(f"size {n} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if ns.malloc_stats:
            rows[-1]["malloc"] = worker_memory.malloc_stats(diag["WORKER_MEMORY_MALLOC_STATS"])
        if ns.memray:
            rows[-1]["memray_mb"] = worker_memory.memray_holders(diag["WORKER_MEMORY_MEMRAY"])
        for directory in diag.values():
            shutil.rmtree(directory, ignore_errors=True)
        print(f"measured {n} outcomes: {rows[-1]}", file=sys.stderr)
    print(f"{'outcomes':>10} {'parts':>6} {'wall s':>8} {'s/100k':>8} {'worker peak MB':>15} {'launcher peak MB':>17}"
          f" {'largest bundle input MB':>24} {'violations':>11}")
    for r in rows:
        print(f"{r['n']:>10} {r['outcome_parts']:>6} {r['wall_s']:>8.1f} {r['wall_s'] / r['n'] * 1e5:>8.2f} "
              f"{r['worker_peak_mb']:>15.0f} {r['launcher_peak_mb']:>17.0f} {r['largest_bundle_input_mb']:>24.1f} "
              f"{r['violations'] + r['runner_dropped_chunks']:>11}")
    ref, big = rows[0], rows[-1]
    ratio = big["worker_peak_mb"] / ref["worker_peak_mb"]
    print(f"worker peak at {big['n']} / at {ref['n']}: {ratio:.2f}x "
          f"({'meets' if ratio <= 1.3 else 'MISSES'} the 1.3x target)")
    print(f"time per 100k outcomes at {big['n']} / at {ref['n']}: "
          f"{(big['wall_s'] / big['n']) / (ref['wall_s'] / ref['n']):.2f}x (1.0 = linear)")
    print(f"launcher (local runner) peak at {big['n']} / at {ref['n']}: "
          f"{big['launcher_peak_mb'] / ref['launcher_peak_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
