"""Clip features on real encoded clips, checked against ffmpeg's own filters where ffmpeg has one.

Clips are rendered Procgen gameplay (numpy-drawn when procgen is absent) with junk composited on, encoded
with the pipeline's ``encode_clip`` and decoded back, exactly as the classifier sees them in shards.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from classifiers import features
from classifiers.features import FEATURE_NAMES, FEATURE_VERSION, NUM_FEATURES, clip_features, sample_frames
from pipeline.tools.demo_corpus import clips as synthetic
from pipeline.tools.demo_corpus import games
from schemas.clip_codec import decode_clip, encode_clip

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
    return synthetic.gameplay(6, 160, "coinrun")  # a level whose 16 s hold no death fade (dark frames)


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
    clips = {"gameplay": game, "menu": synthetic.junk_clip("static_menu", 1),
             "letterbox": synthetic.letterbox(game), "text": synthetic.text_overlay(game, 1)}
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
    stills = [synthetic.gameplay(5, 3, g)[-1] for g in games.PLATFORMERS + games.NON_PLATFORMERS]
    show = np.stack([stills[i // 20] for i in range(160)])
    log = ffmpeg_log(show, "select='gt(scene,0.3)',showinfo", tmp_path)
    ffmpeg_cuts = len(re.findall(r"pts_time", log))
    f = feats(show)
    assert ffmpeg_cuts == 7
    assert f["cut_rate_hz"] * 16 == pytest.approx(ffmpeg_cuts)
    assert f["static_frac"] > 0.9


def test_junk_kinds_move_their_features(game):
    clean = feats(game)
    assert feats(synthetic.junk_clip("static_menu", 2))["static_frac"] > 0.9 > clean["static_frac"]
    assert feats(synthetic.junk_clip("black_fade", 2))["black_frac"] == 1.0
    assert feats(synthetic.junk_clip("black_fade", 2))["blank_frac"] == 1.0
    face = feats(synthetic.face_cam(game, 1))
    assert face["skin_block_max"] > 0.3 > clean["skin_block_max"]
    text = feats(synthetic.text_overlay(game, 1))
    assert text["text_block_frac"] > 0.3 > clean["text_block_frac"]
    assert text["edge_density"] > 5 * clean["edge_density"]


# ---- golden values: a feature definition cannot change without a FEATURE_VERSION bump -----------------------

GOLDEN_VERSION = "1"
GOLDEN = {  # name: (overlay_clip, fade_clip), 6 significant digits
    "luma_mean": (0.445054, 0.128957),
    "luma_std": (0.255915, 0.145556),
    "black_frac": (0, 0.35),
    "blank_frac": (0, 0.15),
    "motion_mean": (0.0286825, 0.0132786),
    "motion_std": (0.03952, 0.0192519),
    "motion_p10": (0.00355147, 0.00811862),
    "motion_p50": (0.0243531, 0.00936764),
    "motion_p90": (0.0272091, 0.00936765),
    "motion_max": (0.209702, 0.0949167),
    "static_frac": (0.130435, 0),
    "cut_rate_hz": (0.416667, 0),
    "longest_static_run_frac": (0.130435, 0),
    "colourfulness": (0.460476, 0.044909),
    "saturation_mean": (0.500792, 0.33125),
    "dominant_colour_frac": (0.111111, 0.75),
    "distinct_colours": (7.06042, 1.16136),
    "skin_frac": (0.106142, 0.0325),
    "edge_density": (0.149347, 0.0958333),
    "text_block_frac": (0.224318, 0.25),
    "hf_energy": (0.127226, 0.0800351),
    "letterbox_frac": (0.111111, 0),
    "pillarbox_frac": (0, 0.25),
    "active_area_frac": (0.888889, 0.75),
    "moving_block_frac": (0.888889, 1),
    "static_textured_block_frac": (0.111111, 0),
    "motion_block_gini": (0.245813, 0.225254),
    "skin_block_max": (0.543333, 0.0455556),
    "temporal_range_mean": (0.332948, 0.252293),
    "luma_drift": (0.009671, 0.252293),
}


def overlay_clip() -> np.ndarray:
    """Arithmetic only (no RNG, no codec): the same bytes on every machine and library version. Scrolling
    colour gradients that hold still for 3 frame pairs and invert at frame 12 (a cut), a dark top bar, a
    skin-toned patch and a static checkerboard HUD."""
    t, h, w = 24, 90, 160
    y, x = np.mgrid[0:h, 0:w]
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        step = min(i, 4) if i < 8 else i - 3  # frames 4..7 hold still
        bg = np.stack([(x * 3 + step * 7) % 256, (y * 5 + step * 3) % 256, ((x + y) * 2 + step * 7) % 256], -1)
        frames[i] = 255 - bg if i >= 12 else bg  # a cut at frame 12
        frames[i, 20:40, 10:40] = np.stack([200 + (x + y * 3 + step) % 10, 140 + (x * 7 + y) % 10,
                                            110 + (x + step) % 10], -1)[20:40, 10:40]  # skin-toned patch
    frames[:, :10] = 8  # a dark bar at the top
    frames[:, 60:90, 106:160] = np.where(((y // 4 + x // 4) % 2)[60:90, 106:160, None], 230, 20)  # static HUD
    return frames


def fade_clip() -> np.ndarray:
    """A fade up from black between dark pillars, text-like strokes from frame 10."""
    t, h, w = 20, 90, 160
    y, x = np.mgrid[0:h, 0:w]
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = (i * 4, i * 3, i * 2)  # slow: the black and blank thresholds fall inside the ramp
        if i >= 10:
            frames[i][((x // 3) % 4 == 0) & ((y // 6) % 2 == 0)] = 250
    frames[:, :, :20] = 0
    frames[:, :, 140:] = 0
    return frames


def test_golden_feature_values_pin_the_feature_version():
    """If this fails after an intended change to ``clip_features``: bump FEATURE_VERSION (models trained on
    the old definition must stop loading), then update GOLDEN_VERSION and GOLDEN from the new output."""
    assert FEATURE_VERSION == GOLDEN_VERSION, "FEATURE_VERSION was bumped: regenerate GOLDEN for the new definition"
    assert list(FEATURE_NAMES) == list(GOLDEN), "feature names or order changed without a FEATURE_VERSION bump"
    changed = []
    for k, make in enumerate((overlay_clip, fade_clip)):
        for name, got in zip(FEATURE_NAMES, clip_features(make()).tolist(), strict=True):
            if got != pytest.approx(GOLDEN[name][k], rel=1e-4, abs=1e-6):
                changed.append(f"{name} on {make.__name__}: {got:.6g}, golden {GOLDEN[name][k]:.6g}")
    assert not changed, "feature values changed without a FEATURE_VERSION bump:\n" + "\n".join(changed)


@pytest.mark.parametrize(("t", "starts"), [(160, [0, 51, 103, 154]), (24, [0, 6, 12, 18]), (3, [0, 0, 0, 0])])
def test_golden_cnn_sampling_pins_the_feature_version(t, starts):
    """``sample_frames`` is part of FEATURE_VERSION too: the instants it picks, and the +5 frame partner."""
    assert FEATURE_VERSION == GOLDEN_VERSION
    frames = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, 90, 160, 3)).copy()
    s = sample_frames(frames)
    assert s[:, 0, 0, 0].tolist() == starts
    assert s[:, 0, 0, 3].tolist() == [i + min(5, t - 1) for i in starts]


def test_docstring_states_the_true_feature_count():
    assert f"these {NUM_FEATURES} numbers" in features.__doc__


# ---- behaviour of the region and colour features on exact synthetic frames ---------------------------------
# The 6x6 grid on 90x160 frames has row edges 0,15,30,45,60,75,90 and column edges 0,26,53,80,106,133,160.

def moving(t: int = 10) -> np.ndarray:
    """Grey frames whose every pixel changes by far more than the "moves" threshold over the clip."""
    y, x = np.mgrid[0:90, 0:160]
    return np.stack([np.repeat(((x * 5 + y * 3 + i * 37) % 256)[..., None], 3, -1) for i in range(t)]).astype(np.uint8)


def checker(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.repeat(np.where((y // 3 + x // 3) % 2, 220, 30)[..., None], 3, -1).astype(np.uint8)


def region(frames: np.ndarray, name: str) -> float:
    return float(clip_features(frames)[IDX[name]])


def test_colourfulness_is_zero_for_grey_and_matches_hasler_suesstrunk_by_hand():
    assert region(moving(), "colourfulness") == 0.0  # r = g = b: both opponent channels vanish
    frames = np.zeros((2, 90, 160, 3), np.uint8)
    frames[:, :, :80] = (255, 0, 0)
    frames[:, :, 80:] = (0, 0, 255)
    # rg = R-G: 255 | 0 -> mean 127.5, std 127.5; yb = (R+G)/2 - B: 127.5 | -255 -> mean -63.75, std 191.25
    expected = (math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)) / 255
    assert region(frames, "colourfulness") == pytest.approx(expected, rel=1e-5)
    frames[:, :, 80:] = (128, 128, 128)  # half the colour: less colourful
    assert 0 < region(frames, "colourfulness") < expected


def test_static_textured_block_frac_finds_a_hud_over_moving_gameplay():
    game = moving()
    assert region(game, "static_textured_block_frac") == 0.0
    hud = game.copy()
    hud[:, 0:30, 106:160] = checker(30, 54)  # exactly grid blocks (0,4) (0,5) (1,4) (1,5)
    assert region(hud, "static_textured_block_frac") == pytest.approx(4 / 36)
    flat = game.copy()
    flat[:, 0:30, 106:160] = 128  # static but without texture: a plain bar, not an overlay
    assert region(flat, "static_textured_block_frac") == 0.0
    big = game.copy()
    big[:, 0:60] = checker(60, 160)  # 24 blocks static, 12 still move: exactly the one-third gate
    assert region(big, "static_textured_block_frac") == pytest.approx(24 / 36)
    bigger = game.copy()
    bigger[:, 0:75] = checker(75, 160)  # only 6 blocks move: not "an overlay on gameplay" any more
    assert region(bigger, "static_textured_block_frac") == 0.0
    still = np.stack([checker(90, 160)] * 10)  # a textured still (menu, slide): nothing moves at all
    assert region(still, "static_textured_block_frac") == 0.0


def test_motion_block_gini_measures_how_unevenly_motion_is_spread():
    game = moving()
    assert region(game, "motion_block_gini") == pytest.approx(0.0, abs=1e-9)  # every block moves alike
    still = np.stack([checker(90, 160)] * 10)
    one = still.copy()
    one[:, 0:15, 0:26] = game[:, 0:15, 0:26]  # motion in one block of 36
    assert region(one, "motion_block_gini") == pytest.approx(35 / 36)
    half = still.copy()
    half[:, :, 0:80] = game[:, :, 0:80]  # motion in the left 18 blocks
    assert region(half, "motion_block_gini") == pytest.approx(0.5)
    assert region(still, "motion_block_gini") == 0.0
