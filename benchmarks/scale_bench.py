"""Memory and time of the run's audit (``pipeline.audit_stage.Audit``) as the number of items grows.

    .venv/bin/python benchmarks/scale_bench.py [--sizes 10000,100000,1000000] [--workers 2]

N synthetic outcomes (a candidate video per 30 clips; kept, dropped and failed clips with reasons, details,
durations and scores, as a real run's), one birth per item plus the stage entries a run registers, and a
manifest row per kept clip are generated *inside* the SDK workers (``Create`` of chunk numbers, reshuffled),
so the launcher never holds them, then go through the Audit transform on Beam's local FnApiRunner with
``--workers`` SDK worker processes: the partitioned outcomes/ and manifest/ tables, the combiners, the
keyed conservation sum, stats.json and report.html.

Each size runs in a fresh Python process (peak RSS is a high-water mark: one process per size keeps the
sizes apart). Per size the table prints the peak RSS (``VmHWM``) of the largest SDK worker process, of the
launcher process (the benchmark's own process, which hosts Beam's local runner), wall seconds and seconds
per 100k outcomes, and the conservation violations the audit found (0 expected: the generated data is
complete). The reference is the smallest size in the same run: the last lines give the worker peak
ratio of the largest size to it (target <= 1.3) and the time per 100k outcomes relative to it (linear time:
about 1.0).

The local FnApiRunner passes every element between fused stages through the launcher process (it buffers
each stage's output there until the consumer stage runs): the launcher's peak grows with N. That is the
local runner's cost, not the pipeline's: on Dataflow the runner's shuffle service holds those elements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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

    def run(self):
        while not self.stop.is_set():
            for pid in _descendants(os.getpid()):
                self.workers[pid] = max(self.workers.get(pid, 0), _status_kb(pid, "VmHWM"))
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
    from pipeline.audit import Registration
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


def watch_runner_drops() -> list[int]:
    """Count what Beam's local runner throws away when it merges buffers: ``GroupingBuffer.extend`` returns
    without a word when handed a ``ListBuffer`` (fn_api_runner/execution.py). Diagnostic only: a non-empty
    count means elements bound for a GroupByKey were dropped by the runner, not by the pipeline."""
    from apache_beam.runners.portability.fn_api_runner import execution

    dropped = [0, 0]  # (buffers, encoded chunks)
    original = execution.GroupingBuffer.extend

    def extend(self, input_buffer):
        if isinstance(input_buffer, execution.ListBuffer) and input_buffer._inputs:
            dropped[0] += 1
            dropped[1] += len(input_buffer._inputs)
        return original(self, input_buffer)

    execution.GroupingBuffer.extend = extend
    return dropped


def run_one(n: int, workers: int) -> dict:
    import apache_beam as beam

    from pipeline import audit_stage, run

    runner_drops = watch_runner_drops()

    watcher = PeakWatcher()
    watcher.start()
    out = tempfile.mkdtemp(prefix="scale_bench_")
    started = time.monotonic()
    p = beam.Pipeline(runner=run.local_runner([]), options=run.local_options([], workers))
    records = (p
               | "Chunks" >> beam.Create(range((n + CHUNK - 1) // CHUNK))
               | "Spread" >> beam.Reshuffle()
               | "Make" >> beam.FlatMap(make_records, n))
    kinds = {k: records | f"Only{k}" >> beam.Filter(lambda r, k=k: r[0] == k) | f"Strip{k}" >> beam.Map(lambda r: r[1])
             for k in ("outcome", "birth", "manifest")}
    inputs = {"outcomes": kinds["outcome"], "births": kinds["birth"], "manifest": kinds["manifest"],
              "shard_index": p | "Index" >> beam.Create([{"name": "shards/shard-00000.tar", "clips": 1, "bytes": 1}]),
              "clips": p | "NoClips" >> beam.Create([])}
    _ = inputs | "Audit" >> audit_stage.Audit(out, None)
    p.run().wait_until_finish()
    wall = time.monotonic() - started
    watcher.stop.set()
    watcher.join()
    stats = json.loads(Path(out, "stats.json").read_text())
    assert stats["tables"]["outcomes"]["rows"] == n, stats["tables"]
    return {"n": n, "wall_s": wall, "worker_peak_mb": max(watcher.workers.values(), default=0) / 1024,
            "workers_seen": len(watcher.workers),
            "processes_mb": {f"{p} {watcher.names.get(p, '?')}": round(kb / 1024) for p, kb in watcher.workers.items()},
            "launcher_peak_mb": _status_kb(os.getpid(), "VmHWM") / 1024,
            "outcome_parts": stats["tables"]["outcomes"]["parts"], "manifest_rows": stats["tables"]["manifest"]["rows"],
            "violations": stats["conservation"]["num_violations"], "runner_dropped_buffers": runner_drops[0],
            "runner_dropped_chunks": runner_drops[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="outcome counts, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="SDK worker processes (default 2)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    ns = parser.parse_args()
    if ns.one is not None:
        print(json.dumps(run_one(ns.one, ns.workers)))
        return 0
    rows = []
    for n in (int(x) for x in ns.sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--workers", str(ns.workers)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"size {n} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"measured {n} outcomes: {rows[-1]}", file=sys.stderr)
    print(f"{'outcomes':>10} {'parts':>6} {'wall s':>8} {'s/100k':>8} {'worker peak MB':>15} {'launcher peak MB':>17}"
          f" {'violations':>11}")
    for r in rows:
        print(f"{r['n']:>10} {r['outcome_parts']:>6} {r['wall_s']:>8.1f} {r['wall_s'] / r['n'] * 1e5:>8.2f} "
              f"{r['worker_peak_mb']:>15.0f} {r['launcher_peak_mb']:>17.0f} {r['violations']:>11}")
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
