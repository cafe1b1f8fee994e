"""Cheap, documented clip features computed from the stored 160x90 frames, and the CNN's frame sampling.

Why hand-made features: the paper's ResNet18 is costly on CPU for millions of clips, while each kind of junk
(menus, face-cams, slideshows, fades, text walls, letterboxing) leaves a cheap trace in the pixels. A tree
ensemble (``classifiers.models.sklearn_model``) on these 30 numbers (``NUM_FEATURES``; a test keeps this count
honest) is fast on CPU and easy to audit. Each is a float from uint8 RGB frames (T, 90, 160, 3), any T >= 2.
``FEATURE_VERSION`` names this exact definition and model artifacts record it (``classifiers.artifact``): bump it
on ANY change to ``clip_features`` or ``sample_frames`` (names, order, thresholds, sampling).

Feature groups (names are the keys of ``FEATURE_NAMES``):
- luma: mean/std brightness; ``black_frac`` frames that are nearly black, ``blank_frac`` frames that are
  nearly uniform (any colour: fades, title cards).
- motion: mean absolute difference of consecutive grey frames (0..1 scale) summarised as mean, std and
  quantiles; ``static_frac`` frame pairs with (almost) no change; ``cut_rate_hz`` abrupt full-frame
  changes per second (slideshows, menus flipping); ``longest_static_run_frac`` the longest still stretch.
- colour: Hasler-Suesstrunk colourfulness, mean saturation, ``dominant_colour_frac`` (share of the most
  common 4-bit-per-channel colour: flat menus/slides), ``distinct_colours`` (log of colours in use),
  ``skin_frac`` pixels in a conservative YCbCr skin range (face-cams).
- structure: ``edge_density`` (Sobel magnitude above a threshold), ``text_block_frac`` 8x8 blocks that are
  both edge-dense and bimodal (text strokes on a plain background), ``hf_energy`` high-frequency energy.
- borders: ``letterbox_frac`` / ``pillarbox_frac`` share of rows / columns at the edges that are dark and
  constant through the whole clip; ``active_area_frac`` the area left.
- regions: the frame is split into a 6x6 grid; ``moving_block_frac`` blocks whose pixels change,
  ``static_textured_block_frac`` blocks with content (spatial variance) that never change, counted only
  while at least a third of the blocks move (a HUD or face-cam frame over moving gameplay),
  ``motion_block_gini`` how unevenly motion is spread over the grid, ``skin_block_max`` the largest
  per-block skin share (a face-cam is a compact skin-rich region).
"""

from __future__ import annotations

import numpy as np

from schemas.clip_format import CLIP_FPS

FEATURE_VERSION = "1"

# Thresholds on the 0..1 scale. They are part of FEATURE_VERSION: change one, bump the version.
_BLACK_LUMA = 16 / 255
_BLANK_STD = 4 / 255
_STATIC_DIFF = 0.6 / 255  # mean |diff| below this: the frame pair shows no real change (codec noise only)
_CUT_DIFF = 40 / 255  # mean |diff| above this: an abrupt full-frame change
_PIXEL_MOVES = 12 / 255  # a pixel "moves" when its temporal range exceeds this
_EDGE = 0.25  # Sobel magnitude (on 0..1 luma) counted as an edge
_BORDER_LUMA = 24 / 255
_BORDER_STD = 6 / 255
_GRID = 6
_SPATIAL_SAMPLES = 20  # frames used for the per-frame spatial features (evenly spaced)

FEATURE_NAMES: tuple[str, ...] = (
    "luma_mean", "luma_std", "black_frac", "blank_frac",
    "motion_mean", "motion_std", "motion_p10", "motion_p50", "motion_p90", "motion_max",
    "static_frac", "cut_rate_hz", "longest_static_run_frac",
    "colourfulness", "saturation_mean", "dominant_colour_frac", "distinct_colours", "skin_frac",
    "edge_density", "text_block_frac", "hf_energy",
    "letterbox_frac", "pillarbox_frac", "active_area_frac",
    "moving_block_frac", "static_textured_block_frac", "motion_block_gini", "skin_block_max",
    "temporal_range_mean", "luma_drift",
)
NUM_FEATURES = len(FEATURE_NAMES)

# CNN input: SAMPLES_PER_CLIP instants evenly spaced over the clip; each sample stacks the frame at t with
# the frame MOTION_OFFSET frames later (6 channels), so a frame CNN can also see motion (slideshows).
SAMPLES_PER_CLIP = 4
MOTION_OFFSET = 5


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 2:
        raise ValueError(f"need at least 2 frames to measure motion, got {frames.shape[0]}")
    return frames


