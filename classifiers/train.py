"""``python -m classifiers train``: group-aware cross-validation, a threshold for a target precision, and a
final model fitted on every labelled clip, written as a self-describing model directory.

Why group-aware: the clips of one video look alike (same game, same overlay, same streamer). If some of
them train the model and others test it, the test measures memory, not generalisation. Folds are made with
``StratifiedGroupKFold`` on the video id, so every video's clips fall in exactly one test fold, and each
fold keeps both classes. The threshold is picked on the out-of-fold scores -- scores of models that never
saw those clips -- as the lowest one reaching the target precision (the filter's job is to keep junk out
of the training set; recall is what we trade). It is picked for the decision rule the model will use: with
``--decision video`` on the video-mean scores (``DecisionRule.pick_threshold``), so the reported precision
and ``target_precision_reached`` describe the decisions the pipeline will actually make.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from classifiers.artifact import save_classifier
from classifiers.dataset import LabelCoverageError, LabelledClips, load_labelled_clips
from classifiers.labels import LabelPolicy
from classifiers.metrics import DecisionRule, binary_report, format_report, to_json, video_mean_scores
from classifiers.models import FAMILIES, ClipModel, make_model
from schemas.cli import StrictParser


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    labels: str  # label file (CSV/JSONL)
    clips: str  # run output dir, shard glob or brace pattern
    out: str  # model directory to write
    family: str = "sklearn"
    preset: str | None = None  # CNN size: resnet18 (default), small, tiny
    epochs: int | None = None  # CNN epochs override
    device: str | None = None  # CNN device: cpu or cuda (default: cuda when available)
    folds: int = 5
    target_precision: float = 0.95
    decision: DecisionRule = DecisionRule()
    policy: LabelPolicy = LabelPolicy()
    allow_unknown: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not 0.0 < self.target_precision <= 1.0:
            raise ValueError(f"target precision must be in (0, 1], got {self.target_precision}")


def group_folds(groups: list[str], targets: np.ndarray, n_splits: int, seed: int = 0
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs; no group (video) is ever on both sides of a pair."""
    groups_arr = np.asarray(groups)
    targets = np.asarray(targets)
    per_class = [len(set(groups_arr[targets == c])) for c in (0, 1)]
    n = min(n_splits, *per_class)
    if n < 2:
        raise LabelCoverageError(f"cross-validation needs >= 2 videos of each class; have {per_class[1]} good "
                                 f"and {per_class[0]} bad videos with binary labels")
    splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    folds = list(splitter.split(np.zeros(len(targets)), targets, groups_arr))
    for train, test in folds:  # the property everything here rests on: check it, do not assume it
        overlap = set(groups_arr[train]) & set(groups_arr[test])
        if overlap:
            raise AssertionError(f"videos {sorted(overlap)[:5]} straddle train and test")
    return folds


