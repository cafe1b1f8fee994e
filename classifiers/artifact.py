"""The model directory: a self-describing classifier that the pipeline can load without the training code.

Layout::

    MODEL_DIR/
      metadata.json   family, model config, FEATURE_VERSION, threshold + decision rule, label-file hash, label
                      policy, clip geometry, cross-validated metrics, library versions, creation time (strict JSON)
      model.joblib    (sklearn family) or model.pt (cnn family: a state_dict)
      cv_predictions.csv, metrics.json   written by ``train`` for auditing

Why the checks: a model fed features computed another way still produces numbers, silently wrong ones. So
``load_classifier`` refuses another ``feature_version`` or a threshold outside [0, 1] (it would keep everything or
nothing), and a loaded classifier refuses clips of another geometry than its training clips (``classifiers.geometry``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.features import FEATURE_NAMES, FEATURE_VERSION
from classifiers.geometry import LEGACY_GEOMETRY, ClipGeometry
from classifiers.metrics import DecisionRule, to_json
from classifiers.models import ClipModel, family_class

FORMAT = "genie-worlds-quality-classifier"
FORMAT_VERSION = 1
METADATA = "metadata.json"


class ModelDirError(ValueError):
    """A model directory is missing, malformed, or incompatible with this code."""


class FeatureVersionError(ModelDirError):
    """The model was trained on another feature definition than this code computes."""


def library_versions() -> dict[str, str]:
    import sklearn
    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}
    try:
        import torch
        versions["torch"] = torch.__version__
    except ImportError:  # the sklearn family does not need torch
        pass
    return versions


@dataclasses.dataclass
class LoadedClassifier:
    """A fitted model plus the decision settings it was trained with."""

    model: ClipModel
    metadata: dict[str, Any]
    threshold: float
    decision: DecisionRule
    geometry: ClipGeometry = LEGACY_GEOMETRY  # of the training clips; others are refused

    @property
    def family(self) -> str:
        return self.model.family

    def check_clip(self, clip) -> None:
        """Raise ``GeometryError`` (one line) when ``clip`` (a ``schemas.Clip``) has another size or frame rate
        than the training clips. Call before decoding: the rate is in the record, not in the frames."""
        self.geometry.check_clip(clip)

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """One clip's decoded frames as the model takes them (frames of another size raise ``GeometryError``):
        per clip, so that one bad clip fails alone before a batch is scored."""
        return self.model.prepare(frames)

    def score_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        """P(good), clipped to [0, 1], for a batch of ``prepare``d clips: one model call."""
        if not prepared:
            return np.zeros(0)
        return np.clip(self.model.predict_proba(np.stack(prepared)), 0.0, 1.0)

    def score_frames(self, clips: list[np.ndarray]) -> np.ndarray:
        """P(good) for each clip's decoded frames (frames of another size raise ``GeometryError``)."""
        return self.score_prepared([self.prepare(f) for f in clips])

    def keep(self, scores: np.ndarray, videos: list[str]) -> np.ndarray:
        """The keep decision per clip: this model's rule at its threshold (``DecisionRule.keep``)."""
        return self.decision.keep(scores, videos, self.threshold)


def save_classifier(model_dir: str | Path, model: ClipModel, threshold: float, decision: DecisionRule,
                    extra: dict[str, Any], geometry: ClipGeometry = LEGACY_GEOMETRY) -> Path:
    """Write the model file and ``metadata.json`` (``extra``: labels, metrics, policy, source...;
    ``geometry``: of the training clips)."""
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "family": model.family, "model_file": model.file_name, "model_config": model.config_dict(),
        "feature_version": FEATURE_VERSION,
        "feature_names": list(FEATURE_NAMES) if model.family == "sklearn" else [],
        "threshold": float(threshold),
        "decision": dataclasses.asdict(decision),
        "clip_geometry": dataclasses.asdict(geometry),
        "versions": library_versions(),
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    (path / METADATA).write_text(to_json(metadata))  # strict JSON: an undefined metric is null, not NaN
    return path


