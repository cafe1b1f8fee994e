"""Peak memory of segmenting one video, parent and isolated child, for a short and a long synthetic source.

    .venv/bin/python benchmarks/video_memory_bench.py [--minutes 60 180] [--size 320x180] [--fps 10]

Each source (ffmpeg ``testsrc2`` + noise, H.264) goes through ``segment.cached_segment`` and the isolated child, as
in a run, each way in a fresh parent: ``by reference`` (the clip store) and ``inline (reference)`` (the clips'
bytes cross the pipe into the parent, no cache entry), the baseline measured in the same run. Peak RSS is VmHWM,
reset after a warm-up video, so rows differ by what the video's length costs. The last lines give the long/short
ratio of the by-reference peaks (target <= 1.1) and whether each stayed under 1 GiB.
Record: docs/measurements/2026-12-04-memory-per-video.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30

# Runs in a fresh interpreter: one video through cached_segment with an isolated child, peaks of both.
_MEASURE = """
import json, sys, tempfile
from pathlib import Path
from pipeline.io import storage
from pipeline.video.isolation import IsolatedWorker
from pipeline.segment import SegmentConfig, cached_segment
from schemas import CandidateVideo, DownloadedVideo

def video(path):
    path = Path(path)
    sha, size = storage.sha256_file(str(path))
    return DownloadedVideo(candidate=CandidateVideo(video_id=path.stem, source="b", url=path.as_uri()),
                           path=str(path), size_bytes=size, sha256=sha)

def hwm_kb(pid):
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM:"))

def reset(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")

source, warm, mode = sys.argv[1:4]
worker = IsolatedWorker(timeout_s=24 * 3600)
with tempfile.TemporaryDirectory() as cache:
    config = SegmentConfig(cache_dir=cache if mode == "ref" else "")
    cached_segment(video(warm), config, worker)  # warm both processes (imports, codecs)
    child = worker._process.pid
    reset(child); reset("self")
    result = cached_segment(video(source), config, worker)
    print(json.dumps({"clips": len(result.clips), "parent": hwm_kb("self") * 1024, "child": hwm_kb(child) * 1024,
                      "outcome": result.outcomes[-1].outcome}))
    worker.close()
"""


def make_source(path: Path, seconds: float, size: str, fps: int) -> Path:
    if not path.exists():
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate={fps},noise=alls=8:allf=t", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps * 10), "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    return path


def measure(source: Path, warm: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(source), str(warm), mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs=2, default=[60.0, 180.0], metavar=("SHORT", "LONG"))
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--workdir", default=None, help="keep the sources here (default: a temporary dir)")
    parser.add_argument("--modes", nargs="+", choices=("ref", "inline"), default=["ref", "inline"],
                        help="ref: the clip store; inline: the baseline (default both)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="memory-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    warm = make_source(work / "warm.mp4", 17, args.size, args.fps)
    rows = {}
    print(f"{'source':>10} {'mode':>20} {'clips':>6} {'parent MB':>10} {'child MB':>9}")
    for minutes in args.minutes:
        source = make_source(work / f"src-{minutes:g}min.mp4", minutes * 60, args.size, args.fps)
        for mode, label in (("ref", "by reference"), ("inline", "inline (reference)")):
            if mode not in args.modes:
                continue
            r = measure(source, warm, mode)
            rows[minutes, mode] = r
            print(f"{minutes:>7g} min {label:>20} {r['clips']:>6} {r['parent'] / 2**20:>10.0f} "
                  f"{r['child'] / 2**20:>9.0f}", flush=True)
    short, long = args.minutes
    for proc in ("parent", "child"):
        line = [f"{proc}: peak {long:g} min / {short:g} min ="]
        for mode, what in (("ref", "by reference (target <= 1.1)"), ("inline", "inline")):
            if mode in args.modes:
                line.append(f"{rows[long, mode][proc] / rows[short, mode][proc]:.2f}x {what}")
        print(" ".join(line))
    if "ref" in args.modes:
        under = all(rows[m, "ref"][p] < GIB for m in args.minutes for p in ("parent", "child"))
        print(f"every by-reference process under 1 GiB: {under}")


if __name__ == "__main__":
    main()
