"""What makes the LAM's action necessary (modeling/lam.py, modeling/vq.py): a decoder that can draw (a copy of x_t
from the start, full rank, the action injected), an encoder stem that sees the change and keeps causality, the
k-means bottleneck (continuous warm-up, k-means init, dead codes re-seeded), and checkpoints of the earlier
linear-layer LAM still loading."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from modeling.checkpoint import load_lam, save_checkpoint, write_run_config
from modeling.configs import PRESETS, LAMConfig, get_config
from modeling.lam import LatentActionModel, lam_from_state, legacy_config
from modeling.vq import VectorQuantizer

torch.set_num_threads(1)

SMALL = LAMConfig(frame_height=32, frame_width=32, num_frames=4, patch_size=8, num_actions=4, latent_dim=8,
                  enc_layers=1, enc_dim=32, enc_heads=2, dec_layers=1, dec_dim=32, dec_heads=2, stem_channels=8,
                  head_channels=32, kmeans_bank=64, vq_warmup_steps=0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_no_preset_has_a_pixel_head_narrower_than_its_patch(name):
    cfg = get_config(name).lam
    assert cfg.head_channels > 0 and cfg.stem_channels > 0
    lam = LatentActionModel(cfg)
    assert not hasattr(lam, "to_pixels") and not hasattr(lam, "enc_in")
    assert lam.pixel_head.sizes(cfg.frame_height, cfg.frame_width)[-1] == (-(-cfg.frame_height // cfg.patch_size)
                                                                           * cfg.patch_size,
                                                                           -(-cfg.frame_width // cfg.patch_size)
                                                                           * cfg.patch_size)


def test_coinrun_cpu_shapes():
    torch.manual_seed(0)
    lam = LatentActionModel(get_config("coinrun-cpu").lam)
    video = torch.rand(2, 8, 3, 64, 64)
    with torch.no_grad():
        out = lam(video)
    assert out["pred"].shape == (2, 7, 3, 64, 64) and out["actions"].shape == (2, 7)
    assert float(out["pred"].min()) >= 0 and float(out["pred"].max()) <= 1


def test_the_decoder_copies_x_t_at_the_start():
    """Residual head: before any training the prediction of x_{t+1} is (nearly) x_t, whatever the action."""
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL)
    past = torch.rand(2, 3, 3, 32, 32)
    pred = lam.decode(past, torch.randn(2, 3, SMALL.latent_dim))
    assert (pred - past).abs().max() < 0.05


def test_the_decoder_draws_an_action_dependent_move():
    """A 4x4 square moves 3 px left under action A, 3 px right under action B: the decoder, given the action's
    vector, learns both moves (far better than a copy); given the other action's vector it is wrong. So the
    action reaches the pixels and the head is not rank-limited to an average move."""
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL)
    codes = torch.randn(2, SMALL.latent_dim)

    def batch(n: int, gen: torch.Generator):
        past, nxt, act = torch.zeros(n, 3, 3, 32, 32), torch.zeros(n, 3, 3, 32, 32), torch.randint(0, 2, (n, 3),
                                                                                                   generator=gen)
        for i in range(n):
            for t in range(3):
                y, x = torch.randint(4, 24, (2,), generator=gen).tolist()
                dx = -3 if act[i, t] == 0 else 3
                past[i, t, :, y:y + 4, x:x + 4] = 1.0
                nxt[i, t, :, y:y + 4, x + dx:x + dx + 4] = 1.0
        return past, nxt, act

    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(lam.parameters(), lr=3e-3)
    for _ in range(100):
        past, nxt, act = batch(8, gen)
        loss = F.mse_loss(lam.decode(past, codes[act]), nxt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    past, nxt, act = batch(16, torch.Generator().manual_seed(99))
    with torch.no_grad():
        right = F.mse_loss(lam.decode(past, codes[act]), nxt)
        wrong = F.mse_loss(lam.decode(past, codes[1 - act]), nxt)
    copy = F.mse_loss(past, nxt)
    assert right < 0.1 * copy and wrong > 10 * right


def test_the_stem_sees_the_change_and_stays_causal():
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL).eval()
    video = torch.rand(1, 4, 3, 32, 32)
    changed = video.clone()
    changed[:, 2] = torch.rand_like(changed[:, 2])
    a, b = lam._encode(video), lam._encode(changed)
    torch.testing.assert_close(a["latent"][:, :1], b["latent"][:, :1])  # action 0 sees frames 0, 1
    assert not torch.allclose(a["latent"][:, 1], b["latent"][:, 1])
    pa, pb = lam(video)["pred"], lam(changed)["pred"]
    torch.testing.assert_close(pa[:, :2], pb[:, :2])  # predictions of frames 1, 2 see frames <= 1


def test_vq_warm_up_then_k_means_codebook():
    """Warm-up forwards pass the latent through; the first quantised forward sets each code to one cluster."""
    torch.manual_seed(0)
    centers = F.normalize(torch.eye(4, 8) + 0.1, dim=-1)
    vq = VectorQuantizer(4, 8, normalize=True, bank_size=256, warmup_steps=3).train()

    def draw():
        return centers[torch.randint(0, 4, (64,))] + 0.02 * torch.randn(64, 8)

    for _ in range(3):
        z = draw()
        out = vq(z)
        torch.testing.assert_close(out["quantized"], F.normalize(z, dim=-1))
        assert float(out["loss"]) == 0 and vq.reset_dead_codes().numel() == 0
    vq(draw())
    match = (vq.codes() @ centers.t()).argmax(1)
    assert sorted(match.tolist()) == [0, 1, 2, 3]
    assert float((vq.codes().detach() @ centers.t()).max(1).values.min()) > 0.99


def test_a_dead_code_is_reseeded_by_k_means_on_the_data_the_live_codes_serve_worst():
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 4, normalize=True, dead_code_threshold=0.5, usage_decay=0.0, bank_size=64)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [-1.0, 0, 0, 0]]))
    far = torch.tensor([0, 0, 1.0, 0])  # a group no live code serves
    z = torch.cat([torch.tensor([1.0, 0, 0, 0]) + 0.01 * torch.randn(20, 4),
                   torch.tensor([0, 1.0, 0, 0]) + 0.01 * torch.randn(20, 4),
                   far + 0.01 * torch.randn(10, 4)])
    vq.train()(z)
    vq.usage[2] = 0.0
    assert vq.reset_dead_codes().tolist() == [2]
    assert float(F.normalize(vq.codebook.weight[2].detach(), dim=0) @ far) > 0.99
    torch.testing.assert_close(vq.codebook.weight[:2], torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))


def test_a_checkpoint_of_the_linear_layer_lam_still_loads(tmp_path):
    """Runs saved before the conv stem / pixel head (config.json without the new fields, state with enc_in and
    to_pixels) load with their own architecture; a state of yet another shape is one clear error."""
    cfg = get_config("tiny")
    old_cfg = dataclasses.replace(cfg.lam, stem_channels=0, head_channels=0, kmeans_bank=0, vq_warmup_steps=0)
    torch.manual_seed(0)
    old = LatentActionModel(old_cfg).eval()
    write_run_config(tmp_path, cfg, "lam")  # the current config's defaults, as an old config.json reads now
    save_checkpoint(tmp_path, {"models": {"lam": old.state_dict()}, "step": 1}, 1)
    lam, loaded_cfg = load_lam(tmp_path)
    assert loaded_cfg.lam.head_channels == 0 and legacy_config(cfg.lam, old.state_dict()) == old_cfg
    video = torch.rand(1, 4, 3, 90, 160)
    torch.testing.assert_close(lam.infer_actions(video), old.infer_actions(video))
    state = old.state_dict()
    state.pop("action_query")
    with pytest.raises(ValueError, match="does not match its config"):
        lam_from_state(cfg.lam, state)


def test_weak_supervision_labels_a_fixed_share_of_transitions():
    """lam.action_head_fraction (LAOM; off in every preset): the labelled transitions are a fixed function of
    the frame index (the same set every epoch), about the fraction asked; their CE joins the loss."""
    from modeling.lam import labelled_transitions

    starts = torch.arange(0, 10_000, 7)
    mask = labelled_transitions(starts, 7, 0.025)
    assert 0.015 < float(mask.float().mean()) < 0.035
    torch.testing.assert_close(mask[3], labelled_transitions(starts[3:4], 7, 0.025)[0])
    assert not any(get_config(name).lam.action_head_fraction for name in PRESETS)
    torch.manual_seed(0)
    lam = LatentActionModel(dataclasses.replace(SMALL, action_head_fraction=1.0, action_classes=15))
    video, actions = torch.rand(2, 4, 3, 32, 32), torch.randint(0, 15, (2, 4))
    out = lam(video, actions, torch.zeros(2, dtype=torch.long))
    assert float(out["action_head_loss"]) > 1.0
    out["loss"].backward()
    assert lam.action_head.weight.grad.abs().sum() > 0
    assert "action_head_loss" not in lam(video)
