"""``python -m pipeline demo-corpus OUT``: parse options, plan, build, print a summary."""

from __future__ import annotations

import dataclasses
import os
import time

from pipeline.tools.demo_corpus import build, spec
from schemas.cli import StrictParser


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    out: str  # output directory (created; reruns overwrite it with identical files)
    scale: float = 1.0  # multiplies the number of clean, junk and mixed videos (benchmarks: 5, 10, ...)
    seed: int = 0  # seeds the whole plan: levels, policies, titles, ids
    faults: bool = True  # add a truncated mp4 and a row whose file does not exist
    jobs: int = 2  # rendering processes
    quiet: bool = False


def parse_args(argv: list[str]) -> CorpusConfig:
    parser = StrictParser(
        prog="python -m pipeline demo-corpus",
        description="Render the built-in demo corpus: Procgen platformer gameplay and low-quality kinds as "
                    "640x360 30 fps H.264 videos, with per-step action sidecars, a catalog and stand-in "
                    "hand labels. See docs/demo_corpus.md.")
    parser.add_argument("out", help="output directory")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the number of videos (default 1: ~45 videos, ~30 min of video)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole corpus (default 0)")
    parser.add_argument("--no-faults", action="store_true",
                        help="leave out the truncated mp4 and the row pointing to a missing file")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="rendering processes (default: 2, or 1 on a single core)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    return CorpusConfig(out=args.out, scale=args.scale, seed=args.seed, faults=not args.no_faults,
                        jobs=max(1, args.jobs), quiet=args.quiet)


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    plan = spec.plan_corpus(seed=config.seed, scale=config.scale, faults=config.faults)
    log = (lambda _: None) if config.quiet else print
    log(f"demo corpus: {len(plan.videos)} videos, {len(plan.entries)} catalog rows -> {config.out}")
    started = time.perf_counter()
    results = build.build_corpus(plan, config.out, jobs=config.jobs, log=log)
    minutes = sum(v.duration_s for v in plan.videos) / 60
    size = sum(r.size_bytes for r in results.values())
    print(f"demo corpus: {len(results)} videos, {minutes:.1f} min, {size / 1e6:.1f} MB, "
          f"{len(plan.entries)} catalog rows, built in {time.perf_counter() - started:.1f} s -> {config.out}")
    return 0
