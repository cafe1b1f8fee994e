"""Clip features on real encoded clips, checked against ffmpeg's own filters where ffmpeg has one.

Clips are rendered Procgen gameplay (numpy-drawn when procgen is absent) with junk composited on, encoded
with the pipeline's ``encode_clip`` and decoded back, exactly as the classifier sees them in shards.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from classifiers import synthetic
from classifiers.features import FEATURE_NAMES, FEATURE_VERSION, NUM_FEATURES, clip_features, sample_frames
from pipeline.clip_codec import decode_clip, encode_clip

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")


def roundtrip(frames: np.ndarray) -> np.ndarray:
    return decode_clip(encode_clip(frames))


def feats(frames: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, clip_features(roundtrip(frames)).tolist(), strict=True))


def ffmpeg_log(frames: np.ndarray, vf: str, tmp_path) -> str:
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode_clip(frames))
    result = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vf", vf, "-f", "null", "-"],
                            capture_output=True, text=True, check=True)
    return result.stderr


@pytest.fixture(scope="module")
def game() -> np.ndarray:
    return synthetic.gameplay(3, 160, "ninja")


@pytest.fixture(scope="module")
def bright_game() -> np.ndarray:
    return synthetic.gameplay(4, 160, "coinrun")


def test_vector_shape_names_and_determinism(game):
    f = clip_features(game)
    assert f.shape == (NUM_FEATURES,) and f.dtype == np.float32 and np.isfinite(f).all()
    assert len(set(FEATURE_NAMES)) == NUM_FEATURES and FEATURE_VERSION
    np.testing.assert_array_equal(f, clip_features(game.copy()))
    with pytest.raises(ValueError):
        clip_features(game[:1])
    with pytest.raises(ValueError):
        clip_features(game.astype(np.float32))
    s = sample_frames(game)
    assert s.shape == (4, 90, 160, 6) and s.dtype == np.uint8
    np.testing.assert_array_equal(s[0, ..., 3:], game[5])


@needs_ffmpeg
def test_motion_matches_ffmpeg_signalstats_ydif(game, tmp_path):
    """motion_mean is the mean |luma difference| of consecutive frames: ffmpeg's YDIF, up to the luma range."""
    clips = {"gameplay": game, "menu": synthetic.menu(1), "letterbox": synthetic.letterbox(game),
             "text": synthetic.text_overlay(game, 1)}
    for name, frames in clips.items():
        log = ffmpeg_log(frames, "signalstats,metadata=print:key=lavfi.signalstats.YDIF", tmp_path)
        ydif = [float(x) for x in re.findall(r"YDIF=([\d.]+)", log)][1:]  # frame 0 has no predecessor
        assert len(ydif) == 159
        ours = feats(frames)["motion_mean"] * 255
        reference = np.mean(ydif) * 255 / 219  # ffmpeg's Y is limited range (16..235)
        assert ours == pytest.approx(reference, rel=0.1, abs=0.05), name


@needs_ffmpeg
def test_letterbox_matches_ffmpeg_cropdetect(game, tmp_path):
    boxed = synthetic.letterbox(game)
    log = ffmpeg_log(boxed, "cropdetect=limit=24:round=2:reset=0", tmp_path)
    w, h, _, _ = (int(v) for v in re.findall(r"crop=(\d+):(\d+):(\d+):(\d+)", log)[-1])
    f = feats(boxed)
    assert 90 * (1 - f["letterbox_frac"]) == pytest.approx(h, abs=4)
    assert 160 * (1 - f["pillarbox_frac"]) == pytest.approx(w, abs=4)
    assert f["active_area_frac"] < 0.3
    assert feats(game)["letterbox_frac"] == 0 and feats(game)["pillarbox_frac"] == 0


@needs_ffmpeg
def test_black_frames_match_ffmpeg_blackframe(bright_game, tmp_path):
    half = bright_game.copy()
    half[100:] = 0
    log = ffmpeg_log(half, "blackframe=amount=98:threshold=24", tmp_path)
    ffmpeg_black = len(re.findall(r" pblack:", log))
    f = feats(half)
    assert ffmpeg_black == 60
    assert f["black_frac"] * 160 == pytest.approx(ffmpeg_black, abs=2)
    assert feats(bright_game)["black_frac"] == 0


@needs_ffmpeg
def test_scene_cuts_match_ffmpeg_scene_detection(tmp_path):
    """A slideshow of stills from different games: one cut per slide change, as ffmpeg's scene score sees."""
    stills = [synthetic.gameplay(5, 3, g)[-1] for g in synthetic.PLATFORMERS + synthetic.NON_PLATFORMERS]
    show = np.stack([stills[i // 20] for i in range(160)])
    log = ffmpeg_log(show, "select='gt(scene,0.3)',showinfo", tmp_path)
    ffmpeg_cuts = len(re.findall(r"pts_time", log))
    f = feats(show)
    assert ffmpeg_cuts == 7
    assert f["cut_rate_hz"] * 16 == pytest.approx(ffmpeg_cuts)
    assert f["static_frac"] > 0.9


def test_junk_kinds_move_their_features(game):
    clean = feats(game)
    assert feats(synthetic.menu(2))["static_frac"] > 0.9 > clean["static_frac"]
    assert feats(synthetic.black(2))["black_frac"] == 1.0
    assert feats(synthetic.black(2))["blank_frac"] == 1.0
    face = feats(synthetic.face_cam(game, 1))
    assert face["skin_block_max"] > 0.3 > clean["skin_block_max"]
    text = feats(synthetic.text_overlay(game, 1))
    assert text["text_block_frac"] > 0.3 > clean["text_block_frac"]
    assert text["edge_density"] > 5 * clean["edge_density"]
