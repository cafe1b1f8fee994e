"""Latent action model (LAM): learns a tiny discrete action vocabulary from video alone.

Genie (Bruce et al. 2024), Section 2.1 and Appendix C.2. The encoder sees frames x_1..x_{t+1} (pixels, patch 16)
and emits a continuous latent action per transition; a VQ with a tiny codebook (8 codes; 6 for CoinRun)
discretises it; the decoder must predict x_{t+1} from x_1..x_t and that action. Because the decoder sees only
the past plus a few bits, the bits must say what changed: the controllable part of the transition.

Implementation notes:
- The encoder is a causal ST-transformer; each frame gets an extra learned "action query" token in its spatial
  sequence (like a CLS token). Its output at frame t+1 (which has seen x_1..x_{t+1}) is the latent action of
  transition t -> t+1.
- The decoder embeds x_1..x_{T-1}, ADDS the action embedding of transition t to frame t's patches (the paper's
  additive conditioning) and predicts frame t+1 through a sigmoid (inputs and outputs in [0, 1]).
- Against collapse to one action: cosine VQ + dead-code reset (``modeling.vq``), latents standardised with running
  statistics (``RunningStandardize``), and code usage / perplexity returned every step so the trainer logs them.
- An example's action depends on that example alone, in training as at inference: the standardisation uses
  running statistics, never the statistics of the current batch, so the action the dynamics model is trained on
  is the one ``infer_actions`` gives for the same clip (tests/modeling/test_lam.py checks both).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from modeling.configs import LAMConfig
from modeling.patches import patchify, unpatchify
from modeling.st_transformer import STTransformer
from modeling.vq import VectorQuantizer


class RunningStandardize(nn.Module):
    """Standardise vectors with running (EMA) mean and variance, in training and inference alike.

    BatchNorm would standardise with the current batch's statistics in training: an example's latent action then
    depends on its batch mates, and differs from the one inferred at inference (running statistics). Here the
    statistics in use are the running ones, updated only AFTER the batch is standardised (the first training
    batch initialises them), so each example's output depends on itself and the model state alone. The
    anti-collapse effect is kept: when the encoder's outputs are nearly identical the running variance is tiny,
    and dividing by it spreads the latents apart so the VQ still tells them apart.

    Buffer names are BatchNorm1d's, so checkpoints of the earlier BatchNorm LAM load unchanged.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, dim) -> standardised x (N, dim), float32."""
        y = (x.float() - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
        if self.training:
            self._update(x.detach().float())
        return y

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        moments = torch.stack([x.mean(0), x.pow(2).mean(0)])
        count = torch.tensor(float(x.shape[0]), device=x.device)
        if dist.is_available() and dist.is_initialized():  # every rank keeps the same statistics
            moments = moments * count
            dist.all_reduce(moments)
            dist.all_reduce(count)
            moments = moments / count
        mean, var = moments[0], (moments[1] - moments[0].pow(2)).clamp(min=0)
        # The first batch sets the statistics; a tensor, not a Python branch, so no host sync (and meta works).
        m = torch.where(self.num_batches_tracked == 0, 1.0, self.momentum).to(mean.dtype)
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)
        self.num_batches_tracked += 1


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        h, w = cfg.token_grid
        patch_dim = 3 * p * p
        self.enc_in = nn.Linear(patch_dim, cfg.enc_dim)
        self.enc_pos = nn.Parameter(torch.randn(h * w, cfg.enc_dim) * 0.02)
        self.action_query = nn.Parameter(torch.randn(cfg.enc_dim) * 0.02)
        self.encoder = STTransformer(cfg.enc_dim, cfg.enc_heads, cfg.enc_layers, cfg.mlp_ratio, causal=True)
        self.to_latent = nn.Linear(cfg.enc_dim, cfg.latent_dim)
        # Standardised latents stay spread out even when the encoder's outputs are nearly identical (the start
        # of the usual collapse), so the VQ still tells transitions apart.
        self.latent_norm = RunningStandardize(cfg.latent_dim) if cfg.batchnorm_latents else None
        self.vq = VectorQuantizer(cfg.num_actions, cfg.latent_dim, cfg.commitment_weight, cfg.normalize_codes,
                                  cfg.dead_code_threshold, cfg.usage_decay)
        self.dec_in = nn.Linear(patch_dim, cfg.dec_dim)
        self.dec_pos = nn.Parameter(torch.randn(h * w, cfg.dec_dim) * 0.02)
        self.action_in = nn.Linear(cfg.latent_dim, cfg.dec_dim)
        self.decoder = STTransformer(cfg.dec_dim, cfg.dec_heads, cfg.dec_layers, cfg.mlp_ratio, causal=True)
        self.to_pixels = nn.Linear(cfg.dec_dim, patch_dim)

    @property
    def num_actions(self) -> int:
        return self.cfg.num_actions

    def _encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        expected = (3, self.cfg.frame_height, self.cfg.frame_width)
        if video.ndim != 5 or tuple(video.shape[2:]) != expected or video.shape[1] < 2:
            raise ValueError(f"expected video (B, T>=2, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(video.shape)}")
        b, t = video.shape[:2]
        x = self.enc_in(patchify(video * 2 - 1, self.cfg.patch_size)) + self.enc_pos
        x = torch.cat([self.action_query.expand(b, t, 1, -1), x], dim=2)
        latent = self.to_latent(self.encoder(x)[:, 1:, 0])  # outputs at frames 2..T: one per transition
        if self.latent_norm is not None:
            latent = self.latent_norm(latent.flatten(0, 1)).view(latent.shape).to(latent.dtype)
        out = self.vq(latent)
        out["latent"] = latent
        return out

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """video (B, T, 3, H, W) in [0, 1] -> pred (B, T-1, 3, H, W) of frames 2..T, actions (B, T-1), loss."""
        vq = self._encode(video)
        pred = self.decode(video[:, :-1], vq["quantized"])
        recon_loss = F.mse_loss(pred.float(), video[:, 1:].float())
        return {
            "pred": pred,
            "actions": vq["indices"],
            "loss": recon_loss + vq["loss"],
            "recon_loss": recon_loss.detach(),
            "vq_loss": vq["loss"].detach(),
            "perplexity": vq["perplexity"],
            "codes_used": vq["codes_used"],
        }

    def decode(self, past: torch.Tensor, action_latents: torch.Tensor) -> torch.Tensor:
        """Predict frames 2..T from frames past (B, T-1, 3, H, W) and action vectors (B, T-1, latent_dim)."""
        x = self.dec_in(patchify(past * 2 - 1, self.cfg.patch_size)) + self.dec_pos
        x = x + self.action_in(action_latents)[:, :, None, :]
        patches = self.to_pixels(self.decoder(x))
        return torch.sigmoid(unpatchify(patches, self.cfg.patch_size, self.cfg.frame_height, self.cfg.frame_width))

    @torch.no_grad()
    def infer_clip_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, L, 3, H, W) of any length L >= 2 -> actions long (B, L-1).

        The LAM sees windows of at most its trained T frames, consecutive windows sharing one frame, so every
        transition is inferred in-distribution (a longer window would put the encoder's causal attention where
        it was never trained).
        """
        length, window = video.shape[1], self.cfg.num_frames
        parts, start = [], 0
        while start < length - 1:
            parts.append(self.infer_actions(video[:, start:start + window]))
            start += window - 1
        return torch.cat(parts, 1) if parts else self.infer_actions(video)

    @torch.no_grad()
    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> actions long (B, T-1); action t is the transition x_t -> x_{t+1}."""
        was_training = self.training
        self.eval()  # no side effects: neither code usage nor the running statistics move (same actions)
        try:
            return self._encode(video)["indices"]
        finally:
            self.train(was_training)
