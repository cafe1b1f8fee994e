"""Slot-1 drift after the generation window slides (``modeling.context_check``), on a trained run and real clips.

    .venv/bin/python benchmarks/first_frame_context.py --run runs/coinrun-cpu/genie \
        --shards 'runs/coinrun-cpu/data/holdout/shards/*.tar' [--clips 32] [--frames 16]

Prints, per frame position k of the clips, the share of tokens that differ between frame k encoded after k
frames of context (what slot 1 holds at inference once the window has slid) and frame k encoded alone (what
slot 1 always holds in training), under the run's precision. Frame 0 is the reference (0 by construction).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.context_check import slot1_mismatch  # noqa: E402
from modeling.data import LoaderConfig, clip_windows, to_float_video  # noqa: E402
from modeling.genie import load_genie_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a lam-dynamics run directory")
    parser.add_argument("--shards", required=True, help="clips to measure on (held-out ones)")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16, help="frames per clip measured")
    ns = parser.parse_args()
    genie = load_genie_run(ns.run)
    loader = clip_windows(ns.shards, LoaderConfig(window=ns.frames, batch_size=8, shuffle=False), genie.frame_size)
    per_frame, seen = None, 0
    for batch in loader:
        video = to_float_video(batch["video"][: ns.clips - seen]).to(genie.device)
        with genie.autocast():
            got = slot1_mismatch(genie.tokenizer, video)
        rows = torch.tensor(got["per_frame"]) * video.shape[0]
        per_frame = rows if per_frame is None else per_frame + rows
        seen += video.shape[0]
        if seen >= ns.clips:
            break
    per_frame = per_frame / seen
    print(f"{'frame k':>8} {'tokens differing, in context vs alone':>40}")
    for k, value in enumerate(per_frame.tolist()):
        print(f"{k:>8} {value:>39.1%}")
    print(f"mean over frames 1..{ns.frames - 1}: {per_frame[1:].mean().item():.1%} of slot-1 tokens differ from "
          f"what training shows ({seen} clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
