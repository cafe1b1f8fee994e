"""ST-ViViT video tokenizer: a VQ-VAE whose encoder and decoder are ST-transformers.

Genie (Bruce et al. 2024), Section 2.1 and Appendix C.1: frames are split into patches (size 4), an
ST-transformer encoder maps them to latents of dimension 32 that are vector-quantised against 1024 codes, and a
(larger) ST-transformer decoder reconstructs the frames. Temporal attention is causal in the encoder AND the
decoder, so token z_t depends only on frames x_1..x_t and decoded frame t only on tokens z_1..z_t.

Differences from the paper: 160x90 frames are zero-padded to 160x92 for patch 4 (23x40 tokens) and cropped back
(``modeling.patches``); the VQ is cosine-similarity with dead-code reset (``modeling.vq``); the loss is pixel MSE
plus the VQ losses (the paper does not state its reconstruction loss).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from modeling.configs import TokenizerConfig
from modeling.patches import patchify, unpatchify
from modeling.st_transformer import STTransformer, TemporalKVCache
from modeling.vq import VectorQuantizer


class VideoTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        h, w = cfg.token_grid
        patch_dim = 3 * p * p
        self.enc_in = nn.Linear(patch_dim, cfg.enc_dim)
        self.enc_pos = nn.Parameter(torch.randn(h * w, cfg.enc_dim) * 0.02)
        self.encoder = STTransformer(cfg.enc_dim, cfg.enc_heads, cfg.enc_layers, cfg.mlp_ratio, causal=True)
        self.to_latent = nn.Linear(cfg.enc_dim, cfg.latent_dim)
        self.vq = VectorQuantizer(cfg.codebook_size, cfg.latent_dim, cfg.commitment_weight, cfg.normalize_codes,
                                  cfg.dead_code_threshold, cfg.usage_decay)
        self.dec_in = nn.Linear(cfg.latent_dim, cfg.dec_dim)
        self.dec_pos = nn.Parameter(torch.randn(h * w, cfg.dec_dim) * 0.02)
        self.decoder = STTransformer(cfg.dec_dim, cfg.dec_heads, cfg.dec_layers, cfg.mlp_ratio, causal=True)
        self.to_pixels = nn.Linear(cfg.dec_dim, patch_dim)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.cfg.token_grid

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    def _check(self, video: torch.Tensor) -> None:
        expected = (3, self.cfg.frame_height, self.cfg.frame_width)
        if video.ndim != 5 or tuple(video.shape[2:]) != expected:
            raise ValueError(f"expected video (B, T, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(video.shape)}")

    def _latents(self, video: torch.Tensor) -> torch.Tensor:
        self._check(video)
        x = self.enc_in(patchify(video * 2 - 1, self.cfg.patch_size)) + self.enc_pos
        return self.to_latent(self.encoder(x))  # (B, T, h*w, latent_dim)

    def _decode_latents(self, z: torch.Tensor, window: int | None = None) -> torch.Tensor:
        return self._to_frames(self.decoder(self.dec_in(z) + self.dec_pos, window=window))

    def _to_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder outputs (B, T, h*w, D) -> frames (B, T, 3, H, W) in [0, 1]."""
        return torch.sigmoid(unpatchify(self.to_pixels(x), self.cfg.patch_size, self.cfg.frame_height,
                                        self.cfg.frame_width))

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """video float (B, T, 3, H, W) in [0, 1] -> recon, tokens (B, T, h, w), loss and VQ statistics."""
        vq = self.vq(self._latents(video))
        recon = self._decode_latents(vq["quantized"])
        recon_loss = F.mse_loss(recon.float(), video.float())
        b, t = video.shape[:2]
        return {
            "recon": recon,
            "tokens": vq["indices"].view(b, t, *self.token_grid),
            "loss": recon_loss + vq["loss"],
            "recon_loss": recon_loss.detach(),
            "vq_loss": vq["loss"].detach(),
            "perplexity": vq["perplexity"],
            "codes_used": vq["codes_used"],
        }

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) in [0, 1] -> tokens long (B, T, h, w)."""
        was_training = self.vq.training
        self.vq.eval()  # inference calls must not move the code-usage statistics
        try:
            indices = self.vq(self._latents(video))["indices"]
        finally:
            self.vq.train(was_training)
        return indices.view(video.shape[0], video.shape[1], *self.token_grid)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """tokens long (B, T, h, w) -> video (B, T, 3, H, W) in [0, 1]; ``window`` bands temporal attention."""
        b, t, h, w = tokens.shape
        return self._decode_latents(self.vq.lookup(tokens.reshape(b, t, h * w)), window)

    # --- inference: one frame at a time against a temporal KV cache (see modeling.st_transformer) ------------

    def new_decode_cache(self, context: str = "window") -> TemporalKVCache:
        return TemporalKVCache(max_frames=self.cfg.num_frames, context=context)

    def _decoder_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens long (B, L, h, w) -> decoder inputs (B, L, h*w, D)."""
        b, t, h, w = tokens.shape
        return self.dec_in(self.vq.lookup(tokens.reshape(b, t, h * w))) + self.dec_pos

    @torch.no_grad()
    def decode_step(self, frame_tokens: torch.Tensor, cache: TemporalKVCache) -> torch.Tensor:
        """Decode one new frame's tokens (B, h, w) against ``cache``, then commit it; frame (B, 3, H, W)."""
        y, kvs = self.decoder.step(self._decoder_input(frame_tokens[:, None])[:, 0], cache)
        reencode = cache.reencode_on_commit
        kept = cache.push_frame(frame_tokens)
        if not reencode:
            cache.append(kvs)
        elif kept:
            self.decoder.prefill(self._decoder_input(torch.stack(kept, 1)), cache)
        return self._to_frames(y[:, None])[:, 0]