def _luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma in 0..1, float32, (T, H, W)."""
    f = frames.astype(np.float32)
    return (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]) / 255.0


def _edge_run(mask: np.ndarray) -> int:
    """Length of the run of True at the start of a 1-D mask."""
    idx = np.flatnonzero(~mask)
    return int(idx[0]) if idx.size else int(mask.size)


def _gini(values: np.ndarray) -> float:
    v = np.sort(values.ravel().astype(np.float64))
    if v.sum() <= 0:
        return 0.0
    n = v.size
    return float((2 * np.arange(1, n + 1) - n - 1).dot(v) / (n * v.sum()))


def _skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Conservative YCbCr skin-tone test (Chai & Ngan ranges) on uint8 RGB (..., 3)."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return (cr >= 135) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y > 60)


def _sobel(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of (N, H, W) images (valid region, edges replicated)."""
    p = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    return np.sqrt(gx * gx + gy * gy) / 4.0


def _blocks(a: np.ndarray, grid: int) -> list[np.ndarray]:
    """Split the last two axes of ``a`` into a grid x grid list of blocks (row-major)."""
    h, w = a.shape[-2:]
    ys = np.linspace(0, h, grid + 1).astype(int)
    xs = np.linspace(0, w, grid + 1).astype(int)
    return [a[..., ys[i]:ys[i + 1], xs[j]:xs[j + 1]] for i in range(grid) for j in range(grid)]


