"""The best-fit LAM (``lam.code_choice = "best_fit"``, an option off in every preset): no encoder, each transition
takes the code under which the decoder predicts x_{t+1} best; its code effects (FiLM, or one change image per
code), dead codes split from the busiest, and the probe's ceiling for such a LAM."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from modeling.configs import PRESETS, LAMConfig, get_config
from modeling.lam import LatentActionModel
from modeling.vq import VectorQuantizer

torch.set_num_threads(1)

SMALL = LAMConfig(frame_height=32, frame_width=32, num_frames=4, patch_size=8, num_actions=4, latent_dim=8,
                  enc_layers=1, enc_dim=32, enc_heads=2, dec_layers=1, dec_dim=32, dec_heads=2, stem_channels=8,
                  head_channels=32, kmeans_bank=64, vq_warmup_steps=0, code_choice="best_fit",
                  dead_code_threshold=0.5)


def train(lam: LatentActionModel, batch, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(lam.parameters(), lr=3e-3)
    for _ in range(steps):
        video, _ = batch(8, gen)
        out = lam(video)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        lam.vq.reset_dead_codes()


def moving_square(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 square on black moves 3 px in one of four directions a step: videos (n, 4, 3, 32, 32), moves (n, 3)."""
    moves = torch.tensor([[0, -3], [0, 3], [-3, 0], [3, 0]])
    video, act = torch.zeros(n, 4, 3, 32, 32), torch.randint(0, 4, (n, 3), generator=gen)
    for i in range(n):
        y, x = torch.randint(10, 18, (2,), generator=gen).tolist()
        video[i, 0, :, y:y + 4, x:x + 4] = 1.0
        for t in range(3):
            y = min(max(y + int(moves[act[i, t], 0]), 0), 28)
            x = min(max(x + int(moves[act[i, t], 1]), 0), 28)
            video[i, t + 1, :, y:y + 4, x:x + 4] = 1.0
    return video, act


def test_best_fit_codes_find_the_moves_a_clip_was_made_with():
    """After a short training the codes name the four moves (NMI near 1; a constant or random choice gives ~0),
    the same in training and inference, each transition's code from its own frames alone; there is no encoder."""
    torch.manual_seed(0)
    lam = LatentActionModel(SMALL)
    assert not hasattr(lam, "encoder") and not hasattr(lam, "action_in")
    with pytest.raises(ValueError, match="no encoder"):
        lam.action_features(torch.rand(1, 4, 3, 32, 32))
    train(lam, moving_square, 250)
    video, act = moving_square(32, torch.Generator().manual_seed(99))
    inferred = lam.infer_actions(video)
    assert normalized_mutual_info_score(act.flatten(), inferred.flatten()) > 0.9
    lam.train()
    torch.testing.assert_close(lam(video)["actions"], inferred, rtol=0, atol=0)
    torch.testing.assert_close(lam.infer_actions(video[:1]), inferred[:1], rtol=0, atol=0)
    codes = lam.vq.codes()[inferred]  # decode with the chosen codes: the prediction forward made
    torch.testing.assert_close(lam.decode(video[:, :-1], codes), lam.eval()(video)["pred"])


