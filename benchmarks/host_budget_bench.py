"""Wall time of ``python -m pipeline run`` over a catalog of videos served by a local HTTP server, with the
request budget that host gets by default, with its budget lifted, and with YouTube's rate imposed on it.

    .venv/bin/python benchmarks/host_budget_bench.py [--corpus DIR] [--copies 2] [--workers 2] [--repeats 1]

The demo corpus's videos, each served ``--copies`` times from 127.0.0.1, make the catalog; every run starts from
scratch with ``--workers`` processes. Configurations, taking turns over ``--repeats`` rounds: ``default`` (no flag:
``--default-site-qps``), ``lifted`` (``--unthrottled-host``), ``youtube-rate`` (``--site-qps`` at the
``--youtube-qps`` default). The table: wall time, requests served, seconds waited on the budget, and each median's
ratio to ``lifted``'s. Record: docs/measurements/2026-12-06-host-budgets.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.site.request_budget import DEFAULT_JOB_QPS, DEFAULT_SITE_QPS  # noqa: E402
from schemas.stats import SiteCost, Stats  # noqa: E402

HOST = "127.0.0.1"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # yt-dlp reads only the head of a direct link's first answer, then hangs up: a broken pipe here


class Server:
    """A threaded static file server for ``root`` on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests = 0
        lock = threading.Lock()
        bench = self

        class Handler(_Quiet):
            def send_head(self):
                with lock:
                    bench.requests += 1
                return super().send_head()

        self.httpd = _QuietServer((HOST, 0), functools.partial(Handler, directory=str(root)))
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def demo_corpus(work: Path) -> Path:
    corpus = work / "corpus"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pipeline", "demo-corpus", str(corpus), "--quiet"], cwd=ROOT, check=True)
    print(f"demo corpus rendered in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return corpus


def http_catalog(corpus: Path, served: Path, port: int, copies: int) -> tuple[Path, int]:
    """The catalog of the corpus's videos, each copy under its own name on the server; (path, rows)."""
    rows, seen = [], set()
    for line in (corpus / "catalog.jsonl").read_text().splitlines():
        row = json.loads(line)
        source = (corpus / row["url"]).resolve()
        if not source.is_file() or source in seen:  # a missing file (the demo's 404), a re-upload of a video
            continue
        seen.add(source)
        for k in range(copies):
            name = f"{k}/{len(seen):03d}{source.suffix}"
            (served / name).parent.mkdir(parents=True, exist_ok=True)
            (served / name).symlink_to(source)
            rows.append({key: row[key] for key in ("title", "description", "duration_s", "channel") if key in row}
                        | {"id": f"http{k}-{row['id']}", "url": f"http://{HOST}:{port}/{name}"})
    catalog = served.parent / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return catalog, len(rows)


def run_once(catalog: Path, out: Path, workers: int, flags: list[str], server: Server) -> dict:
    before = server.requests
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", "--catalog", str(catalog), "--output", str(out),
                           "--workers", str(workers), "--quiet", *flags], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 75):
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    stats = Stats.from_json((out / "stats.json").read_bytes())
    site = stats.sites.get(HOST, SiteCost(job_qps=None))
    return {"wall_s": wall, "served": server.requests - before, "requests": site.requests,
            "waited_s": site.waited_s, "kept_clips": stats.clips.kept,
            "videos_downloaded": next(r.video.items_out for r in stats.funnel if r.stage == "download")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="a rendered demo corpus (default: render one in the work dir)")
    parser.add_argument("--copies", type=int, default=2, help="names each video is served under (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes per run (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the configurations (default 1)")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="host-budget-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    configs = {"default": [], "lifted": ["--unthrottled-host", HOST],
               "youtube-rate": ["--site-qps", f"{HOST}={DEFAULT_JOB_QPS:g}"]}
    try:
        corpus = args.corpus or demo_corpus(work)
        served = work / "served"
        shutil.rmtree(served, ignore_errors=True)
        served.mkdir()
        server = Server(served)
        catalog, rows = http_catalog(corpus, served, server.port, args.copies)
        print(f"{rows} catalog rows served from http://{HOST}:{server.port}/, {args.workers} workers, "
              f"{os.cpu_count()} CPUs; default budget for {HOST}: {DEFAULT_SITE_QPS:g}/s", file=sys.stderr)
        results: dict[str, list[dict]] = {name: [] for name in configs}
        for round_ in range(args.repeats):
            for name, flags in configs.items():
                out = work / f"out-{name}-{round_}"
                shutil.rmtree(out, ignore_errors=True)
                result = run_once(catalog, out, args.workers, flags, server)
                results[name].append(result)
                print(f"  {name:<13} round {round_}: {json.dumps(result)}", file=sys.stderr)
                shutil.rmtree(out, ignore_errors=True)
        server.close()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(r["wall_s"] for r in results["lifted"])
    print(f"| run | flags | wall s (each run) | median wall s | vs lifted | requests to {HOST} | waited s on its budget "
          "| videos downloaded | clips kept |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, flags in configs.items():
        runs = results[name]
        median = statistics.median(r["wall_s"] for r in runs)
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs)
        waits = ", ".join(f"{r['waited_s']:.1f}" for r in runs)
        shown = " ".join(flags) or "(none)"
        print(f"| {name} | `{shown}` | {walls} | {median:.1f} | {median / base:.2f}x | {runs[0]['requests']} | "
              f"{waits} | {runs[0]['videos_downloaded']} | {runs[0]['kept_clips']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
