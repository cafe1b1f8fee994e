"""Quality stage: score every clip with the trained classifier, drop the ones below the threshold.

Clip -> {MAIN: kept clips with ``quality_score`` set, OUTCOMES: ``dropped: low_quality`` and ``failed:
quality_error``}. The model loads once per worker process (``DoFn.setup`` + ``Shared``) and clips are scored in
batches (``beam.BatchElements``); a clip that cannot be scored becomes a ``failed`` outcome, never a stopped run.
Without a model directory every clip passes unscored, counted (``quality/unscored``) and stated in ``stats.json``,
so an unfiltered dataset says so. Scores are P(good), so ``--quality-threshold`` outside [0, 1] is refused at
launch. A model trained with the ``video`` rule keeps a video's clips when their mean score reaches threshold +
margin (``classifiers.metrics.DecisionRule``). Scoring is fused after Segment: it reads the clip store's bytes
there, and only references with scores move on. ``classifiers`` imports nothing from ``pipeline``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.utils import shared

from classifiers.artifact import (
    LoadedClassifier,
    check_threshold,
    decision_settings,
    load_classifier,
    read_metadata,
)
from classifiers.metrics import DecisionRule, video_mean_scores
from pipeline import stage
from pipeline.cli import cli_types
from pipeline.cli.options import option
from pipeline.io import clip_store, storage
from schemas import Clip, Outcome, reasons
from schemas.clip_codec import decode_clip
from schemas.stats import QualitySettings

NAMESPACE = "quality"
DEFAULT_BATCH_SIZE = 32


def threshold_arg(text: str) -> float:
    """argparse type for ``--quality-threshold``: a probability in [0, 1] (``classifiers.artifact.check_threshold``,
    the one check of a threshold); a parse error names the allowed range."""
    try:
        return check_threshold(float(text), "the quality threshold (a probability P(good))")
    except ValueError as exc:
        msg = str(exc) if "threshold" in str(exc) else f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    """Which classifier scores the clips and how; its flags are declared here once (``pipeline.cli.options``)."""

    classifier: str | None = option(  # model directory; None: clips pass unscored
        "--classifier", metavar="MODEL_DIR", default=None,
        help="model directory from `python -m classifiers train`; without it clips pass unscored (counted as "
             "quality/unscored)")
    threshold: float | None = option(  # None: the threshold stored with the model
        "--quality-threshold", type=threshold_arg, default=None, metavar="T",
        help="keep clips scoring at least T, a probability in [0, 1] (default: the threshold stored with the model)")
    batch_size: int = option("--quality-batch-size", type=cli_types.integer(1), default=DEFAULT_BATCH_SIZE,
                             help="clips per model call")


class _ModelHolder:
    """Weak-referenceable wrapper so ``Shared`` can hold the loaded classifier."""

    def __init__(self, classifier):
        self.classifier = classifier


def low_quality_detail(score: float, threshold: float, rule: str, video_score: float | None = None) -> str:
    if rule == "video" and video_score is not None:
        return f"video mean score {video_score:.4f} < {threshold:.4f} (clip score {score:.4f})"
    return f"score {score:.4f} < threshold {threshold:.4f}"


def score_clips(classifier: LoadedClassifier, clips: list[Clip]) -> Iterator[tuple[Clip | None, Outcome | None]]:
    """Score a batch: ``(scored clip, None)`` or ``(None, failed outcome)`` per input clip, in order.

    A plain function (no Beam) so it can be tested and reused directly. Each clip's size and frame rate are
    checked against the model's training clips first (``LoadedClassifier.check_clip``: the rate is in the
    record, not in the frames). Clips hold their mp4 or a clip store reference (read here, the batch's clips in
    order). Reading, decoding and preparing happen per clip, so one broken clip fails alone; the model runs
    once on the batch of the others.
    """
    prepared, ok, failed = [], [], []
    with clip_store.Reader() as reader:
        for clip in clips:
            try:
                classifier.check_clip(clip)
                data = reader.read(clip)
                if not data:
                    raise ValueError("clip has no encoded bytes")
                prepared.append(classifier.prepare(decode_clip(data)))
                ok.append(clip)
            except Exception as exc:
                failed.append((clip, exc))
    for clip, exc in failed:  # the store kept refusing (the reader retried): storage_error, a rerun retries it
        refused = storage.refused(exc)
        yield None, Outcome.for_clip(clip, reasons.STAGE_QUALITY, reasons.FAILED,
                                     reasons.STORAGE_ERROR if refused else reasons.QUALITY_ERROR,
                                     f"{type(exc).__name__}: {exc}")
    if not ok:
        return
    try:
        scores = classifier.score_prepared(prepared)
    except Exception as exc:
        for clip in ok:
            yield None, Outcome.for_clip(clip, reasons.STAGE_QUALITY, reasons.FAILED, reasons.QUALITY_ERROR,
                                         f"model failed on the batch: {type(exc).__name__}: {exc}")
        return
    for clip, score in zip(ok, scores, strict=True):
        yield clip.replace(quality_score=float(score)), None


class _ScoreBatches(beam.DoFn):
    """Scores batches of clips; emits scored clips on the main output and failures on OUTCOMES."""

    def __init__(self, model_dir: str, threshold: float | None, handle: shared.Shared):
        self._model_dir = model_dir
        self._threshold = threshold
        self._handle = handle
        self._holder = None
        self._classifier = None
        self._scored = beam.metrics.Metrics.counter(NAMESPACE, "scored")
        self._errors = beam.metrics.Metrics.counter(NAMESPACE, "errors")
        self._batches = beam.metrics.Metrics.distribution(NAMESPACE, "batch_size")
        self._loads = beam.metrics.Metrics.counter(NAMESPACE, "model_loads")
        self._loaded_here = False

    def setup(self):
        def load():
            self._loaded_here = True
            return _ModelHolder(load_classifier(self._model_dir, self._threshold))

        # Keep the holder itself: Shared keeps the model only while someone references the object it
        # returned (weakly cached, plus one process-wide keep-alive slot that any other Shared acquire takes
        # over); holding just ``.classifier`` would let the holder go and the next setup reload the model.
        self._holder = self._handle.acquire(load, tag=f"{self._model_dir}|{self._threshold}")
        self._classifier = self._holder.classifier

    def process(self, batch: list[Clip]):
        if self._loaded_here:  # counted here: counters are reported from process, not from setup
            self._loads.inc()
            self._loaded_here = False
        self._batches.update(len(batch))
        for clip, outcome in score_clips(self._classifier, batch):
            if outcome is not None:
                self._errors.inc()
                yield beam.pvalue.TaggedOutput(stage.OUTCOMES, outcome)
            else:
                self._scored.inc()
                yield clip


def decide(clips: list[Clip], rule: DecisionRule, threshold: float) -> Iterator[tuple[Clip, Outcome | None]]:
    """``(clip, None)`` for each scored clip the rule keeps at ``threshold`` (``DecisionRule.keep``: a clip's
    own score, or its video's mean plus the margin), ``(clip, dropped low_quality)`` for the others."""
    scores = np.array([c.quality_score for c in clips], dtype=np.float64)
    videos = [c.video_id for c in clips]
    means = video_mean_scores(scores, videos) if rule.rule == "video" else [None] * len(clips)
    bar = threshold + rule.margin if rule.rule == "video" else threshold
    for clip, keep, mean in zip(clips, rule.keep(scores, videos, threshold), means, strict=True):
        yield clip, None if keep else Outcome.for_clip(
            clip, reasons.STAGE_QUALITY, reasons.DROPPED, reasons.LOW_QUALITY,
            low_quality_detail(clip.quality_score, bar, rule.rule, mean))


class _Decide(beam.DoFn):
    """Keep or drop scored clips: one clip at a time (``clip`` rule) or a video's clips together (``video``)."""

    def __init__(self, rule: DecisionRule, threshold: float):
        self._rule, self._threshold = rule, threshold
        self._kept = beam.metrics.Metrics.counter(NAMESPACE, "kept")
        self._dropped = beam.metrics.Metrics.counter(NAMESPACE, "low_quality")

    def process(self, element):
        clips = [element] if isinstance(element, Clip) else sorted(element[1], key=lambda c: c.clip_index)
        for clip, dropped in decide(clips, self._rule, self._threshold):
            if dropped is None:
                self._kept.inc()
                yield clip
            else:
                self._dropped.inc()
                yield beam.pvalue.TaggedOutput(stage.OUTCOMES, dropped)


class _PassUnscored(beam.DoFn):
    def __init__(self):
        self._unscored = beam.metrics.Metrics.counter(NAMESPACE, "unscored")

    def process(self, clip: Clip):
        self._unscored.inc()
        yield clip


class Quality(beam.PTransform):
    """Clip -> {MAIN: kept, scored clips; OUTCOMES: low_quality drops and quality_error failures}."""

    def __init__(self, model_dir: str | None, threshold: float | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._decision: DecisionRule | None = None
        self._threshold: float | None = None
        if model_dir is not None:
            # resolved once, from the metadata (read and version-checked now: a bad --classifier fails at
            # launch, not on workers); the workers load the model with this threshold
            self._threshold, self._decision = decision_settings(read_metadata(model_dir), threshold)
        elif threshold is not None:
            check_threshold(threshold, "threshold override")

    @property
    def settings(self) -> QualitySettings:
        """How this stage decides, for ``stats.json``'s ``quality`` block: model dir (None: unscored),
        threshold in effect (the model's or the override), decision rule and margin."""
        if self._model_dir is None:
            return QualitySettings()
        return QualitySettings(classifier=str(self._model_dir), threshold=self._threshold,
                               rule=self._decision.rule, margin=self._decision.margin)

    def expand(self, clips):
        if self._model_dir is None:
            passed = clips | "PassUnscored" >> beam.ParDo(_PassUnscored()).with_outputs(stage.OUTCOMES,
                                                                                       main=stage.MAIN)
            return {stage.MAIN: passed[stage.MAIN], stage.OUTCOMES: passed[stage.OUTCOMES]}
        scored = (
            clips
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
            | "Score" >> beam.ParDo(_ScoreBatches(self._model_dir, self._threshold, shared.Shared()))
            .with_outputs(stage.OUTCOMES, main=stage.MAIN))
        decide_step = _Decide(self._decision, self._threshold)
        if self._decision.rule == "video":
            decided = (scored[stage.MAIN]
                       | "KeyByVideo" >> beam.Map(lambda c: (c.video_id, c))
                       | "GroupByVideo" >> beam.GroupByKey()
                       | "DecideVideo" >> beam.ParDo(decide_step).with_outputs(stage.OUTCOMES, main=stage.MAIN))
        else:
            decided = scored[stage.MAIN] | "Decide" >> beam.ParDo(decide_step).with_outputs(stage.OUTCOMES,
                                                                                             main=stage.MAIN)
        outcomes = (scored[stage.OUTCOMES], decided[stage.OUTCOMES]) | "MergeOutcomes" >> beam.Flatten()
        return {stage.MAIN: decided[stage.MAIN], stage.OUTCOMES: outcomes}

    @classmethod
    def from_config(cls, config: QualityConfig) -> Quality:
        return cls(config.classifier, threshold=config.threshold, batch_size=config.batch_size)
