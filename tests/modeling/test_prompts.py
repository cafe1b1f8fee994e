"""Prompt loading: images of any size/mode/format, sketches with transparency, video files, shard clips, errors.

References are independent of the code under test: the ffmpeg binary's scale/crop/fps filters for geometry
and frame choice, plain PyAV decoding and ``tarfile`` for shard clips, arithmetic for padding and alpha.
"""

from __future__ import annotations

import io
import tarfile

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modeling.prompts import PromptError, load_image_bytes, load_prompt, load_prompt_frames
from tests import media
from tests.modeling_helpers import write_tiny_shards

needs_ffmpeg = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary (Debian package ffmpeg)")
COVER = "scale=160:90:force_original_aspect_ratio=increase:flags=bicubic,crop=160:90"
MATCH_DB = 33.0  # PIL's antialiased bicubic vs ffmpeg's swscale bicubic on the same crop (measured 38-55 dB)
SHIFTED_DB = 28.0  # the reference moved by 1 px scores below this (24-26 dB): a misplaced crop cannot pass


def pattern_image(width: int, height: int, t: float = 0.3) -> Image.Image:
    return Image.fromarray(media.pattern_frame(t, width, height))


@needs_ffmpeg
@pytest.mark.parametrize("size", [(640, 200), (300, 250), (90, 160), (161, 91), (64, 36)])
def test_image_is_scaled_and_centre_cropped_like_ffmpeg(tmp_path, size):
    path = tmp_path / "shot.png"
    pattern_image(*size).save(path)
    ref = media.ffmpeg_frames(path, COVER)[0]
    prompt = load_prompt(path)
    assert prompt.shape == (1, 1, 3, 90, 160) and prompt.dtype == torch.float32
    assert float(prompt.min()) >= 0.0 and float(prompt.max()) <= 1.0
    ours = (prompt[0, 0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert media.psnr(ours, ref) >= MATCH_DB
    assert media.psnr(np.roll(ref, 1, axis=1), ref) < SHIFTED_DB  # the threshold tells a 1 px shift apart


def test_pad_fit_letterboxes_with_black():
    square = Image.new("RGB", (100, 100), (255, 255, 255))
    frame = load_image_bytes(_png(square), fit="pad")[0]
    # 100x100 fits 160x90 as 90x90, centred: (160 - 90) / 2 = 35 black columns either side
    assert (frame[:, :35] == 0).all() and (frame[:, 125:] == 0).all()
    assert (frame[:, 35:125] == 255).all()
    wide = load_image_bytes(_png(Image.new("RGB", (400, 100), (255, 255, 255))), fit="pad")[0]
    # 400x100 fits as 160x40: 25 black rows above and below
    assert (wide[:25] == 0).all() and (wide[65:] == 0).all() and (wide[25:65] == 255).all()


def test_formats_and_modes_load_to_the_same_frame(tmp_path):
    base = pattern_image(320, 180)
    reference = load_prompt_frames(_save(base, tmp_path / "a.png"))[0]
    lossless = load_prompt_frames(_save(base, tmp_path / "a.webp", lossless=True))[0]
    assert np.array_equal(lossless, reference)
    jpeg = load_prompt_frames(_save(base, tmp_path / "a.jpg", quality=95))[0]
    assert media.psnr(jpeg, reference) > 30
    grey = load_prompt_frames(_save(base.convert("L"), tmp_path / "g.png"))[0]
    expected_grey = np.asarray(Image.fromarray(reference).convert("L")).astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert np.abs(grey[..., 0].astype(int) - expected_grey).mean() < 1.5  # luma of the resized RGB frame
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    from_palette = load_prompt_frames(_save(palette, tmp_path / "p.png"))[0]
    expanded = load_prompt_frames(_save(palette.convert("RGB"), tmp_path / "p_rgb.png"))[0]
    assert np.array_equal(from_palette, expanded)  # the palette is looked up before scaling, not after


def test_hand_drawn_sketch_with_transparency(tmp_path):
    """A small sketch: black strokes and a half-transparent red blob on a transparent canvas."""
    sketch = Image.new("RGBA", (48, 27), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sketch)
    draw.line([(2, 20), (45, 20)], fill=(0, 0, 0, 255), width=2)  # the ground
    draw.rectangle([30, 4, 38, 10], fill=(255, 0, 0, 128))  # a ghost
    path = tmp_path / "sketch.png"
    sketch.save(path)
    frame = load_prompt_frames(path)[0]
    scale = 160 / 48  # 48x27 covers 160x90 exactly (same aspect): no crop
    assert (frame[:40, :60] == 255).all()  # the transparent canvas reads as white paper
    ground = frame[int(21 * scale) - 1, 80]
    assert (ground < 60).all(), ground
    ghost = frame[int(7 * scale), int(34 * scale)].astype(int)
    # red at alpha 128/255 over white: 255 * a + 255 * (1 - a) for red, 0 * a + 255 * (1 - a) for green/blue
    a = 128 / 255
    assert abs(ghost[0] - 255) <= 2 and abs(ghost[1] - 255 * (1 - a)) <= 2 and abs(ghost[2] - 255 * (1 - a)) <= 2
    black_background = load_prompt_frames(path, background=(0, 0, 0))[0]
    assert (black_background[:40, :60] == 0).all()


def test_exif_orientation_is_applied(tmp_path):
    shown = np.zeros((90, 160, 3), np.uint8)
    shown[:, :80] = (255, 0, 0)  # left half red, right half blue as displayed
    shown[:, 80:] = (0, 0, 255)
    stored = Image.fromarray(shown).rotate(90, expand=True)  # stored turned 90 deg counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: a viewer turns it 90 deg clockwise to display
    path = tmp_path / "phone.png"
    stored.save(path, exif=exif)
    assert np.array_equal(load_prompt_frames(path)[0], shown)


def test_animated_image_gives_one_frame_per_image_frame(tmp_path):
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    frames = [Image.new("RGB", (32, 18), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    two = load_prompt_frames(path, start=1, num_frames=2)
    assert two.shape == (2, 90, 160, 3)
    assert [tuple(f[45, 80]) for f in two] == colours[1:]
    assert len(load_prompt_frames(path, num_frames=None)) == 3
    with pytest.raises(PromptError, match="3 frame"):
        load_prompt_frames(path, start=2, num_frames=2)


def _plain_decode(mp4: bytes) -> np.ndarray:
    """Every frame of an mp4 with a plain PyAV loop (no seeking): the reference for clip windows."""
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_shard_clip_by_key_with_start_and_count(tmp_path):
    shard = write_tiny_shards(tmp_path, n_clips=3, frames=12, clips_per_shard=3)[0]
    with tarfile.open(shard) as tar:
        names = tar.getnames()
        keys = [n[:-4] for n in names if n.endswith(".mp4")]
        mp4 = {k: tar.extractfile(f"{k}.mp4").read() for k in keys}
    key = keys[1]
    prompt = load_prompt(f"{shard}#{key}", start=5, num_frames=3)
    expected = torch.from_numpy(_plain_decode(mp4[key])[5:8]).permute(0, 3, 1, 2).float() / 255
    assert prompt.shape == (1, 3, 3, 90, 160)
    assert torch.equal(prompt[0], expected)
    first = load_prompt_frames(shard, num_frames=None)  # no key: the shard's first sample, all its frames
    assert np.array_equal(first, _plain_decode(mp4[keys[0]]))
    with pytest.raises(PromptError, match=r"has no sample 'nope' \(3 samples: "):
        load_prompt(f"{shard}#nope")
    with pytest.raises(PromptError, match="has 12 frames; asked for frames 10..13"):
        load_prompt(f"{shard}#{key}", start=10, num_frames=4)
    with pytest.raises(PromptError, match="shard not found"):
        load_prompt(str(tmp_path / "missing.tar") + f"#{key}")


@needs_ffmpeg
def test_video_file_is_resampled_to_10fps_and_cropped_like_ffmpeg(tmp_path):
    path = media.write_video(tmp_path / "wide.mp4", fps=25, duration_s=2.0, width=352, height=180)
    ref = media.ffmpeg_frames(path, "fps=10," + COVER)
    assert len(ref) == 20
    frames = load_prompt_frames(path, start=6, num_frames=4)
    assert frames.shape == (4, 90, 160, 3)
    scores = [media.psnr(a, b) for a, b in zip(frames, ref[6:10], strict=True)]
    assert min(scores) >= MATCH_DB, scores
    assert media.psnr(frames[0], ref[7]) < SHIFTED_DB  # the next 10 FPS frame is far off: frame choice is checked
    assert len(load_prompt_frames(path, num_frames=None)) == 20
    with pytest.raises(PromptError, match="20 frame"):
        load_prompt_frames(path, start=19, num_frames=2)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.png", "prompt file not found"),
    (lambda d: d, "is a directory"),
    (lambda d: _write(d / "empty.png", b""), "prompt file is empty"),
    (lambda d: _write(d / "notes.png", b"these are words, not pixels\n" * 20), "cannot read .* as an image or a video"),
    (lambda d: _write(d / "cut.png", _png(pattern_image(64, 36))[:300]), "cannot decode"),
])
def test_bad_prompts_raise_one_line_errors(tmp_path, make, message):
    with pytest.raises(PromptError, match=message) as info:
        load_prompt(make(tmp_path))
    assert "\n" not in str(info.value)


def test_bad_upload_and_options_raise_prompt_errors():
    with pytest.raises(PromptError, match="not a readable image"):
        load_image_bytes(b"GIF89a-but-not-really")
    with pytest.raises(PromptError, match="fit must be"):
        load_prompt_frames("x.png", fit="stretch")
    with pytest.raises(PromptError, match="number >= 1"):
        load_prompt_frames("x.png", num_frames=0)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@needs_ffmpeg
def test_prompts_load_at_the_models_frame_size(tmp_path):
    """A 64x64 model (CoinRun): images are scaled and cropped to 64x64 like ffmpeg; shard clips of the model's
    size load as they are, clips of another size are refused with both sizes named."""
    path = tmp_path / "shot.png"
    pattern_image(192, 128).save(path)  # covers 64x64 as 96x64, an exact size (no rounding to disagree on)
    ref = media.ffmpeg_frames(path, "scale=64:64:force_original_aspect_ratio=increase:flags=bicubic,crop=64:64",
                              width=64, height=64)[0]
    frame = load_prompt_frames(path, size=(64, 64))[0]
    assert frame.shape == (64, 64, 3) and media.psnr(frame, ref) >= MATCH_DB
    assert load_image_bytes(_png(pattern_image(100, 40)), size=(64, 64)).shape == (1, 64, 64, 3)
    shard = write_tiny_shards(tmp_path / "s", n_clips=1, frames=4, clips_per_shard=1, height=64, width=64)[0]
    with tarfile.open(shard) as tar:
        mp4 = tar.extractfile(next(n for n in tar.getnames() if n.endswith(".mp4"))).read()
    assert np.array_equal(load_prompt_frames(shard, num_frames=None, size=(64, 64)), _plain_decode(mp4))
    with pytest.raises(PromptError, match="is 64x64, the model takes 160x90 frames"):
        load_prompt(shard)
