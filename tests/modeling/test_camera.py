"""The camera's global shift (modeling.camera) against torch.roll, and the LAM decoder that is given it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from modeling.camera import global_shifts, shift_frames, shift_index
from modeling.configs import get_config
from modeling.lam import LatentActionModel
from modeling.lam_check import action_necessity

torch.set_num_threads(1)
SHIFTS = [(3, -2), (-5, 4), (0, 0), (8, 1), (-8, -8)]


def scrolled_video() -> torch.Tensor:
    """(1, 6, 3, 64, 64): a smooth random scene scrolled by SHIFTS with torch.roll (x_{t+1}[y, x] = x_t[y+dy, x+dx])."""
    g = torch.Generator().manual_seed(0)
    frame = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g), 3, 1, 1)[0]
    frames = [frame]
    for dy, dx in SHIFTS:
        frames.append(torch.roll(frames[-1], shifts=(-dy, -dx), dims=(1, 2)))
    return torch.stack(frames)[None]


def test_global_shifts_recover_a_known_scroll():
    assert global_shifts(scrolled_video(), 8)[0].tolist() == [list(s) for s in SHIFTS]


def test_a_still_or_flat_view_is_no_shift():
    still = scrolled_video()[:, :1].expand(1, 3, 3, 64, 64)
    assert global_shifts(still, 8).abs().sum() == 0
    assert global_shifts(torch.full((2, 3, 3, 32, 32), 0.5), 4).abs().sum() == 0  # ties: the smallest shift


def test_shift_frames_moves_by_the_shift_and_fills_the_edge_from_the_nearest_row():
    video = scrolled_video()[0]
    moved = shift_frames(video[:-1], global_shifts(video[None], 8)[0])
    interior = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    torch.testing.assert_close(moved[interior], video[1:][interior])
    dy, dx = SHIFTS[0]
    assert torch.equal(moved[0, :, -1, 10], video[0, :, -1, 10 + dx])  # scrolled onto: x_t's last row repeated


def test_the_search_is_refused_on_frames_too_small_for_it():
    with pytest.raises(ValueError, match="too small"):
        global_shifts(torch.rand(1, 2, 3, 16, 16), 8)


def test_shift_index_is_one_to_one():
    r = 3
    grid = torch.tensor([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
    assert sorted(shift_index(grid, r).tolist()) == list(range((2 * r + 1) ** 2))


def camera_lam() -> LatentActionModel:
    torch.manual_seed(0)
    cfg = get_config("tiny").lam
    return LatentActionModel(dataclasses.replace(cfg, frame_height=64, frame_width=64, camera_radius=8))


def test_the_decoder_is_given_the_scroll_and_needs_it():
    """A decoder with camera compensation predicts a pure scroll near exactly from the start (its base is x_t moved
    by the shift, its delta near zero), and refuses to decode without the shifts."""
    lam = camera_lam()
    video = scrolled_video()
    out = lam(video)
    interior = (slice(None), slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert (out["pred"][interior] - video[:, 1:][interior]).abs().max() < 0.05
    plain = LatentActionModel(dataclasses.replace(lam.cfg, camera_radius=0))
    plain_err = (plain(video)["pred"][interior] - video[:, 1:][interior]).abs().mean()
    assert (out["pred"][interior] - video[:, 1:][interior]).abs().mean() < plain_err / 4
    with pytest.raises(ValueError, match="camera"):
        lam.decode(video[:, :-1], torch.zeros(1, 5, lam.cfg.latent_dim))
    check = action_necessity(lam, video, torch.zeros(1, 6, dtype=torch.long))
    assert check["psnr_inferred"] > 25


def test_actions_still_read_the_encoder_alone():
    lam = camera_lam()
    video = scrolled_video()
    assert lam.infer_actions(video).shape == (1, 5)
    lam.eval()
    changed = video.clone()
    changed[:, 4] = torch.rand_like(changed[:, 4])
    torch.testing.assert_close(lam(video)["pred"][:, :3], lam(changed)["pred"][:, :3])  # frames <= 3 unchanged
