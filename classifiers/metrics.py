"""Binary-classifier metrics shared by training (cross-validated) and evaluation (held out).

One function computes the whole report dictionary so that ``train`` and ``evaluate`` print and write the
same numbers under the same names. A metric that is undefined (ROC-AUC with one class, precision when
nothing is kept) is NaN in memory and ``null`` in the JSON files (``to_json``): NaN is not valid JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np


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

    def pick_threshold(self, targets: np.ndarray, scores: np.ndarray, videos: list[str],
                       target_precision: float) -> tuple[float, bool]:
        """``pick_threshold`` for THIS rule, so the precision it promises is that of the decisions ``keep`` makes.

        ``clip``: on the clip scores. ``video``: on each clip's video-mean score (precision still counts
        clips: the pipeline keeps clips), as the cut ``threshold + margin``; the returned threshold is that
        cut minus the margin, never below 0 (cuts under the margin are out of reach).
        """
        if self.rule == "clip":
            return pick_threshold(targets, scores, target_precision)
        cut, reached = pick_threshold(targets, video_mean_scores(scores, videos), target_precision,
                                      minimum=self.margin)
        threshold = cut - self.margin
        while threshold > 0 and threshold + self.margin > cut:  # float rounding must not move the cut up
            threshold = float(np.nextafter(threshold, 0.0))
        return threshold, reached


def video_mean_scores(scores: np.ndarray, videos: list[str]) -> np.ndarray:
    """Each clip's video's mean clip score (same length as ``scores``)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s, v in zip(scores, videos, strict=True):
        sums[v] = sums.get(v, 0.0) + float(s)
        counts[v] = counts.get(v, 0) + 1
    return np.array([sums[v] / counts[v] for v in videos], dtype=np.float64)


def pick_threshold(targets: np.ndarray, scores: np.ndarray, target_precision: float,
                   minimum: float = 0.0) -> tuple[float, bool]:
    """The LOWEST threshold whose precision reaches ``target_precision`` (so recall is as high as it can be).

    A clip is kept when its score >= the threshold; candidates are the observed scores >= ``minimum``.
    Returns ``(threshold, reached)``; when no candidate reaches the target, the one with the best F1 and
    ``reached=False`` (``max(0.5, minimum)`` when there is no candidate or only one class).
    """
    targets = np.asarray(targets, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    fallback = max(0.5, float(minimum))
    if targets.min(initial=1) == targets.max(initial=0):
        return fallback, False
    from sklearn.metrics import precision_recall_curve  # imported here: see binary_report

    precision, recall, thresholds = precision_recall_curve(targets, scores)
    # precision[i]/recall[i] belong to thresholds[i]; the final (1, 0) point has no threshold
    precision, recall = precision[:-1], recall[:-1]
    allowed = thresholds >= minimum
    ok = np.flatnonzero(allowed & (precision >= target_precision))
    if ok.size:
        return float(thresholds[ok[0]]), True
    if not allowed.any():
        return fallback, False
    f1 = np.where(allowed, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1.0)
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
    # sklearn is imported here, not at the top: the quality stage imports this module (DecisionRule) in every
    # pipeline process and SDK worker, and sklearn costs about a second to import there
    from sklearn.metrics import average_precision_score, roc_auc_score

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


def to_json(value: Any) -> str:
    """``value`` as indented, key-sorted, strictly valid JSON: NaN/inf become ``null``, numpy scalars and
    arrays become Python numbers and lists (``json.dumps(allow_nan=False)`` would fail on a NaN)."""
    return json.dumps(_json_ready(value), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(name: str, report: dict) -> str:
    """A few readable lines for the console."""
    c = report["confusion"]
    return (f"{name}: n={report['n']} (good {report['n_good']}, bad {report['n_bad']})  "
            f"ROC-AUC {report['roc_auc']:.4f}  PR-AUC {report['pr_auc']:.4f}\n"
            f"  at threshold {report['threshold']:.4f}: precision {report['precision']:.4f}  "
            f"recall {report['recall']:.4f}  kept {report['kept_frac']:.1%}\n"
            f"  confusion (rows true bad/good, cols dropped/kept): [[{c['tn']}, {c['fp']}], [{c['fn']}, {c['tp']}]]")
