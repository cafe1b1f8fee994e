"""Where a CoinRun transition shows its action: supervised classifiers on hand-picked views of it.

    python benchmarks/action_visibility.py --train runs/lam-cpu/data/sticky/train/shards \
        --holdout runs/lam-cpu/data/sticky/holdout --train-videos 40

Gradient-boosted trees (scikit-learn) learn the action (CoinRun's 6 effects) from one view of each transition
x_t -> x_{t+1}: the camera's shift (``lam_motion.camera_shifts``) alone or with the two before it, or the 16x16
grey crop where the camera keeps the player (the frame's centre) in x_t, in x_{t+1}, their difference, or both.
A view's held-out NMI bounds what a code that describes that view alone can say about the action. What a LAM's
decoder rewards is what x_{t+1} adds to the past, so a view that holds the action only through the state the past
already shows (x_t's crop, under held actions) cannot pull a reconstruction code towards it. ``forward_gain``
asks the decoder's question instead: how much better x_{t+1} at the player is predicted with the action than
without, and what that is worth over a whole frame, the scale at which a LAM's code is chosen. Record:
docs/measurements/2026-12-06-lam-action-in-frames.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lam_motion import camera_shifts  # noqa: E402
from lam_probe import COINRUN_CLASSES  # noqa: E402

from modeling.bc.transitions import read_episodes  # noqa: E402

CROP = 16  # px square around the frame's centre, where the camera keeps the player


def player_crop(frames: np.ndarray) -> np.ndarray:
    """frames (L, H, W, C) in 0..255 -> (L, CROP * CROP * C) float32 in [0, 1]: the square at the frame's centre,
    where the camera keeps the player (one place for the crop the views and the forward models share)."""
    h, w = frames.shape[1:3]
    crop = frames[:, (h - CROP) // 2:(h + CROP) // 2, (w - CROP) // 2:(w + CROP) // 2].astype(np.float32) / 255
    return crop.reshape(len(frames), -1)


def views(episodes) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each view's features (transitions, features) over the episodes' transitions, and their 6-effect actions."""
    parts: dict[str, list[np.ndarray]] = {}
    labels = []
    for e in episodes:
        shift = camera_shifts(e.frames).astype(np.float32)
        n = len(shift)
        before = [np.vstack([np.zeros((k, 2), np.float32), shift[:n - k]]) for k in (1, 2)]
        crop = player_crop(e.frames.astype(np.float32).mean(-1, keepdims=True))  # grey
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


def forward_gain(train, test, steps: int = 3000, seed: int = 0) -> dict[str, float]:
    """What the action is worth to a reconstruction objective at the player: an MLP predicts the player crop of
    x_{t+1} from that of x_t (as x_t + delta), once with the true action (one-hot, Procgen's 15) and once without.

    Returns the held-out crop PSNRs (copying x_t, without, with the action), the action's gain in dB, and that gain
    spread over the whole frame: the MSE it removes per pixel of the frame, and the dB it is worth to a decoder
    whose whole-frame error is that of copying x_t (a decoder that scrolls well is worth more dB per MSE).
    """
    import torch
    import torch.nn as nn

    def tensors(episodes):
        crops, actions, frame_mse = [], [], []
        for e in episodes:
            f = e.frames.astype(np.float32) / 255
            crop = player_crop(e.frames)
            crops.append(np.stack([crop[:-1], crop[1:]], 1))
            actions.append(e.actions[:len(f) - 1])
            frame_mse.append(((f[1:] - f[:-1]) ** 2).mean(axis=(1, 2, 3)))
        c = torch.from_numpy(np.vstack(crops))
        return c[:, 0], c[:, 1], torch.from_numpy(np.concatenate(actions)).long(), float(np.concatenate(frame_mse).mean())

    x, y, a, _ = tensors(train)
    tx, ty, ta, frame_copy_mse = tensors(test)

    def fit(with_action: bool) -> float:
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1] + 15, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(),
                            nn.Linear(512, x.shape[1]))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

        def predict(crop, action):
            onehot = nn.functional.one_hot(action, 15).float() * float(with_action)
            return crop + net(torch.cat([crop, onehot], 1))

        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            i = torch.randint(0, len(x), (min(256, len(x)),), generator=generator)
            loss = (predict(x[i], a[i]) - y[i]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return float((predict(tx, ta) - ty).pow(2).mean())

    def psnr(mse: float) -> float:
        return 10 * math.log10(1 / max(mse, 1e-12))

    copy, without, with_action = float((tx - ty).pow(2).mean()), fit(False), fit(True)
    share = CROP * CROP / (test[0].frames.shape[1] * test[0].frames.shape[2])  # the crop's share of the frame
    frame_gain = (without - with_action) * share
    return {"crop_psnr_copy": psnr(copy), "crop_psnr_without": psnr(without), "crop_psnr_with": psnr(with_action),
            "gain_db": psnr(with_action) - psnr(without), "frame_mse_gain": frame_gain,
            "frame_mse_copy": frame_copy_mse,
            "frame_gain_db_at_copy": psnr(frame_copy_mse - frame_gain) - psnr(frame_copy_mse)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="shards with true actions to fit on")
    parser.add_argument("--holdout", required=True, help="shards with true actions to score on")
    parser.add_argument("--train-videos", type=int, default=40)
    parser.add_argument("--forward-steps", type=int, default=3000,
                        help="training steps of the forward models at the player (0: skip them)")
    args = parser.parse_args()
    train, test = read_episodes(args.train)[:args.train_videos], read_episodes(args.holdout)
    train_x, train_y = views(train)
    test_x, test_y = views(test)
    print(f"{len(train_y)} training and {len(test_y)} held-out transitions; majority baseline "
          f"{np.bincount(test_y).max() / len(test_y):.3f}\n")
    print("| view | NMI with the action (6 effects) | accuracy |\n|---|---|---|")
    for name, (nmi, accuracy) in scores(train_x, train_y, test_x, test_y).items():
        print(f"| {name} | {nmi:.3f} | {accuracy:.3f} |")
    if args.forward_steps:
        g = forward_gain(train, test, args.forward_steps)
        print(f"\nForward at the player ({CROP}x{CROP} crop of x_t+1 from x_t's, {args.forward_steps} steps): PSNR "
              f"copying x_t {g['crop_psnr_copy']:.2f} dB, without the action {g['crop_psnr_without']:.2f} dB, with "
              f"it {g['crop_psnr_with']:.2f} dB (the action's gain {g['gain_db']:+.2f} dB). Over the whole frame "
              f"that gain removes {g['frame_mse_gain']:.2e} of MSE per pixel; at the whole-frame MSE of copying "
              f"x_t ({g['frame_mse_copy']:.2e}) it is worth {g['frame_gain_db_at_copy']:+.3f} dB.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
