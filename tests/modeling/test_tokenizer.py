"""ST-ViViT tokenizer and VQ: shapes, padding, causality, straight-through gradients, dead-code reset, and
overfitting a few real clips (decoded from shards written with the pipeline's codec) on CPU."""

from __future__ import annotations

import itertools

import pytest
import torch

from modeling.configs import TokenizerConfig, get_config
from modeling.data import LoaderConfig, clip_windows, to_float_video
from modeling.patches import patchify, unpatchify
from modeling.tokenizer import VideoTokenizer
from modeling.train import psnr
from modeling.vq import VectorQuantizer
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


@pytest.fixture
def tokenizer() -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(get_config("tiny").tokenizer)


def test_paper_patch_grid_pads_90_to_92():
    cfg = TokenizerConfig()
    assert cfg.patch_size == 4 and cfg.token_grid == (23, 40)  # 92/4 x 160/4
    x = torch.rand(1, 2, 3, 90, 160)
    patches = patchify(x, 4)
    assert patches.shape == (1, 2, 23 * 40, 48)
    # Patch (row 0, col 1) holds pixels [0:4, 4:8] in (y, x, channel) order; the last row is half padding.
    torch.testing.assert_close(patches[0, 0, 1], x[0, 0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1))
    last = patches[0, 0, 22 * 40].view(4, 4, 3)
    torch.testing.assert_close(last[:2], x[0, 0, :, 88:90, 0:4].permute(1, 2, 0))
    assert last[2:].abs().sum() == 0
    torch.testing.assert_close(unpatchify(patches, 4, 90, 160), x)


def test_shapes_and_dtypes(tokenizer):
    video = torch.rand(2, 4, 3, 90, 160)
    out = tokenizer(video)
    h, w = tokenizer.token_grid
    assert out["recon"].shape == video.shape and out["recon"].dtype == torch.float32
    assert out["recon"].min() >= 0 and out["recon"].max() <= 1
    assert out["tokens"].shape == (2, 4, h, w) and out["tokens"].dtype == torch.long
    assert out["loss"].ndim == 0
    tokens = tokenizer.encode(video)
    assert tokens.dtype == torch.long and tokens.shape == (2, 4, h, w)
    assert tokens.min() >= 0 and tokens.max() < tokenizer.codebook_size
    decoded = tokenizer.decode(tokens)
    assert decoded.shape == video.shape
    with pytest.raises(ValueError, match="expected video"):
        tokenizer(torch.rand(1, 4, 3, 64, 64))


def test_encoder_and_decoder_are_causal(tokenizer):
    tokenizer.eval()
    video = torch.rand(1, 4, 3, 90, 160)
    changed = video.clone()
    changed[:, 2:] = torch.rand_like(changed[:, 2:])
    latents, latents2 = tokenizer._latents(video), tokenizer._latents(changed)
    torch.testing.assert_close(latents[:, :2], latents2[:, :2])
    assert not torch.allclose(latents[:, 2:], latents2[:, 2:])
    tokens = tokenizer.encode(video)
    assert torch.equal(tokens[:, :2], tokenizer.encode(changed)[:, :2])
    other = tokens.clone()
    other[:, 3] = (other[:, 3] + 1) % tokenizer.codebook_size
    torch.testing.assert_close(tokenizer.decode(tokens)[:, :3], tokenizer.decode(other)[:, :3])


def test_vq_straight_through_gradients_reach_the_encoder(tokenizer):
    video = torch.rand(1, 4, 3, 90, 160)
    out = tokenizer(video)
    torch.nn.functional.mse_loss(out["recon"], video).backward()  # reconstruction loss only
    assert tokenizer.enc_in.weight.grad is not None and tokenizer.enc_in.weight.grad.abs().sum() > 0
    assert tokenizer.encoder.blocks[0].temporal.qkv.weight.grad.abs().sum() > 0


def test_vq_losses_train_the_codebook_and_usage_is_tracked():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, dim=8, normalize=False)
    z = torch.randn(64, 8, requires_grad=True)
    out = vq(z)
    out["loss"].backward()
    assert vq.codebook.weight.grad.abs().sum() > 0  # codebook loss
    assert z.grad.abs().sum() > 0  # commitment loss
    # Nearest code by brute force, as an independent reference.
    reference = torch.cdist(z.detach(), vq.codebook.weight.detach()).argmin(1)
    assert torch.equal(out["indices"], reference)
    torch.testing.assert_close(out["quantized"], vq.codebook.weight[reference])
    assert abs(float(vq.usage.sum()) - 1.0) < 1e-5
    vq.eval()
    before = vq.usage.clone()
    vq(torch.randn(10, 8))
    assert torch.equal(vq.usage, before)  # inference does not move the statistics


def test_dead_codes_are_reset_to_the_worst_served_latents():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=4, dim=2, normalize=False, dead_code_threshold=0.5, usage_decay=0.0)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0], [-50.0, 50.0]]))
    z = torch.tensor([[0.0, 0.1], [0.1, 0.1], [5.0, 0.0], [0.05, 0.0]])
    vq(z)  # codes 2 and 3 get nothing: dead (usage_decay=0 -> usage is this batch's share)
    assert vq.usage_fraction() == 0.5
    assert vq.reset_dead_codes().numel() == 2
    # The two worst-quantised latents are [5, 0] (far from all) and [0, 0.1]/[0.1, 0.1] (next largest error).
    assert torch.equal(vq.codebook.weight[2], torch.tensor([5.0, 0.0]))
    assert vq.usage_fraction() == 1.0
    assert vq(z)["indices"][2] == 2


def test_tiny_tokenizer_overfits_real_clips(tmp_path):
    write_tiny_shards(tmp_path, n_clips=4, frames=16)
    batch = next(iter(clip_windows(str(tmp_path), LoaderConfig(window=4, batch_size=4, seed=0))))
    video = to_float_video(batch["video"])
    torch.manual_seed(0)
    model = VideoTokenizer(get_config("tiny").tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.no_grad():
        start = float(psnr(model(video)["recon"], video))
    for _ in itertools.repeat(None, 60):
        out = model(video)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        model.vq.reset_dead_codes()
    with torch.no_grad():
        end = float(psnr(model(video)["recon"], video))
    assert end > start + 6.0, (start, end)
