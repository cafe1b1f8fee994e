"""Source videos on disk at once during a run: with ``--delete-videos`` against keeping them, on the demo corpus.

    .venv/bin/python benchmarks/source_peak.py [--corpus DIR] [--workers 2] [--every-ms 20]

Without ``--corpus`` the demo corpus is rendered into a temporary directory first (``python -m pipeline
demo-corpus``). Then ``python -m pipeline run`` runs twice on its catalog, as a user would, with ``--workers``
SDK worker processes: once keeping the downloads (the reference: every source stays), once with
``--delete-videos``. While each runs, the download directory is polled: a source on disk is a stored video
(``videos/<key>.<ext>``, not the ``.json`` marker) or a file in a download's staging directory
(``videos/.partial/dl-*/``). The table gives, per run, the videos downloaded, the peak of sources on disk at
once, the run's exit status and its wall time; the last line the peak with ``--delete-videos`` against the
reference and against the bound it should meet (one video per worker thread in flight).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = (".json", ".failed")


def sources_on_disk(videos: Path) -> int:
    """Stored videos plus files being downloaded, in ``videos``."""
    count = 0
    try:
        entries = list(os.scandir(videos))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name == ".partial":
            for staging in _scan(entry.path):
                count += sum(1 for f in _scan(staging.path) if f.is_file())
        elif entry.is_file() and not entry.name.endswith(MARKERS) and not entry.name.startswith("."):
            count += 1
    return count


def _scan(path: str) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


class Peak(threading.Thread):
    def __init__(self, videos: Path, every_s: float):
        super().__init__(daemon=True)
        self.videos, self.every_s, self.peak, self.stop = videos, every_s, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, sources_on_disk(self.videos))
            time.sleep(self.every_s)


def measure(catalog: Path, out: Path, workers: int, delete: bool, every_s: float) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "run", "--catalog", str(catalog), "--output", str(out),
           "--workers", str(workers), *(["--delete-videos"] if delete else [])]
    peak = Peak(out / "videos", every_s)
    peak.start()
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    peak.stop.set()
    peak.join()
    downloaded = sum(1 for p in (out / "videos").glob("*.json"))
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
    return {"downloaded": downloaded, "peak": peak.peak, "rc": done.returncode, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a rendered demo corpus (default: render one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every-ms", type=float, default=20.0, help="polling interval")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="source-peak-"))
    try:
        corpus = args.corpus
        if corpus is None:
            corpus = work / "corpus"
            subprocess.run([sys.executable, "-m", "pipeline", "demo-corpus", str(corpus)], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        rows = [(label, measure(corpus / "catalog.jsonl", work / label, args.workers, delete, args.every_ms / 1000))
                for label, delete in (("keep sources", False), ("--delete-videos", True))]
        print(f"{'run':>16} {'videos downloaded':>18} {'peak on disk':>13} {'exit':>5} {'wall s':>7}")
        for label, r in rows:
            print(f"{label:>16} {r['downloaded']:>18} {r['peak']:>13} {r['rc']:>5} {r['wall_s']:>7.1f}")
        keep, delete = rows[0][1]["peak"], rows[1][1]["peak"]
        print(f"peak with --delete-videos: {delete} sources ({delete / max(keep, 1):.2f}x of keeping them, {keep}); "
              f"bound {args.workers} workers x 1 thread = {args.workers} in flight")
        return 0 if all(r["rc"] == 0 for _, r in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
