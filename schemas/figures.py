"""Images for the self-contained HTML reports: encoded bytes, data URLs, ``<img>`` tags, frame strips, plots.

Three packages write report pages with embedded images: the pipeline's ``report.html``
(``pipeline.audit.report``), the classifier's evaluation report and label sheet (``classifiers.evaluate``,
``classifiers.label_sheet``), the model's evaluation report and play page (``modeling.evaluate``,
``modeling.play``, ``modeling.generate``). The helpers live here, in
``schemas/``, because it is the one layer all three import (import arrows point down: nothing here imports
``pipeline``, ``classifiers`` or ``modeling``). Only numpy, Pillow and (lazily) matplotlib: ``to_uint8``
takes torch tensors duck-typed, so the pipeline's workers never import torch.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def data_url(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...``: an image a page embeds (no file next to it, nothing loads from elsewhere)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img_tag(data: bytes, alt: str, mime: str = "image/png") -> str:
    """``<img>`` of encoded image bytes, embedded as a data URL; ``alt`` is escaped."""
    return f'<img alt="{html.escape(alt)}" src="{data_url(data, mime)}">'


def encode_image(image, format: str = "PNG", **save_options) -> bytes:  # noqa: A002 (Pillow's name)
    """The bytes of a PIL image or a uint8 (H, W, 3) array saved as ``format`` (Pillow's ``save`` options)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=format, **save_options)
    return buf.getvalue()


def to_uint8(frames) -> np.ndarray:
    """Float frames (..., 3, H, W) in [0, 1], a torch tensor on any device -> uint8 (..., H, W, 3) in numpy
    (the arithmetic runs in float32 where the tensor lives; duck-typed, so this module never imports torch)."""
    return (frames.detach().float().clamp(0, 1) * 255).round().byte().movedim(-3, -1).cpu().numpy()


def frame_strip(frames, gap: int = 0, fill: int = 255) -> np.ndarray:
    """uint8 frames (K of (H, W, 3)) side by side -> (H, K W + (K - 1) gap, 3), ``gap`` columns of ``fill``
    between consecutive frames."""
    frames = list(frames)
    if gap:
        spacer = np.full((frames[0].shape[0], gap, frames[0].shape[-1]), fill, np.uint8)
        frames = [part for frame in frames for part in (frame, spacer)][:-1]
    return np.concatenate(frames, axis=1)


def subplots(*args, **kwargs):
    """``plt.subplots`` on the headless Agg backend (reports are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def figure_png(fig, **savefig_options) -> bytes:
    """A matplotlib figure as PNG bytes (``savefig`` options: dpi, bbox_inches, metadata), then closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig_options)
    plt.close(fig)
    return buf.getvalue()
