"""Where a CoinRun transition shows its action: supervised classifiers on hand-picked views of it.

    python benchmarks/action_visibility.py --train runs/lam-cpu/data/sticky/train/shards \
        --holdout runs/lam-cpu/data/sticky/holdout --train-videos 40

Gradient-boosted trees (scikit-learn) learn the action (CoinRun's 6 effects) from one view of each transition
x_t -> x_{t+1}: the camera's shift (``lam_motion.camera_shifts``) alone or with the two before it, or the 16x16
grey crop where the camera keeps the player (the frame's centre) in x_t, in x_{t+1}, their difference, or both.
A view's held-out NMI bounds what a code that describes that view alone can say about the action. What a LAM's
decoder rewards is what x_{t+1} adds to the past, so a view that holds the action only through the state the past
already shows (x_t's crop, under held actions) cannot pull a reconstruction code towards it. Record:
docs/measurements/2026-12-06-lam-action-in-frames.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lam_motion import camera_shifts  # noqa: E402
from lam_probe import COINRUN_CLASSES  # noqa: E402

from modeling.bc.transitions import read_episodes  # noqa: E402

CROP = 16  # px square around the frame's centre, where the camera keeps the player


def views(episodes) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each view's features (transitions, features) over the episodes' transitions, and their 6-effect actions."""
    parts: dict[str, list[np.ndarray]] = {}
    labels = []
    for e in episodes:
        shift = camera_shifts(e.frames).astype(np.float32)
        n = len(shift)
        before = [np.vstack([np.zeros((k, 2), np.float32), shift[:n - k]]) for k in (1, 2)]
        grey = e.frames.astype(np.float32).mean(-1) / 255
        h, w = grey.shape[1:]
        crop = grey[:, (h - CROP) // 2:(h + CROP) // 2, (w - CROP) // 2:(w + CROP) // 2].reshape(len(grey), -1)
        for name, x in {"camera shift": shift, "camera shift and the two before": np.hstack([shift, *before]),
                        "player crop of x_t": crop[:-1], "player crop of x_t+1": crop[1:],
                        "crop change x_t+1 - x_t": crop[1:] - crop[:-1],
                        "crops of x_t and x_t+1": np.hstack([crop[:-1], crop[1:]]),
                        "crops and camera shifts": np.hstack([crop[:-1], crop[1:], shift, *before])}.items():
            parts.setdefault(name, []).append(x)
        labels.append(COINRUN_CLASSES[e.actions[:n]])
    return {k: np.vstack(v) for k, v in parts.items()}, np.concatenate(labels)


def scores(train_x: dict[str, np.ndarray], train_y: np.ndarray, test_x: dict[str, np.ndarray], test_y: np.ndarray,
           rounds: int = 200) -> dict[str, tuple[float, float]]:
    """Each view's held-out (NMI, accuracy) of gradient-boosted trees fitted on its training features."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import normalized_mutual_info_score

    out = {}
    for name in train_x:
        predicted = HistGradientBoostingClassifier(max_iter=rounds, random_state=0).fit(
            train_x[name], train_y).predict(test_x[name])
        out[name] = (float(normalized_mutual_info_score(test_y, predicted)), float(np.mean(predicted == test_y)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="shards with true actions to fit on")
    parser.add_argument("--holdout", required=True, help="shards with true actions to score on")
    parser.add_argument("--train-videos", type=int, default=40)
    args = parser.parse_args()
    train_x, train_y = views(read_episodes(args.train)[:args.train_videos])
    test_x, test_y = views(read_episodes(args.holdout))
    print(f"{len(train_y)} training and {len(test_y)} held-out transitions; majority baseline "
          f"{np.bincount(test_y).max() / len(test_y):.3f}\n")
    print("| view | NMI with the action (6 effects) | accuracy |\n|---|---|---|")
    for name, (nmi, accuracy) in scores(train_x, train_y, test_x, test_y).items():
        print(f"| {name} | {nmi:.3f} | {accuracy:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
