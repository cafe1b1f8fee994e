"""``schemas.figures``: the image helpers every report embeds its pictures with."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from schemas.figures import data_url, encode_image, figure_png, frame_strip, img_tag, subplots, to_uint8


def test_img_tag_embeds_the_bytes_and_escapes_the_alt_text():
    tag = img_tag(b"png", 'a "clip" <b>', "image/jpeg")
    assert tag == '<img alt="a &quot;clip&quot; &lt;b&gt;" src="data:image/jpeg;base64,cG5n">'
    assert data_url(b"xy").startswith("data:image/png;base64,")
    assert base64.b64decode(data_url(b"xy").split(",", 1)[1]) == b"xy"


def test_frame_strip_puts_frames_side_by_side_with_gaps():
    frames = np.zeros((3, 4, 5, 3), np.uint8)
    assert frame_strip(frames).shape == (4, 15, 3)
    strip = frame_strip(frames, gap=2)
    assert strip.shape == (4, 19, 3) and (strip[:, 5:7] == 255).all() and (strip[:, 12:14] == 255).all()


def test_to_uint8_rounds_and_moves_channels_last():
    frames = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 1.2, -0.1]).view(1, 5, 1).expand(3, 5, 1)
    out = to_uint8(frames)
    assert out.shape == (5, 1, 3) and out.dtype == np.uint8
    assert out[:, 0, 0].tolist() == [0, 0, 2, 255, 0]  # half to even, clamped


def test_encoded_images_and_plots_decode():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(pixels)))), pixels)
    fig, ax = subplots(figsize=(2, 1))
    ax.plot([0, 1])
    assert figure_png(fig, dpi=50)[:4] == b"\x89PNG"
