"""The default model family: extremely randomised trees (scikit-learn) on ``classifiers.features``.

Why trees: the junk types are heterogeneous (a black screen, a letterboxed capture and a face-cam fail for
unrelated reasons), so the good/bad boundary is a union of different rules on different features, which
tree ensembles learn without scaling or tuning. Extra-trees over gradient boosting: label sets are small
(hundreds of videos), where averaging many randomised trees generalises better than boosting, and it trains
in well under a second.
``class_weight="balanced"`` because good clips are a minority in real data (the paper kept ~10%).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
from sklearn.ensemble import ExtraTreesClassifier

from classifiers.features import clip_features
from classifiers.models.base import ClipModel


@dataclasses.dataclass(frozen=True)
class SklearnConfig:
    n_estimators: int = 300  # trees
    min_samples_leaf: int = 1
    max_features: str = "sqrt"  # features tried per split
    seed: int = 0
    n_jobs: int = 1  # the pipeline parallelises over workers, not inside one model


class SklearnClipModel(ClipModel):
    family: ClassVar[str] = "sklearn"
    file_name: ClassVar[str] = "model.joblib"

    def __init__(self, config: SklearnConfig | None = None):
        self.config = config or SklearnConfig()
        self.estimator: ExtraTreesClassifier | None = None

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        self.check_frames(frames)
        return clip_features(frames)

    def fit(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        c = self.config
        self.estimator = ExtraTreesClassifier(
            n_estimators=c.n_estimators, min_samples_leaf=c.min_samples_leaf, max_features=c.max_features,
            class_weight="balanced", random_state=c.seed, n_jobs=c.n_jobs)
        self.estimator.fit(np.asarray(inputs, dtype=np.float32), np.asarray(targets, dtype=int))

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        if self.estimator is None:
            raise RuntimeError("model is not fitted")
        proba = self.estimator.predict_proba(np.asarray(inputs, dtype=np.float32))
        return proba[:, list(self.estimator.classes_).index(1)].astype(np.float64)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SklearnClipModel:
        return cls(SklearnConfig(**config))

    def save(self, directory: Path) -> None:
        joblib.dump(self.estimator, Path(directory) / self.file_name, compress=3)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> SklearnClipModel:
        model = cls.from_config(config)
        model.estimator = joblib.load(Path(directory) / cls.file_name)
        return model
