"""The LAM's innovation weights (modeling/innovation.py): a scrolling view whose layers move by fractions of a pixel
at their own speeds is explained by motion compensation, so the weight goes to what changed in place (a sprite
turning), not to the scroll; the frames are translated by scipy's own interpolation, not the module's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from modeling.configs import LAMConfig
from modeling.innovation import global_shifts, innovation_weights, motion_residual
from modeling.lam import LatentActionModel

SIZE = 64
SPRITE = (slice(28, 36), slice(30, 35))  # 8x5 px at the centre, where a platformer's camera keeps the player


def world(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A far background texture, a foreground of solid blocks (mask and colour), 192x192, in [0, 1]."""
    rng = np.random.default_rng(seed)
    background = ndimage.gaussian_filter(rng.random((192, 192, 3)), (3, 3, 0))
    background = (background - background.min()) / np.ptp(background)
    blocks = ndimage.zoom(rng.random((12, 12)) < 0.3, 16, order=0).astype(np.float64)
    return background, blocks, rng.random(3)


def view(layers, camera: tuple[float, float], sprite: np.ndarray, parallax: float = 0.5) -> np.ndarray:
    """The 64x64 view with its top-left corner at camera (y, x) in world px: the background at ``parallax`` times
    the speed, the blocks at full speed, each moved by scipy's linear interpolation; the sprite on top."""
    background, blocks, colour = layers
    y, x = camera
    far = ndimage.shift(background, (-y * parallax, -x * parallax, 0), order=1, mode="nearest")[:SIZE, :SIZE]
    near = ndimage.shift(blocks, (-y, -x), order=1, mode="nearest")[:SIZE, :SIZE, None]
    frame = far * (1 - near) + colour * near
    frame[SPRITE] = sprite
    return frame


def video(cameras, sprites, seed=0, parallax=0.5) -> torch.Tensor:
    layers = world(seed)
    frames = np.stack([view(layers, c, s, parallax) for c, s in zip(cameras, sprites, strict=True)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None]  # (1, T, 3, H, W)


PINK, TURNED = np.array([0.9, 0.5, 0.6]), np.array([0.9, 0.5, 0.6])[::-1].copy()


def test_the_weight_goes_to_the_sprite_that_changed_not_to_the_fractional_scroll():
    cameras = [(40.0, 40.0), (43.5, 41.5), (46.0, 44.0)]  # falling and running: 3.5 and 1.5 px, then 2.5 and 2.5
    clip = video(cameras, [PINK, TURNED, TURNED])
    weights = innovation_weights(clip, share=0.9)[0, :, 0]  # (2, H, W)
    inner = np.zeros((SIZE, SIZE), bool)
    inner[12:-12, 12:-12] = True
    in_sprite = np.zeros_like(inner)
    in_sprite[SPRITE] = True
    turned, still = weights[0].numpy(), weights[1].numpy()
    # plain squared error: the scroll costs more than the sprite (what makes a plain-MSE code follow the camera)
    raw = ((clip[0, 1] - clip[0, 0]) ** 2).mean(0).numpy()
    assert raw[in_sprite].sum() < 0.5 * raw[inner & ~in_sprite].sum()
    # weighted: the turning sprite outweighs the whole scrolled interior, 40 times its area
    assert turned[in_sprite].sum() > turned[inner & ~in_sprite].sum()
    # where only the camera moves, the still sprite (whose outline the scroll passes) does not outweigh the rest
    assert still[in_sprite].sum() < still[inner & ~in_sprite].sum()
    assert turned[in_sprite].sum() > 3 * still[in_sprite].sum()


def test_global_shift_and_revealed_pixels():
    clip = video([(40.0, 40.0), (45.0, 37.0)], [PINK, PINK], parallax=1.0)
    grey = clip[0].mean(1)
    assert global_shifts(grey[:1], grey[1:]).tolist() == [[3.0, -5.0]]  # the view moves x +3 px, y -5 px
    residual, revealed = motion_residual(clip[0, :1], clip[0, 1:])
    assert revealed[0, -5:].all() and not revealed[0, :-5, 3:].any() and revealed[0, :, :3].all()
    weights = innovation_weights(clip, share=0.9)[0, 0, 0]
    assert torch.allclose(weights[revealed[0]], weights.min().expand(int(revealed.sum())))


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_a_still_video_weighs_every_pixel_alike_and_the_mean_is_one(share):
    still = video([(40.0, 40.0)] * 3, [PINK] * 3)
    assert torch.allclose(innovation_weights(still, share), torch.ones(1, 2, 1, SIZE, SIZE))
    moving = video([(40.0, 40.0), (42.5, 41.0), (45.0, 41.5)], [PINK, TURNED, PINK])
    assert torch.allclose(innovation_weights(moving, share).mean((-1, -2)), torch.ones(1, 2, 1))


def test_the_lam_loss_uses_the_weights_and_the_share_is_checked():
    cfg = LAMConfig(frame_height=SIZE, frame_width=SIZE, num_frames=3, patch_size=16, num_actions=4, latent_dim=8,
                    enc_layers=1, enc_dim=32, enc_heads=2, dec_layers=1, dec_dim=32, dec_heads=2, stem_channels=8,
                    head_channels=16, kmeans_bank=64, vq_warmup_steps=0)
    clip = video([(40.0, 40.0), (42.5, 41.0), (45.0, 41.5)], [PINK, TURNED, PINK])
    torch.manual_seed(0)
    plain = LatentActionModel(cfg).eval()
    weighted = LatentActionModel(LAMConfig(**{**cfg.__dict__, "innovation_weight": 0.9})).eval()
    weighted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(clip), weighted(clip)
    assert torch.equal(a["pred"], b["pred"])
    expected = (((b["pred"] - clip[:, 1:]) ** 2) * innovation_weights(clip, 0.9)).mean()
    assert torch.isclose(b["recon_loss"], expected) and not torch.isclose(a["recon_loss"], b["recon_loss"])
    with pytest.raises(ValueError, match="innovation_weight"):
        LAMConfig(innovation_weight=1.5)
