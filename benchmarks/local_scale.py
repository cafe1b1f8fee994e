"""A local run's memory and time as its catalog grows: the product's command on search-only catalogs.

    .venv/bin/python benchmarks/local_scale.py [--sizes 20000,200000,2000000] [--workers 2] [--repeat 1]
                                               [--slice-outcomes N]

Per size, N catalog rows that all end at the search stage go through ``python -m pipeline run`` as a user runs it,
while the peak RSS of the launcher, the job processes and the SDK workers is polled; ``stats.json`` must hold the
conservation law and ``outcomes/`` N rows. The table: slices, seconds per 100k outcomes, the three peaks,
violations; the last lines compare the largest size with the smallest (targets: peaks within 1.3x, linear time).
Record: docs/measurements/2026-12-06-local-runs-at-scale.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scale_bench import _descendants, _status_kb  # noqa: E402

from schemas.stats import Stats  # noqa: E402

# (title, declared duration): what makes a row end at the search, in turn; every 50th line is not JSON.
ROWS = (("Cooking show", 60), ("Mario speedrun", 5), ("Mario unboxing speedrun", 60), ("Walking tour", 600))


def write_catalog(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            if i % 50 == 49:
                f.write("not json\n")
                continue
            title, duration = ROWS[i % len(ROWS)]
            f.write(json.dumps({"id": f"v{i:09d}", "url": f"https://example.invalid/watch?v={i}",
                                "title": f"{title} {i}", "duration_s": duration}) + "\n")


class Peaks(threading.Thread):
    """The peak RSS per process of the run, by role, polled until stopped."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.kb: dict[str, int] = {"launcher": 0, "job process": 0, "SDK worker": 0, "other": 0}
        self.stop = threading.Event()

    @staticmethod
    def role(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            return "other"
        if "sdk_worker_main" in cmd:
            return "SDK worker"
        if "pipeline.job_process" in cmd:
            return "job process"
        return "launcher" if "-m pipeline run" in cmd else "other"

    def run(self):
        while not self.stop.is_set():
            for pid in [self.pid, *_descendants(self.pid)]:
                role = self.role(pid)
                self.kb[role] = max(self.kb[role], _status_kb(pid, "VmHWM"))
            self.stop.wait(self.every_s)


def run_one(n: int, workers: int, slice_outcomes: int | None, work: Path) -> dict:
    catalog, out = work / f"catalog-{n}.jsonl", work / f"out-{n}"
    if not catalog.exists():
        write_catalog(catalog, n)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipeline", "run", "--catalog", str(catalog), "--output", str(out),
           "--workers", str(workers), "--allow-empty", "--quiet"]
    cmd += ["--slice-outcomes", str(slice_outcomes)] if slice_outcomes else []
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = Peaks(proc.pid)
    peaks.start()
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    peaks.stop.set()
    peaks.join()
    if proc.returncode != 0:
        raise SystemExit(f"size {n}: the run exited {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-3000:]}")
    import pyarrow.parquet as pq

    stats = Stats.from_json((out / "stats.json").read_bytes())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "outcomes").glob("*.parquet"))
    plan = json.loads((out / "slices" / "plan.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"n": n, "slices": len(plan["slices"]), "wall_s": wall,
            **{f"{role}_mb": kb / 1024 for role, kb in peaks.kb.items()},
            "violations": stats.conservation.num_violations, "rows_written": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,200000,2000000", help="catalog rows (= outcomes), comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (for the loss check)")
    parser.add_argument("--slice-outcomes", type=int, help="the run's --slice-outcomes (default: the run's)")
    ns = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="local_scale_"))
    rows = []
    print(f"{'outcomes':>9} {'slices':>6} {'wall s':>7} {'s/100k':>7} {'launcher MB':>12} {'job process MB':>15} "
          f"{'SDK worker MB':>14} {'violations':>11} {'rows ok':>8}", flush=True)
    try:
        for n in (int(x) for x in ns.sizes.split(",")):
            for _ in range(ns.repeat):
                r = run_one(n, ns.workers, ns.slice_outcomes, work)
                rows.append(r)
                print(f"{n:>9} {r['slices']:>6} {r['wall_s']:>7.1f} {r['wall_s'] / n * 1e5:>7.2f} "
                      f"{r['launcher_mb']:>12.0f} {r['job process_mb']:>15.0f} {r['SDK worker_mb']:>14.0f} "
                      f"{r['violations']:>11} {str(r['rows_written'] == n):>8}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small = [r for r in rows if r["n"] == rows[0]["n"]]
    big = [r for r in rows if r["n"] == rows[-1]["n"]]
    for role in ("launcher", "job process", "SDK worker"):
        ratio = max(r[f"{role}_mb"] for r in big) / max(r[f"{role}_mb"] for r in small)
        print(f"{role} peak at {big[0]['n']} / at {small[0]['n']}: {ratio:.2f}x")
    per = min(r["wall_s"] / r["n"] for r in big) / min(r["wall_s"] / r["n"] for r in small)
    print(f"time per outcome at {big[0]['n']} / at {small[0]['n']}: {per:.2f}x (1.0 = linear)")
    lossy = sum(1 for r in rows if r["violations"] or r["rows_written"] != r["n"])
    print(f"{lossy} of {len(rows)} runs lost or unbalanced records")
    return 1 if lossy else 0


if __name__ == "__main__":
    sys.exit(main())
