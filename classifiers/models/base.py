"""The one interface both model families implement, so training, evaluation and the pipeline never branch.

A model turns a clip's decoded frames into its own input once (``prepare``: a feature vector, or sampled
frames), then scores batches of prepared inputs (``predict_proba`` -> P(good) per clip). Preparing once
lets cross-validation refit many times without decoding or featurising again, and lets the pipeline drop
a clip's frames right after preparing it.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from classifiers.geometry import ClipGeometry


class ClipModel(abc.ABC):
    """A binary clip-quality model: ``fit`` on prepared inputs with 0/1 targets, ``predict_proba`` P(good)."""

    family: ClassVar[str]
    file_name: ClassVar[str]  # the model file inside a model directory
    # The training clips' geometry, set by ``classifiers.artifact.load_classifier``: ``prepare`` then refuses
    # frames of another size (GeometryError) instead of scoring them meaninglessly. None while training.
    geometry: ClipGeometry | None = None

    def check_frames(self, frames: np.ndarray) -> None:
        if self.geometry is not None:
            self.geometry.check_frames(frames)

    @abc.abstractmethod
    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """One clip's uint8 frames (T, H, W, 3) -> this model's input for that clip (calls ``check_frames``)."""

    @abc.abstractmethod
    def fit(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Train from scratch on stacked prepared inputs (N, ...) and 0/1 targets (N,)."""

    @abc.abstractmethod
    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """P(good) in [0, 1] for stacked prepared inputs (N, ...) -> (N,) float64."""

    @abc.abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The settings to rebuild this model (written to metadata.json)."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted model to ``directory / file_name``."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> ClipModel:
        """Read a fitted model written by ``save``."""

    def fresh(self) -> ClipModel:
        """An unfitted model with the same settings (for cross-validation folds)."""
        return type(self).from_config(self.config_dict())

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: dict[str, Any]) -> ClipModel:
        """An unfitted model from ``config_dict()`` output."""
