"""Latent action model: shapes, what each prediction may see, gradients through the VQ, batch independence of the
actions (training = inference), and the guard against collapse to a single action (dead-code reset) on real
clips with known actions."""

from __future__ import annotations

import copy

import pytest
import torch

from modeling.configs import LAMConfig, get_config
from modeling.data import LoaderConfig, clip_windows, to_float_video
from modeling.lam import LatentActionModel
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


@pytest.fixture
def lam() -> LatentActionModel:
    torch.manual_seed(0)
    return LatentActionModel(get_config("tiny").lam)


def test_paper_defaults():
    cfg = LAMConfig()
    assert (cfg.patch_size, cfg.num_actions, cfg.latent_dim) == (16, 8, 32)
    assert cfg.token_grid == (6, 10)  # 90 padded to 96
    assert get_config("coinrun").lam.num_actions == 6


def test_shapes_and_dtypes(lam):
    video = torch.rand(2, 4, 3, 90, 160)
    out = lam(video)
    assert out["pred"].shape == (2, 3, 3, 90, 160) and out["pred"].min() >= 0 and out["pred"].max() <= 1
    assert out["actions"].shape == (2, 3) and out["actions"].dtype == torch.long
    assert out["loss"].ndim == 0
    actions = lam.infer_actions(video)
    assert actions.shape == (2, 3) and actions.dtype == torch.long
    assert actions.min() >= 0 and actions.max() < lam.num_actions
    with pytest.raises(ValueError, match="T>=2"):
        lam(torch.rand(2, 1, 3, 90, 160))


def test_actions_and_predictions_see_only_what_they_may(lam):
    """Action t (x_t -> x_{t+1}) sees frames <= t+1; the prediction of x_{t+1} sees frames <= t and action t."""
    lam.eval()
    video = torch.rand(1, 5, 3, 90, 160)
    changed = video.clone()
    changed[:, 3] = torch.rand_like(changed[:, 3])  # frame index 3
    a, b = lam._encode(video), lam._encode(changed)
    torch.testing.assert_close(a["latent"][:, :2], b["latent"][:, :2])  # actions 0, 1 (frames <= 2)
    assert not torch.allclose(a["latent"][:, 2], b["latent"][:, 2])  # action 2 sees frame 3
    pa, pb = lam(video)["pred"], lam(changed)["pred"]
    torch.testing.assert_close(pa[:, :2], pb[:, :2])  # predictions of frames 1, 2


def test_gradients_flow_through_the_action_bottleneck(lam):
    video = torch.rand(2, 4, 3, 90, 160)
    out = lam(video)
    torch.nn.functional.mse_loss(out["pred"], video[:, 1:]).backward()  # decoder loss only
    assert lam.encoder.blocks[0].temporal.qkv.weight.grad.abs().sum() > 0
    assert lam.action_query.grad.abs().sum() > 0


def test_an_action_depends_on_its_clip_alone_in_training_and_inference(lam):
    """The actions the dynamics model is trained on (training-mode forward, here a batch of 8) are those of each
    clip alone, and those ``infer_actions`` gives at inference. (With the earlier BatchNorm, a third of one clip's
    actions changed with its batch, and two thirds differed between training and inference.)"""
    video = torch.rand(8, 4, 3, 90, 160, generator=torch.Generator().manual_seed(1))
    warm = lam.train()
    for _ in range(3):  # running statistics past their first-batch initialisation
        warm(torch.rand(8, 4, 3, 90, 160))
    alone, batch = copy.deepcopy(warm)._encode(video[:1]), copy.deepcopy(warm)._encode(video)  # as forward does
    torch.testing.assert_close(alone["indices"], batch["indices"][:1], rtol=0, atol=0)
    torch.testing.assert_close(alone["latent"], batch["latent"][:1])
    torch.testing.assert_close(copy.deepcopy(warm)(video)["actions"], batch["indices"], rtol=0, atol=0)
    inferred = copy.deepcopy(warm).infer_actions(video)
    torch.testing.assert_close(inferred, batch["indices"], rtol=0, atol=0)
    assert inferred.unique().numel() >= 2  # not trivially equal: the actions differ between transitions


@pytest.mark.parametrize("batchnorm", [True, False])
def test_collapse_guards_keep_action_codes_alive(tmp_path, batchnorm):
    """Early in training the encoder maps every transition to nearly the same latent. Dead-code reset revives
    starved codes; standardised latents (default) let the revived codes win transitions, so every code gets used
    over training. Without it the resets still happen but identical latents stay on one or two codes
    (docs/modeling.md). The standardisation uses running statistics (batch-independent actions), which lag this
    fast-moving probe: per step it is mostly one code (batch statistics kept two), so no per-step claim here."""
    write_tiny_shards(tmp_path, n_clips=4, frames=16)
    video = to_float_video(next(iter(clip_windows(str(tmp_path), LoaderConfig(window=4, batch_size=4,
                                                                              seed=0))))["video"])
    torch.manual_seed(0)
    lam = LatentActionModel(get_config("tiny", {"lam.batchnorm_latents": batchnorm}).lam)
    optimizer = torch.optim.AdamW(lam.parameters(), lr=3e-3)
    resets, first_loss, used = 0, None, set()
    for _ in range(40):
        out = lam(video)
        first_loss = first_loss or float(out["recon_loss"])
        used.update(out["actions"].flatten().tolist())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        resets += lam.vq.reset_dead_codes().numel()
    assert resets > 0
    assert float(out["recon_loss"]) < 0.75 * first_loss  # the residual decoder starts at a copy of x_t
    if batchnorm:
        assert used == set(range(lam.num_actions))
    else:
        assert len(used) < lam.num_actions


def test_focus_weight_prices_an_error_at_the_centre_above_one_at_the_corner():
    """``lam.focus_weight``: the same pixel error costs more at the frame's centre (where a platformer keeps the
    player) than at its corner; the loss is the weighted mean of the squared error (weights of mean 1, computed
    here from the formula with numpy), and with the default 0 it is the plain MSE."""
    import dataclasses

    import numpy as np

    from modeling.lam import centre_weights

    h, w, strength, sigma = 90, 160, 50.0, 4.0
    y, x = np.mgrid[:h, :w]
    g = np.exp(-(((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) / (2 * sigma**2)))
    expected = 1 + strength * g / g.mean()
    np.testing.assert_allclose(centre_weights(h, w, strength, sigma).numpy(), expected / expected.mean(), rtol=1e-5)

    cfg = get_config("tiny").lam
    torch.manual_seed(0)
    plain = LatentActionModel(cfg).eval()
    focused = LatentActionModel(dataclasses.replace(cfg, focus_weight=strength, focus_sigma=sigma)).eval()
    focused.load_state_dict(plain.state_dict())
    video = torch.rand(2, 3, 3, h, w, generator=torch.Generator().manual_seed(3))
    out = focused(video)
    error = (out["pred"].detach() - video[:, 1:]).pow(2)
    weights = torch.from_numpy(expected / expected.mean()).float()
    torch.testing.assert_close(out["recon_loss"], (error * weights).mean())
    torch.testing.assert_close(plain(video)["recon_loss"], error.mean())  # same weights, default: plain MSE

    assert weights[h // 2, w // 2] > 100 * weights[0, 0]  # one pixel's error: centre vs corner
    with pytest.raises(ValueError, match="focus_weight"):
        dataclasses.replace(cfg, focus_weight=-1.0)