def cross_validate(model: ClipModel, data: LabelledClips, n_splits: int, seed: int, log=None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(good) for every clip, and each clip's test fold number."""
    log = log or sys.stderr
    oof = np.full(len(data), np.nan)
    fold_of = np.full(len(data), -1)
    folds = group_folds(data.video_ids, data.targets, n_splits, seed)
    for i, (train, test) in enumerate(folds):
        start = time.monotonic()
        fold_model = model.fresh()
        fold_model.fit(data.inputs[train], data.targets[train])
        oof[test] = fold_model.predict_proba(data.inputs[test])
        fold_of[test] = i
        print(f"  fold {i + 1}/{len(folds)}: train {len(train)} clips, test {len(test)} clips "
              f"({time.monotonic() - start:.1f} s)", file=log)
    return oof, fold_of


def video_level(data: LabelledClips, scores: np.ndarray, threshold: float, margin: float) -> dict:
    """Metrics with one row per video: mean clip score vs the video's label (threshold + margin)."""
    means = video_mean_scores(scores, data.video_ids)
    first = {}
    for i, v in enumerate(data.video_ids):
        first.setdefault(v, i)
    idx = np.array(list(first.values()))
    return binary_report(data.targets[idx], means[idx], threshold + margin)


def train(config: TrainConfig, log=None) -> dict:
    """Cross-validate, pick the threshold, fit on everything, write the model directory; returns metrics."""
    log = log or sys.stderr
    overrides = {"seed": config.seed}
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    if config.device is not None:
        if config.family != "cnn":
            raise ValueError("--device applies to the cnn family only")
        overrides["device"] = config.device
    model = make_model(config.family, config.preset, overrides)
    print(f"train: {config.family} model; preparing labelled clips from {config.clips}", file=log)
    data, labels = load_labelled_clips(config.clips, config.labels, model, config.policy, config.allow_unknown)
    print(f"train: {data.counts} -> {len(data)} clips ({int(data.targets.sum())} good) from "
          f"{len(set(data.video_ids))} videos", file=log)
    oof, fold_of = cross_validate(model, data, config.folds, config.seed, log)
    threshold, reached = config.decision.pick_threshold(data.targets, oof, data.video_ids, config.target_precision)
    keep = config.decision.keep(oof, data.video_ids, threshold)
    cv = binary_report(data.targets, oof, threshold, keep)
    cv["decision"] = dataclasses.asdict(config.decision)
    cv["target_precision"] = config.target_precision
    cv["target_precision_reached"] = reached
    cv["folds"] = int(fold_of.max() + 1)
    metrics = {"cv_clip": cv, "cv_video": video_level(data, oof, threshold, config.decision.margin)}
    print(format_report("cross-validated (clips)", cv), file=log)
    print(format_report("cross-validated (videos, mean clip score)", metrics["cv_video"]), file=log)
    if not reached:
        print(f"train: WARNING no threshold reaches precision {config.target_precision}; using the best-F1 "
              f"threshold {threshold:.4f}", file=log)

    start = time.monotonic()
    model.fit(data.inputs, data.targets)
    fit_s = time.monotonic() - start
    extra = {
        "labels": {"path": str(config.labels), "sha256": labels.sha256, "items": len(labels),
                   "clips_used": len(data), "good": int(data.targets.sum()),
                   "bad": int(len(data) - data.targets.sum()), "videos": len(set(data.video_ids)),
                   "counts": data.counts},
        "label_policy": dataclasses.asdict(config.policy),
        "target_precision": config.target_precision,
        "clips_source": str(config.clips),
        "metrics": metrics,
        "fit_seconds": round(fit_s, 2),
    }
    out = save_classifier(config.out, model, threshold, config.decision, extra, geometry=data.geometry)
    (out / "metrics.json").write_text(to_json(metrics))
    with open(out / "cv_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("clip_key", "video_id", "fold", "hand_score", "target", "cv_score", "kept"))
        for row in zip(data.clip_keys, data.video_ids, fold_of, data.scores, data.targets, oof, keep, strict=True):
            writer.writerow((row[0], row[1], int(row[2]), int(row[3]), int(row[4]), f"{row[5]:.6f}", int(row[6])))
    print(f"train: wrote {out} (threshold {threshold:.4f}, decision {config.decision.rule})", file=log)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, help="label file (CSV or JSONL; see docs/classifier.md)")
    parser.add_argument("--clips", required=True,
                        help="pipeline output dir (its shards/*.tar), a shard glob, or a brace pattern")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--family", choices=FAMILIES, default="sklearn",
                        help="sklearn: boosted trees on clip features (default); cnn: ResNet on frames")
    parser.add_argument("--preset", default=None, help="CNN size: resnet18 (default, 11M params), small, tiny")
    parser.add_argument("--epochs", type=int, default=None, help="CNN training epochs (overrides the preset)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="CNN device (default: cuda when available, else cpu)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by video")
    parser.add_argument("--target-precision", type=float, default=0.95,
                        help="pick the lowest threshold whose cross-validated precision reaches this")
    parser.add_argument("--decision", choices=("clip", "video"), default="clip",
                        help="clip: each clip on its own score; video: a clip is kept when its video's mean "
                             "clip score >= threshold + margin")
    parser.add_argument("--margin", type=float, default=0.0, help="confidence margin for --decision video")
    parser.add_argument("--positive", default="5", help="scores that mean good (comma list; paper: 5)")
    parser.add_argument("--negative", default="1", help="scores that mean bad (comma list; paper: 1)")
    parser.add_argument("--max-disagreement", type=int, default=2,
                        help="labellers further apart than this on one item is a conflict (error)")
    parser.add_argument("--allow-unknown", action="store_true",
                        help="skip (and report) labels for ids absent from --clips instead of failing")
    parser.add_argument("--seed", type=int, default=0)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.family != "cnn":
        given = [flag for flag, value in (("--preset", args.preset), ("--epochs", args.epochs),
                                          ("--device", args.device)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --family cnn only")
    return TrainConfig(
        labels=args.labels, clips=args.clips, out=args.out, family=args.family, preset=args.preset,
        epochs=args.epochs, device=args.device, folds=args.folds, target_precision=args.target_precision,
        decision=DecisionRule(args.decision, args.margin),
        policy=LabelPolicy.parse(args.positive, args.negative, args.max_disagreement),
        allow_unknown=args.allow_unknown, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = StrictParser(prog="python -m classifiers train", epilog="See docs/classifier.md.",
                          description="Cross-validate a quality classifier grouped by video, pick the threshold "
                                      "that reaches a target precision, and write the final model, fitted on every "
                                      "labelled clip, as a model directory.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:  # an option value out of range: argparse's usage message and exit 2
        parser.error(str(exc))
    train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
