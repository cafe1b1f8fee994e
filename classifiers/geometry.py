"""The clip geometry (frame size and rate) a quality classifier was trained on, and the refusal of others.

Why: the features (motion per frame pair, cuts per second, block statistics) and the CNN's frame samples
mean something only at the geometry they were learned from. A 64x64 CoinRun clip scored by a model trained
on 160x90 gameplay still gets a number -- a meaningless one. So a model directory records the geometry of
its training clips (``metadata.json`` ``clip_geometry``), and scoring a clip of another geometry raises
``GeometryError`` with a one-line reason. A model directory without the field means the pipeline's default
clips: ``LEGACY_GEOMETRY``, 160x90 at 10 FPS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


class GeometryError(ValueError):
    """A clip's frame size or rate differs from the clips the classifier was trained on."""


@dataclasses.dataclass(frozen=True)
class ClipGeometry:
    width: int
    height: int
    fps: float

    def describe(self) -> str:
        return f"{self.width}x{self.height} @ {self.fps:g} FPS"

    @classmethod
    def of(cls, clip: Any) -> ClipGeometry:
        """The geometry a ``schemas.Clip`` records."""
        return cls(int(clip.width), int(clip.height), float(clip.fps))

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ClipGeometry:
        stored = metadata.get("clip_geometry")
        return LEGACY_GEOMETRY if stored is None else cls(int(stored["width"]), int(stored["height"]),
                                                          float(stored["fps"]))

    def check_clip(self, clip: Any) -> None:
        """Raise ``GeometryError`` unless ``clip`` (a ``schemas.Clip``) has this size and rate."""
        got = ClipGeometry.of(clip)
        if got != self:
            raise GeometryError(f"clip {clip.clip_key} is {got.describe()}; the quality classifier was trained on "
                                f"{self.describe()} clips (train one on clips of this geometry)")

    def check_frames(self, frames: np.ndarray) -> None:
        """Raise ``GeometryError`` unless decoded frames (T, H, W, 3) have this size (frames carry no rate)."""
        height, width = np.shape(frames)[1:3]
        if (width, height) != (self.width, self.height):
            raise GeometryError(f"frames are {width}x{height}; the quality classifier was trained on "
                                f"{self.width}x{self.height} clips (train one on clips of this geometry)")


LEGACY_GEOMETRY = ClipGeometry(160, 90, 10.0)  # model directories without ``clip_geometry``
