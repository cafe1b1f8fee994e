"""Does a trained LAM's code say which action was taken? Its codes against the true actions of labelled shards.

    python benchmarks/lam_probe.py --lam runs/bc-cpu/lam --shards runs/bc-cpu/expert-easy
    python benchmarks/lam_probe.py --lam runs/coinrun-cpu/genie --shards runs/coinrun-cpu/data/holdout

The LAM labels every transition of every video in ``--shards`` from frames alone (``infer_clip_actions``), then
the labels are compared with the true actions kept in the shards (procgen-dataset and bc expert shards keep
them): codes used, normalised mutual information, and many-to-one accuracy (each code read as the true action
it most often goes with) against the majority-action baseline. CoinRun's 15 Procgen actions are also folded
into the 6 it distinguishes (left, left+jump, no-op, jump, right, right+jump; down and the letter keys do
nothing there), the classes a LAM could possibly tell apart. Prints a table; the numbers in docs/modeling.md.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from modeling.bc.transitions import read_episodes
from modeling.checkpoint import load_lam

# Procgen's 15 buttons -> CoinRun's 6 distinct effects.
COINRUN_CLASSES = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5, 2, 2, 2, 2, 2, 2])


def scores(codes: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import normalized_mutual_info_score

    many_to_one = sum(np.bincount(truth[codes == c]).max() for c in np.unique(codes)) / len(codes)
    return {"codes": len(np.unique(codes)), "nmi": normalized_mutual_info_score(truth, codes),
            "many_to_one": many_to_one, "majority": np.bincount(truth).max() / len(truth)}


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lam", required=True, help="a run with a LAM (lam, lam-dynamics or dynamics)")
    parser.add_argument("--shards", required=True, help="shards with true actions (a directory with shards/)")
    parser.add_argument("--max-videos", type=int, default=200)
    args = parser.parse_args()
    lam, _ = load_lam(args.lam)
    codes, truth = [], []
    episodes = read_episodes(args.shards)[:args.max_videos]
    for episode in episodes:
        video = torch.from_numpy(episode.frames).permute(0, 3, 1, 2).float().div_(255.0)[None]
        codes.append(lam.infer_clip_actions(video)[0].numpy())
        truth.append(episode.actions[:len(episode.frames) - 1])
    codes, truth = np.concatenate(codes), np.concatenate(truth)
    print(f"{len(codes)} transitions of {len(episodes)} videos, "
          f"{lam.num_actions} codes")
    print("| true actions | codes used | NMI | many-to-one | majority baseline |\n|---|---|---|---|---|")
    for name, labels in (("Procgen's 15", truth), ("CoinRun's 6 effects", COINRUN_CLASSES[truth])):
        s = scores(codes, labels)
        print(f"| {name} | {s['codes']} | {s['nmi']:.3f} | {s['many_to_one']:.3f} | {s['majority']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
