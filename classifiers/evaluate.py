"""``python -m classifiers evaluate``: score held-out labelled clips with a model directory; print and write the
training metrics plus a self-contained HTML report (ROC and PR curves, score histograms, worst mistakes).

The decision is the model's own (its threshold and decision rule, or ``--threshold``), so the held-out numbers
describe what the pipeline will do with that model. Binary metrics use the clips whose hand score the label
policy maps to good/bad; the histograms show every hand score present, as where the in-between clips land is what
a threshold change moves.

``--min-roc-auc X`` makes the command a quality gate: a held-out ROC-AUC below X, or an undefined one (one class
only), ends it with exit status 1 naming the value, after the report is written so the failure can be investigated.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from classifiers.artifact import load_classifier
from classifiers.dataset import (
    LEFT_OUT,
    LabelCoverageError,
    LabelledClips,
    load_labelled_clips,
    thumbnails,
)
from classifiers.labels import LabelPolicy
from classifiers.metrics import binary_report, format_report, to_json
from schemas.cli import StrictParser
from schemas.figures import encode_image, figure_png, img_tag, subplots

WORST = 8  # mistakes shown per side
HIST_BINS = np.linspace(0, 1, 21)  # P(good) bins of the per-hand-score histograms (figure and metrics.json)


def _png(fig) -> bytes:
    return figure_png(fig, dpi=100, bbox_inches="tight")


def curves_png(targets: np.ndarray, scores: np.ndarray, threshold: float) -> bytes:
    fig, (a, b) = subplots(1, 2, figsize=(9, 4))
    if 0 < targets.sum() < len(targets):
        fpr, tpr, _ = roc_curve(targets, scores)
        a.plot(fpr, tpr)
        prec, rec, _ = precision_recall_curve(targets, scores)
        b.plot(rec, prec)
    a.plot([0, 1], [0, 1], ls=":", c="grey")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    b.set(xlabel="recall", ylabel="precision", title=f"precision-recall (threshold {threshold:.3f})")
    return _png(fig)


def by_hand_score(hand: np.ndarray, scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """Per hand score present: clip count, its role in the binary task, mean P(good), share at or above the
    threshold, and the histogram counts over ``HIST_BINS`` (the numbers behind ``histogram.png``)."""
    out = {}
    for h in sorted(set(hand.tolist())):
        s = scores[hand == h]
        t = int(targets[hand == h][0])
        out[str(h)] = {"n": int(s.size), "target": {1: "good", 0: "bad", LEFT_OUT: "left out"}[t],
                       "mean_score": float(s.mean()), "at_or_above_threshold": float(np.mean(s >= threshold)),
                       "histogram": np.histogram(s, bins=HIST_BINS)[0].tolist()}
    return out


def histogram_png(per_score: dict, threshold: float) -> bytes:
    """One histogram panel per hand score, best score on top, sharing the P(good) axis."""
    rows = sorted(per_score, key=int, reverse=True)
    fig, axes = subplots(len(rows), 1, figsize=(7, 1.2 + 1.3 * len(rows)), sharex=True, squeeze=False)
    for ax, h in zip(axes[:, 0], rows, strict=True):
        info = per_score[h]
        ax.stairs(info["histogram"], HIST_BINS, fill=True, alpha=0.7)
        ax.axvline(threshold, c="k", ls="--")
        ax.set_ylabel("clips")
        ax.set_title(f"hand score {h} ({info['target']}, {info['n']} clips)", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("P(good)   (dashed: threshold)")
    return _png(fig)


def worst_mistakes(data: LabelledClips, scores: np.ndarray, keep: np.ndarray) -> list[tuple[str, int]]:
    """(kind, index) of kept bad clips with the highest scores, then dropped good clips with the lowest."""
    fp = [i for i in np.argsort(-scores) if keep[i] and data.targets[i] == 0][:WORST]
    fn = [i for i in np.argsort(scores) if not keep[i] and data.targets[i] == 1][:WORST]
    return [("kept but labelled bad", int(i)) for i in fp] + [("dropped but labelled good", int(i)) for i in fn]


def write_report(out: Path, title: str, report: dict, data: LabelledClips, scores: np.ndarray,
                 keep: np.ndarray, threshold: float, clips_source: str) -> Path:
    """``report.html`` (+ the PNGs) for the binary-labelled clips ``data``; ``report["by_hand_score"]`` feeds
    the histograms."""
    curves = curves_png(data.targets, scores, threshold)
    hist = histogram_png(report["by_hand_score"], threshold)
    (out / "curves.png").write_bytes(curves)
    (out / "histogram.png").write_bytes(hist)
    c = report["confusion"]
    rows = []
    worst = worst_mistakes(data, scores, keep)
    strips = thumbnails(clips_source, {data.clip_keys[i] for _, i in worst}) if worst else {}
    for kind, i in worst:
        strip = strips.get(data.clip_keys[i])
        thumb = (img_tag(encode_image(strip, optimize=True), data.clip_keys[i]) if strip is not None
                 else "(unreadable)")
        rows.append(f"<tr><td>{html.escape(kind)}</td><td>{thumb}</td><td>{html.escape(data.clip_keys[i])}</td>"
                    f"<td>{html.escape(data.video_ids[i])}</td><td>{data.scores[i]}</td><td>{scores[i]:.3f}</td></tr>")
    per_score = "".join(
        f"<tr><td>{h}</td><td>{v['target']}</td><td>{v['n']}</td><td>{v['mean_score']:.3f}</td>"
        f"<td>{v['at_or_above_threshold']:.1%}</td></tr>" for h, v in sorted(report["by_hand_score"].items()))
    mistakes = ("<table><tr><th>mistake</th><th>frames</th><th>clip</th><th>video</th><th>hand score</th>"
                "<th>P(good)</th></tr>" + "".join(rows) + "</table>") if rows else "<p>No mistakes.</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px}}
table{{border-collapse:collapse}} img{{image-rendering:pixelated}}</style></head><body>
<h1>{html.escape(title)}</h1>
<table><tr><th>clips</th><th>good</th><th>bad</th><th>ROC-AUC</th><th>PR-AUC</th><th>threshold</th>
<th>precision</th><th>recall</th><th>kept</th></tr>
<tr><td>{report['n']}</td><td>{report['n_good']}</td><td>{report['n_bad']}</td><td>{report['roc_auc']:.4f}</td>
<td>{report['pr_auc']:.4f}</td><td>{threshold:.4f}</td><td>{report['precision']:.4f}</td>
<td>{report['recall']:.4f}</td><td>{report['kept_frac']:.1%}</td></tr></table>
<h2>Confusion matrix</h2>
<table><tr><th></th><th>dropped</th><th>kept</th></tr><tr><th>labelled bad</th><td>{c['tn']}</td><td>{c['fp']}</td></tr>
<tr><th>labelled good</th><td>{c['fn']}</td><td>{c['tp']}</td></tr></table>
<h2>Curves</h2>{img_tag(curves, "ROC and precision-recall curves")}
<h2>Scores by hand label</h2>
<table><tr><th>hand score</th><th>binary target</th><th>clips</th><th>mean P(good)</th>
<th>P(good) &gt;= threshold</th></tr>{per_score}</table>
{img_tag(hist, "score histograms by hand score")}
<h2>Worst mistakes</h2>{mistakes}
</body></html>"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def evaluate(model_dir: str, labels: str, clips: str, out: str | None = None, threshold: float | None = None,
             allow_unknown: bool = False, log=None) -> dict:
    """Score the held-out labelled clips; write metrics.json, report.html, curves.png, histogram.png."""
    log = log or sys.stderr
    clf = load_classifier(model_dir, threshold)
    policy = LabelPolicy(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in clf.metadata.get("label_policy", {}).items()})
    labelled, label_set = load_labelled_clips(clips, labels, clf.model, policy, allow_unknown,
                                              include_left_out=True)
    binary = labelled.targets != LEFT_OUT
    if not binary.any():
        raise LabelCoverageError(f"no clip in {clips} has a binary label in {labels} (scores "
                                 f"{list(policy.positive_scores)} good, {list(policy.negative_scores)} bad)")
    all_scores = np.concatenate([clf.model.predict_proba(labelled.inputs[i:i + 64])
                                 for i in range(0, len(labelled), 64)])
    data, scores = labelled.subset(binary), all_scores[binary]
    keep = clf.decision.keep(scores, data.video_ids, clf.threshold)
    report = binary_report(data.targets, scores, clf.threshold, keep)
    report.update({"model_dir": str(model_dir), "family": clf.family, "labels": str(labels),
                   "labels_sha256": label_set.sha256, "decision": clf.metadata.get("decision"),
                   "counts": data.counts,
                   "by_hand_score": by_hand_score(labelled.scores, all_scores, labelled.targets, clf.threshold)})
    out_dir = Path(out) if out else Path(model_dir) / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(to_json(report))
    page = write_report(out_dir, f"Quality classifier ({clf.family}) on {Path(labels).name}", report, data,
                        scores, keep, clf.threshold, clips)
    print(format_report("held out (clips)", report), file=log)
    print(f"evaluate: wrote {out_dir / 'metrics.json'} and {page}", file=log)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by `train`")
    parser.add_argument("--labels", required=True, help="held-out label file (CSV or JSONL)")
    parser.add_argument("--clips", required=True, help="pipeline output dir, shard glob, or brace pattern")
    parser.add_argument("--out", default=None, help="report directory (default: MODEL/evaluation)")
    parser.add_argument("--threshold", type=float, default=None, help="override the model's threshold")
    parser.add_argument("--allow-unknown", action="store_true", help="skip labels for ids absent from --clips")
    parser.add_argument("--min-roc-auc", type=float, default=None, metavar="X",
                        help="exit with status 1 (after writing the report) when the held-out ROC-AUC is "
                             "below X or undefined")


def roc_auc_shortfall(report: dict, minimum: float) -> str | None:
    """Why ``report`` fails the ``--min-roc-auc`` gate, or None when it passes. An undefined ROC-AUC (one
    class in the held-out labels) fails: a gate that cannot be measured must not pass silently."""
    auc = report.get("roc_auc")
    n = f"{report.get('n_good')} good and {report.get('n_bad')} bad clips"
    if auc is None or not math.isfinite(auc):
        return f"held-out ROC-AUC is undefined ({n}: both classes are needed), required >= {minimum}"
    if auc < minimum:
        return f"held-out ROC-AUC {auc:.4f} is below the required {minimum} ({n})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = StrictParser(prog="python -m classifiers evaluate", epilog="See docs/classifier.md.",
                          description="Score held-out labelled clips with a model directory; print and write the "
                                      "training metrics and an HTML report (ROC and PR curves, score histograms, "
                                      "the worst mistakes).")
    add_arguments(parser)
    a = parser.parse_args(argv)
    if a.min_roc_auc is not None and not 0.0 <= a.min_roc_auc <= 1.0:
        parser.error(f"--min-roc-auc must be in [0, 1], got {a.min_roc_auc}")
    report = evaluate(a.model, a.labels, a.clips, a.out, a.threshold, a.allow_unknown)
    if a.min_roc_auc is not None:
        shortfall = roc_auc_shortfall(report, a.min_roc_auc)
        if shortfall:
            print(f"{parser.prog}: error: {shortfall} (--min-roc-auc)", file=sys.stderr)
            return 1
        print(f"evaluate: held-out ROC-AUC {report['roc_auc']:.4f} >= {a.min_roc_auc} (--min-roc-auc)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
