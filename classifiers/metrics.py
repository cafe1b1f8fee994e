"""Binary-classifier metrics shared by training (cross-validated) and evaluation (held out).

One function computes the whole report dictionary so that ``train`` and ``evaluate`` print and write the
same numbers under the same names.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


@dataclasses.dataclass(frozen=True)
class DecisionRule:
    """How scores become keep/drop decisions.

    ``clip``: a clip is kept when its own score >= threshold. ``video``: a clip is kept when the MEAN score of
    its video's clips >= threshold + margin -- the paper decided per video from "prediction and confidence";
    the margin demands confidence beyond the threshold, and averaging stops a lucky clip of a junk video
    (or an unlucky clip of a clean one) from deciding alone.
    """

    rule: str = "clip"  # "clip" | "video"
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.rule not in ("clip", "video"):
            raise ValueError(f"decision rule must be 'clip' or 'video', got {self.rule!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")

    def keep(self, scores: np.ndarray, videos: list[str], threshold: float) -> np.ndarray:
        """Boolean keep decision per clip."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.rule == "clip":
            return scores >= threshold
        return video_mean_scores(scores, videos) >= threshold + self.margin


def video_mean_scores(scores: np.ndarray, videos: list[str]) -> np.ndarray:
    """Each clip's video's mean clip score (same length as ``scores``)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s, v in zip(scores, videos, strict=True):
        sums[v] = sums.get(v, 0.0) + float(s)
        counts[v] = counts.get(v, 0) + 1
    return np.array([sums[v] / counts[v] for v in videos], dtype=np.float64)


def pick_threshold(targets: np.ndarray, scores: np.ndarray, target_precision: float) -> tuple[float, bool]:
    """The LOWEST threshold whose precision reaches ``target_precision`` (so recall is as high as it can be).

    Returns ``(threshold, reached)``; when no threshold reaches the target, the one with the best F1 and
    ``reached=False``.
    """
    targets = np.asarray(targets, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    if targets.min(initial=1) == targets.max(initial=0):
        return 0.5, False
    precision, recall, thresholds = precision_recall_curve(targets, scores)
    # precision[i]/recall[i] belong to thresholds[i]; the final (1, 0) point has no threshold
    ok = np.flatnonzero(precision[:-1] >= target_precision)
    if ok.size:
        return float(thresholds[ok[0]]), True
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))]), False


def binary_report(targets: np.ndarray, scores: np.ndarray, threshold: float,
                  keep: np.ndarray | None = None) -> dict:
    """ROC-AUC, PR-AUC, and precision/recall/confusion at ``threshold`` (or at the ``keep`` decisions given)."""
    y = np.asarray(targets, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold) if keep is None else np.asarray(keep, dtype=bool)
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    both = 0 < y.sum() < len(y)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return {
        "n": int(len(y)), "n_good": int(y.sum()), "n_bad": int(len(y) - y.sum()),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "threshold": float(threshold),
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if tp else 0.0,
        "kept_frac": float(pred.mean()) if len(pred) else float("nan"),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def format_report(name: str, report: dict) -> str:
    """A few readable lines for the console."""
    c = report["confusion"]
    return (f"{name}: n={report['n']} (good {report['n_good']}, bad {report['n_bad']})  "
            f"ROC-AUC {report['roc_auc']:.4f}  PR-AUC {report['pr_auc']:.4f}\n"
            f"  at threshold {report['threshold']:.4f}: precision {report['precision']:.4f}  "
            f"recall {report['recall']:.4f}  kept {report['kept_frac']:.1%}\n"
            f"  confusion (rows true bad/good, cols dropped/kept): [[{c['tn']}, {c['fp']}], [{c['fn']}, {c['tp']}]]")