def localize(model_dir: str | Path) -> Path:
    """A local directory holding the model: ``model_dir`` itself, or for a remote URL (``gs://...``, any
    filesystem Beam knows) a fresh temporary copy of its metadata and model file -- Dataflow workers load the
    model from where the launcher pointed, not from the launcher's disk."""
    text = str(model_dir)
    if "://" not in text:
        return Path(text)
    import tempfile

    from apache_beam.io.filesystems import FileSystems

    local = Path(tempfile.mkdtemp(prefix="quality-model-"))
    metadata_url = FileSystems.join(text, METADATA)
    if not FileSystems.exists(metadata_url):
        raise ModelDirError(f"{text}: not a classifier model directory (no {METADATA})")
    with FileSystems.open(metadata_url) as f:
        (local / METADATA).write_bytes(f.read())
    model_file = json.loads((local / METADATA).read_text()).get("model_file", "")
    if model_file and FileSystems.exists(FileSystems.join(text, model_file)):
        with FileSystems.open(FileSystems.join(text, model_file)) as f:
            (local / model_file).write_bytes(f.read())
    return local


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """``metadata.json`` of a model directory (local or remote), checked for format and feature version."""
    path = localize(model_dir) if "://" in str(model_dir) else Path(model_dir)
    meta_path = path / METADATA
    if not meta_path.is_file():
        raise ModelDirError(f"{path}: not a classifier model directory (no {METADATA}); "
                            f"create one with `python -m classifiers train`")
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{meta_path}: unreadable ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise ModelDirError(f"{meta_path}: format {metadata.get('format')!r} is not {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{meta_path}: format_version {metadata.get('format_version')!r}, "
                            f"this code reads {FORMAT_VERSION}")
    got = str(metadata.get("feature_version"))
    if got != FEATURE_VERSION:
        raise FeatureVersionError(
            f"{path}: the model was trained with clip features version {got!r}, but this code computes "
            f"version {FEATURE_VERSION!r} (classifiers/features.py). Scores would be meaningless: retrain with "
            f"`python -m classifiers train ... --out {path}` or use the code version the model was built with.")
    return metadata


def load_classifier(model_dir: str | Path, threshold: float | None = None) -> LoadedClassifier:
    """Load a model directory (local or remote); ``threshold`` overrides the one chosen at training time."""
    path = localize(model_dir)
    metadata = read_metadata(path)
    try:
        cls = family_class(metadata.get("family"))
    except ValueError as exc:
        raise ModelDirError(f"{path / METADATA}: {exc}") from None
    if not (path / cls.file_name).is_file():
        raise ModelDirError(f"{path}: model file {cls.file_name} is missing")
    chosen, decision = decision_settings(metadata, threshold, str(path / METADATA))
    try:
        model = cls.load(path, metadata.get("model_config", {}))
    except Exception as exc:  # a truncated or foreign model file: say which file, not a library traceback
        raise ModelDirError(f"{path / cls.file_name}: cannot load the model ({type(exc).__name__}: {exc})") from None
    try:
        geometry = ClipGeometry.from_metadata(metadata)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{path / METADATA}: bad clip_geometry {metadata.get('clip_geometry')!r} ({exc})") from None
    model.geometry = geometry
    return LoadedClassifier(model=model, metadata=metadata, threshold=chosen, decision=decision, geometry=geometry)


def decision_settings(metadata: dict[str, Any], threshold: float | None = None,
                      where: str = METADATA) -> tuple[float, DecisionRule]:
    """The threshold in effect (``threshold`` overrides the stored one) and the decision rule of a model's
    metadata, both checked: the one place a threshold is resolved, at launch (``read_metadata``) and on load."""
    try:
        decision = DecisionRule(**metadata.get("decision", {}))
    except (TypeError, ValueError) as exc:
        raise ModelDirError(f"{where}: bad decision rule {metadata.get('decision')!r} ({exc})") from None
    if threshold is None:
        return check_threshold(metadata.get("threshold"), f"{where}: threshold"), decision
    return check_threshold(threshold, "threshold override"), decision


def check_threshold(value: Any, what: str) -> float:
    """``value`` as a threshold in [0, 1] (scores are probabilities: anything else keeps all or nothing)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise ModelDirError(f"{what} must be a number in [0, 1], got {value!r}")
    return number
