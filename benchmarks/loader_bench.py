"""Throughput of the training loader (``modeling.data.clip_windows``): windows/s per worker.

Writes full-length clips (160 frames, the pipeline's format) into temporary shards -- or reads ``--shards`` --
and measures, in the same run:

- ``window``: our loader, which decodes only the sampled T-frame window (seek to the keyframe before it);
- ``full clip (reference)``: the naive loader that decodes all 160 frames and slices the window.

Both run with ``--workers`` DataLoader processes; windows/s/worker divides by the worker count (1 when 0).
A GPU step of the ``coinrun`` tokenizer consumes 48 windows; the table says how many workers keep up with a
given step rate.

    python benchmarks/loader_bench.py [--shards 'run/shards/*.tar'] [--workers 0 2] [--window 16] [--batches 20]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.data import ClipWindowDataset, LoaderConfig, clip_windows  # noqa: E402
from schemas.clip_codec import decode_clip  # noqa: E402


class FullClipDataset(ClipWindowDataset):
    """Reference: decode the whole clip, then slice the window."""

    def _decode(self, raw, start):
        item = super()._decode(raw, start)  # keeps the checks and json handling identical ...
        frames = decode_clip(bytes(raw["mp4"]))  # ... plus the full decode a naive loader does
        item["video"] = frames[start:start + self.config.window]
        return item


def measure(loader, batches: int, batch_size: int) -> float:
    it = iter(loader)
    next(it)  # worker start-up and first shard open are not throughput
    start = time.perf_counter()
    n = sum(1 for _ in itertools.islice(it, batches))
    return n * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", help="shards to read (default: write 16 synthetic 160-frame clips)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from modeling_helpers import write_tiny_shards

            write_tiny_shards(tmp, n_clips=16, frames=160, clips_per_shard=4)
            shards = f"{tmp}/shard-*.tar"
        rows = []
        for workers in args.workers:
            config = LoaderConfig(window=args.window, batch_size=args.batch_size, resampled=True, seed=0,
                                  num_workers=workers)
            ours = measure(clip_windows(shards, config), args.batches, args.batch_size)
            full = FullClipDataset(shards, config)
            ref_loader = torch.utils.data.DataLoader(full, batch_size=None, num_workers=workers)
            ref = measure(ref_loader, args.batches, args.batch_size)
            per = max(workers, 1)
            rows.append((workers, ours, ours / per, ref / per, ours / ref))
    print(f"window T={args.window}, batch {args.batch_size}, {args.batches} batches, shards {args.shards or 'synthetic'}")
    print(f"{'workers':>7} | {'windows/s':>9} | {'windows/s/worker':>16} | {'full clip ref /worker':>21} | ratio")
    for workers, ours, per, ref, ratio in rows:
        print(f"{workers:>7} | {ours:>9.1f} | {per:>16.1f} | {ref:>21.1f} | {ratio:.2f}x")
    print(f"(numpy {np.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