def clip_features(frames: np.ndarray, fps: float = float(CLIP_FPS)) -> np.ndarray:
    """The feature vector (float32, ``NUM_FEATURES``) of one clip's uint8 RGB frames (T, H, W, 3)."""
    frames = _check_frames(frames)
    t = frames.shape[0]
    luma = _luma(frames)  # (T, H, W)
    feats: dict[str, float] = {}

    # ---- luma ------------------------------------------------------------------------------------
    frame_mean = luma.mean(axis=(1, 2))
    frame_std = luma.std(axis=(1, 2))
    feats["luma_mean"] = float(frame_mean.mean())
    feats["luma_std"] = float(frame_std.mean())
    feats["black_frac"] = float(np.mean(frame_mean < _BLACK_LUMA))
    feats["blank_frac"] = float(np.mean(frame_std < _BLANK_STD))

    # ---- motion ----------------------------------------------------------------------------------
    diff = np.abs(np.diff(luma, axis=0)).mean(axis=(1, 2))  # (T-1,)
    feats["motion_mean"] = float(diff.mean())
    feats["motion_std"] = float(diff.std())
    p10, p50, p90 = np.percentile(diff, [10, 50, 90])
    feats["motion_p10"], feats["motion_p50"], feats["motion_p90"] = float(p10), float(p50), float(p90)
    feats["motion_max"] = float(diff.max())
    static = diff < _STATIC_DIFF
    feats["static_frac"] = float(static.mean())
    # a cut is a big change that also towers over its neighbours (gameplay with fast scrolling is big but steady)
    neighbours = np.maximum(np.r_[diff[1:], 0.0], np.r_[0.0, diff[:-1]])
    cuts = (diff > _CUT_DIFF) & (diff > 2.0 * neighbours)
    feats["cut_rate_hz"] = float(cuts.sum() / (t / fps))
    longest, run = 0, 0
    for s in static:
        run = run + 1 if s else 0
        longest = max(longest, run)
    feats["longest_static_run_frac"] = longest / max(1, t - 1)

    # ---- colour / structure on evenly spaced frames ------------------------------------------------
    pick = np.unique(np.linspace(0, t - 1, min(t, _SPATIAL_SAMPLES)).round().astype(int))
    rgb = frames[pick].astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourful = np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2) + 0.3 * np.sqrt(
        rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)
    feats["colourfulness"] = float(colourful.mean() / 255.0)
    cmax, cmin = rgb.max(axis=-1), rgb.min(axis=-1)
    feats["saturation_mean"] = float(np.mean((cmax - cmin) / np.maximum(cmax, 1.0)))
    quant = frames[pick] >> 4
    codes = (quant[..., 0].astype(np.int32) << 8) | (quant[..., 1].astype(np.int32) << 4) | quant[..., 2]
    dominant, distinct = [], []
    for c in codes:
        counts = np.bincount(c.ravel(), minlength=4096)
        dominant.append(counts.max() / c.size)
        distinct.append(np.log1p(np.count_nonzero(counts)))
    feats["dominant_colour_frac"] = float(np.mean(dominant))
    feats["distinct_colours"] = float(np.mean(distinct))
    skin = _skin_mask(frames[pick])
    feats["skin_frac"] = float(skin.mean())

    gl = luma[pick]
    mag = _sobel(gl)
    edges = mag > _EDGE
    feats["edge_density"] = float(edges.mean())
    text_blocks = []
    h8, w8 = (gl.shape[1] // 8) * 8, (gl.shape[2] // 8) * 8
    eb = edges[:, :h8, :w8].reshape(len(pick), h8 // 8, 8, w8 // 8, 8).mean(axis=(2, 4))
    lb = gl[:, :h8, :w8].reshape(len(pick), h8 // 8, 8, w8 // 8, 8)
    spread = lb.max(axis=(2, 4)) - lb.min(axis=(2, 4))
    # bimodal: most pixels sit near one of the two extremes (text on a plain plate), not spread in between
    lo, hi = lb.min(axis=(2, 4), keepdims=True), lb.max(axis=(2, 4), keepdims=True)
    near = (np.abs(lb - lo) < 0.2 * (hi - lo) + 1e-6) | (np.abs(lb - hi) < 0.2 * (hi - lo) + 1e-6)
    bimodal = near.mean(axis=(2, 4)) > 0.8
    text_blocks = (eb > 0.2) & (spread > 0.4) & bimodal
    feats["text_block_frac"] = float(text_blocks.mean())
    lap = np.abs(4 * gl[:, 1:-1, 1:-1] - gl[:, :-2, 1:-1] - gl[:, 2:, 1:-1] - gl[:, 1:-1, :-2] - gl[:, 1:-1, 2:])
    feats["hf_energy"] = float(lap.mean())

    # ---- borders: dark and constant through the clip --------------------------------------------------
    tmean = luma.mean(axis=0)  # (H, W)
    tstd = luma.std(axis=0)
    row_dark = (tmean.mean(axis=1) < _BORDER_LUMA) & (tstd.max(axis=1) < _BORDER_STD) & (
        tmean.std(axis=1) < _BORDER_STD)
    col_dark = (tmean.mean(axis=0) < _BORDER_LUMA) & (tstd.max(axis=0) < _BORDER_STD) & (
        tmean.std(axis=0) < _BORDER_STD)
    h, w = tmean.shape
    top, bottom = _edge_run(row_dark), _edge_run(row_dark[::-1])
    left, right = _edge_run(col_dark), _edge_run(col_dark[::-1])
    rows = min(h, top + bottom)
    cols = min(w, left + right)
    feats["letterbox_frac"] = rows / h
    feats["pillarbox_frac"] = cols / w
    feats["active_area_frac"] = (h - rows) * (w - cols) / (h * w)

    # ---- regions: what moves where ------------------------------------------------------------------
    trange = luma.max(axis=0) - luma.min(axis=0)  # (H, W)
    moving = trange > _PIXEL_MOVES
    move_share = np.array([blk.mean() for blk in _blocks(moving, _GRID)])
    texture = np.array([blk.std() for blk in _blocks(tmean, _GRID)])
    moving_blocks = move_share > 0.2
    feats["moving_block_frac"] = float(moving_blocks.mean())
    static_textured = (move_share < 0.05) & (texture > 0.05)
    feats["static_textured_block_frac"] = float(static_textured.mean()) if moving_blocks.mean() >= 1 / 3 else 0.0
    feats["motion_block_gini"] = _gini(move_share)
    skin_share = np.array([blk.mean() for blk in _blocks(skin, _GRID)])
    feats["skin_block_max"] = float(skin_share.max())
    feats["temporal_range_mean"] = float(trange.mean())
    feats["luma_drift"] = float(abs(frame_mean[-1] - frame_mean[0]))

    return np.array([feats[name] for name in FEATURE_NAMES], dtype=np.float32)


def sample_frames(frames: np.ndarray, samples: int = SAMPLES_PER_CLIP, offset: int = MOTION_OFFSET) -> np.ndarray:
    """The CNN's input for one clip: (samples, H, W, 6) uint8 -- frame t and frame t+offset, stacked.

    The instants are evenly spaced so that every part of the clip is seen; a clip's score is the mean
    of its samples' probabilities (see ``classifiers.cnn_model``).
    """
    frames = _check_frames(frames)
    t = frames.shape[0]
    offset = min(offset, t - 1)
    starts = np.linspace(0, t - 1 - offset, samples).round().astype(int)
    return np.concatenate([frames[starts], frames[starts + offset]], axis=-1)
