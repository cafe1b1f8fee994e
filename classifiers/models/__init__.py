"""Model families behind one interface (``ClipModel``): ``sklearn`` (default, features + boosted trees) and
``cnn`` (ResNet18-style on sampled frames, as in the paper)."""

from __future__ import annotations

from typing import Any

from classifiers.models.base import ClipModel

FAMILIES = ("sklearn", "cnn")


def family_class(family: str) -> type[ClipModel]:
    """The model class of a family name (torch is imported only when the CNN is asked for)."""
    if family == "sklearn":
        from classifiers.models.sklearn_model import SklearnClipModel
        return SklearnClipModel
    if family == "cnn":
        from classifiers.models.cnn_model import CNNClipModel
        return CNNClipModel
    raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")


def make_model(family: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> ClipModel:
    """An unfitted model: ``preset`` names a CNN size (``resnet18``, ``small``, ``tiny``)."""
    cls = family_class(family)
    config: dict[str, Any] = {}
    if family == "cnn":
        import dataclasses

        from classifiers.models.cnn_model import PRESETS
        if preset and preset not in PRESETS:
            raise ValueError(f"unknown CNN preset {preset!r}; expected one of {sorted(PRESETS)}")
        config = dataclasses.asdict(PRESETS[preset or "resnet18"])
    elif preset:
        raise ValueError("presets apply to the cnn family only")
    config.update(overrides or {})
    return cls.from_config(config) if config else cls()


__all__ = ["FAMILIES", "ClipModel", "family_class", "make_model"]
