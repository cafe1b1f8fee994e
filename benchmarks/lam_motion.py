"""What a LAM's code tracks besides the action: the camera's motion, and how much of it the action explains.

In a scrolling game the frame moves as a whole when the camera follows the player. ``camera_shifts`` estimates
each transition's global shift by exhaustive search (the integer shift of x_t that best matches x_{t+1},
mean squared error over the interior). ``motion_report`` then gives the NMI of the codes with that motion, and
plug-in entropies of the next shift given the two before it, with and without the action taken: the bits of
motion that momentum leaves unexplained and the share of them the action explains. A code that spends its
bits on motion can say about the action at most what the motion does.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def camera_shifts(frames: np.ndarray, radius: tuple[int, int] = (8, 4)) -> np.ndarray:
    """frames (L, H, W, C) -> (L-1, 2) int: (dy, dx) with x_{t+1}[y, x] ~ x_t[y + dy, x + dx], |dy| <= radius[0],
    |dx| <= radius[1]; ties go to the first shift searched."""
    ry, rx = radius
    f = frames.astype(np.float32)
    a, b = f[:-1], f[1:]
    h, w = f.shape[1:3]
    if h <= 2 * ry or w <= 2 * rx:
        raise ValueError(f"frames of {h}x{w} are too small for a search of +-{ry} x +-{rx} px")
    target = b[:, ry:h - ry, rx:w - rx]
    best = np.full(len(a), np.inf)
    shifts = np.zeros((len(a), 2), dtype=np.int64)
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            err = ((target - a[:, ry + dy:h - ry + dy, rx + dx:w - rx + dx]) ** 2).mean(axis=(1, 2, 3))
            better = err < best
            best[better] = err[better]
            shifts[better] = (dy, dx)
    return shifts


def entropy(*columns: np.ndarray) -> float:
    """Plug-in entropy in bits of the joint distribution of equal-length integer columns."""
    counts = np.array(list(Counter(zip(*columns, strict=True)).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def motion_report(shifts: list[np.ndarray], codes: np.ndarray, actions: np.ndarray) -> dict[str, float]:
    """``shifts`` per episode (``camera_shifts``), and the codes and actions of the same transitions, concatenated
    in episode order. The entropies use transitions with two shifts before them."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    every = np.concatenate(shifts)
    if len(every) != len(codes) or len(codes) != len(actions):
        raise ValueError(f"{len(every)} shifts, {len(codes)} codes and {len(actions)} actions do not line up")
    dy, dx = every[:, 0], every[:, 1]
    motion = dy * 1000 + dx
    keep = np.concatenate([np.arange(len(s)) >= 2 for s in shifts])
    prev1 = np.concatenate([np.roll(s[:, 0] * 1000 + s[:, 1], 1) for s in shifts])[keep]
    prev2 = np.concatenate([np.roll(s[:, 0] * 1000 + s[:, 1], 2) for s in shifts])[keep]
    now, act = motion[keep], actions[keep]
    given_past = entropy(now, prev1, prev2) - entropy(prev1, prev2)
    given_action = entropy(now, prev1, prev2, act) - entropy(prev1, prev2, act)
    return {"nmi_code_dy": float(nmi(dy, codes)), "nmi_code_dx": float(nmi(dx, codes)),
            "nmi_code_motion": float(nmi(motion, codes)), "nmi_action_motion": float(nmi(motion, actions)),
            "bits_motion": entropy(now), "bits_motion_given_past": given_past,
            "bits_motion_given_past_and_action": given_action,
            "transitions": int(keep.sum()), "still_share": float(np.mean((dy == 0) & (dx == 0)))}


def motion_line(report: dict[str, float]) -> str:
    explained = report["bits_motion_given_past"] - report["bits_motion_given_past_and_action"]
    return (f"Camera motion (global shift): code NMI with dy {report['nmi_code_dy']:.3f}, dx "
            f"{report['nmi_code_dx']:.3f}, (dy, dx) {report['nmi_code_motion']:.3f}; the next shift given the two "
            f"before it: {report['bits_motion_given_past']:.2f} bits, {report['bits_motion_given_past_and_action']:.2f}"
            f" with the action too (the action explains {explained:.2f} bits; "
            f"plug-in estimates over {report['transitions']} transitions)")