def lamp_over_scroll(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random texture scrolls by a random 0-2 px a step (not the action); the action dims, keeps or brightens
    the 4x4 "player" at the centre by 0.15: videos (n, 4, 3, 32, 32), actions (n, 3)."""
    steps = torch.tensor([-0.15, 0.0, 0.15])
    video, act = torch.zeros(n, 4, 3, 32, 32), torch.randint(0, 3, (n, 3), generator=gen)
    for i in range(n):
        world = torch.rand(3, 32, 96, generator=gen)
        x, level = 0, 0.5
        for t in range(4):
            video[i, t] = world[:, :, x:x + 32]
            video[i, t, :, 14:18, 14:18] = level
            x += int(torch.randint(0, 3, (1,), generator=gen))
            level += float(steps[act[i, min(t, 2)]])
    return video, act


def test_change_image_codes_name_an_in_place_change_under_a_scroll():
    """``lam.code_effect = "image"``: a code adds one learned change image, the same in every context. The scroll
    of a random texture cannot be drawn so; the change of the player's grey level at the centre can, and the
    codes name it."""
    torch.manual_seed(0)
    lam = LatentActionModel(dataclasses.replace(SMALL, code_effect="image", num_actions=3, focus_weight=50,
                                                focus_sigma=2))
    train(lam, lamp_over_scroll, 60)
    video, act = lamp_over_scroll(32, torch.Generator().manual_seed(99))
    assert normalized_mutual_info_score(act.flatten(), lam.infer_actions(video).flatten()) > 0.9


def test_a_dead_code_is_split_from_the_busiest_one():
    """Codes chosen by fit (``VectorQuantizer.record``): a code never chosen is re-seeded next to the busiest code,
    which shares its usage with it; the live codes elsewhere stay."""
    vq = VectorQuantizer(3, 4, normalize=True, dead_code_threshold=0.5, usage_decay=0.0).train()
    before = vq.codebook.weight.detach().clone()
    stats = vq.record(torch.tensor([0, 0, 0, 1]))
    assert int(stats["codes_used"]) == 2
    assert vq.reset_dead_codes().tolist() == [2]
    new = vq.codebook.weight.detach()
    assert float(torch.cosine_similarity(new[2], before[0], dim=0)) > 0.95 and not torch.equal(new[2], before[0])
    torch.testing.assert_close(new[:2], before[:2])
    assert float(vq.usage[0]) == float(vq.usage[2]) == pytest.approx(0.375)


@pytest.mark.parametrize("bad", [{"code_choice": "decoder"}, {"code_effect": "image"},
                                 {"code_choice": "best_fit", "head_channels": 0}])
def test_option_combinations_that_cannot_work_are_refused(bad):
    with pytest.raises(ValueError, match="code_choice|code_effect"):
        LAMConfig(**bad)
    assert all(get_config(name).lam.code_choice == "encoder" for name in PRESETS)


def test_the_probe_s_ceiling_for_a_best_fit_lam_has_the_encoder_of_its_config():
    """The supervised ceiling reads an encoder of the LAM's config; a best-fit LAM has none, so the ceiling
    builds the encoder an encoder LAM of the same shape would have."""
    from tests.modeling.test_lam_probe import load_probe

    for cfg in (SMALL, dataclasses.replace(SMALL, code_effect="image", effect_crop=8, mirror_crop=8, train_codes=8,
                                           prune_at=5)):
        ceiling = load_probe().InverseDynamics(cfg, num_classes=6)
        assert ceiling(torch.rand(2, 4, 3, 32, 32)).shape == (2, 3, 6)
        assert hasattr(ceiling.lam, "encoder") and not hasattr(ceiling.lam, "pixel_head")


def test_a_code_s_crop_map_acts_on_every_channel_of_the_central_crop_only():
    """``lam.effect_crop``: a code's linear map of x_t's central P x P crop, one map for every colour channel, its
    result added there and nowhere else. A mirror map gives the crop mirrored (torch.flip) whatever its colours:
    what a code needs to turn a sprite of any colour, which a change image, tied to colours, cannot do."""
    cfg = dataclasses.replace(SMALL, code_effect="image", effect_crop=8)
    lam = LatentActionModel(cfg)
    past = torch.rand(2, 3, 3, 32, 32)
    mirror = torch.eye(64).view(64, 8, 8).flip(-1).reshape(64, 64)  # row p: the pixel mirrored from p
    out = lam._crop_effect(past, mirror)
    torch.testing.assert_close(out[..., 12:20, 12:20], past[..., 12:20, 12:20].flip(-1))
    out[..., 12:20, 12:20] = 0
    assert not out.any()
    per_transition = mirror.expand(2, 3, 64, 64)  # a map per transition, as the chosen codes give
    torch.testing.assert_close(lam._crop_effect(past, per_transition), lam._crop_effect(past, mirror))
    with torch.no_grad():
        lam.code_map.weight.normal_(0, 0.05)  # maps that change the prediction, so that the codes differ there
    video = torch.rand(2, 4, 3, 32, 32)
    out = lam.eval()(video)
    torch.testing.assert_close(lam.decode(video[:, :-1], lam.vq.codes()[out["actions"]]), out["pred"])
    with pytest.raises(ValueError, match="effect_crop"):
        dataclasses.replace(SMALL, code_effect="film", effect_crop=8)
    with pytest.raises(ValueError, match="effect_crop"):
        dataclasses.replace(SMALL, code_effect="image", effect_crop=40)


def mirrored_centre(video: torch.Tensor, p: int) -> torch.Tensor:
    """video with the central p x p px of every frame mirrored left-right."""
    out, (h, w) = video.clone(), video.shape[-2:]
    y0, x0 = (h - p) // 2, (w - p) // 2
    out[..., y0:y0 + p, x0:x0 + p] = video[..., y0:y0 + p, x0:x0 + p].flip(-1)
    return out


@pytest.mark.parametrize("options", [{"code_effect": "image", "effect_crop": 8}, {"code_choice": "encoder"}])
def test_a_mirror_crop_decoder_cannot_tell_which_way_the_centre_faces(options):
    """``lam.mirror_crop``: the decoder sees the central P x P px of the past only up to a left-right mirror, so a
    past whose centre is mirrored gives the same prediction (the facing is the code's to say), while a change
    elsewhere in the past, or the same mirror without the option, changes it."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, **options)
    lam = LatentActionModel(dataclasses.replace(cfg, mirror_crop=8)).eval()
    if cfg.effect_crop:
        with torch.no_grad():
            lam.code_map.weight.normal_(0, 0.05)
    past, latents = torch.rand(2, 3, 3, 32, 32), torch.randn(2, 3, 8)
    pred = lam.decode(past, latents)
    torch.testing.assert_close(lam.decode(mirrored_centre(past, 8), latents), pred)
    assert not torch.allclose(lam.decode(mirrored_centre(past, 10), latents), pred, atol=1e-4)
    plain = LatentActionModel(cfg).eval()
    plain.load_state_dict(lam.state_dict())
    assert not torch.allclose(plain.decode(mirrored_centre(past, 8), latents), plain.decode(past, latents), atol=1e-4)
    if cfg.code_choice == "best_fit":  # the first frame is past only: mirroring it changes neither codes nor frames
        video = torch.rand(2, 4, 3, 32, 32)
        turned = torch.cat([mirrored_centre(video[:, :1], 8), video[:, 1:]], 1)
        out, out_turned = lam(video), lam(turned)
        assert torch.equal(out["actions"], out_turned["actions"])
        torch.testing.assert_close(out_turned["pred"], out["pred"])
    with pytest.raises(ValueError, match="mirror_crop"):
        dataclasses.replace(SMALL, mirror_crop=40)
