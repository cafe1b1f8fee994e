"""Vector quantisation with a straight-through estimator (van den Oord et al. 2017), as used by Genie's
tokenizer and latent action model.

Choices, and why:
- ``normalize=True`` l2-normalises latents and codes (cosine-similarity VQ, as the Jafar/Jasmine Genie
  reimplementations do): every code lies on the unit sphere, so no code can drift far away from the data and die.
- Dead-code reset on top: per-code usage is tracked as an EMA of the share of assignments each code gets;
  ``reset_dead_codes`` re-initialises codes whose share fell below ``dead_code_threshold`` times the uniform
  share (1/num_codes; scale-free, whatever the batch size) to the batch latents that are WORST served by the
  current codebook (largest quantisation error). The choice is deterministic (no RNG), so exact resume holds,
  and under DDP rank 0's codebook is broadcast so all ranks stay identical. This is the guard against the
  well-known LAM collapse to one or two actions.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class VectorQuantizer(nn.Module):
    def __init__(self, num_codes: int, dim: int, commitment_weight: float = 0.25, normalize: bool = True,
                 dead_code_threshold: float = 1e-3, usage_decay: float = 0.99):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.commitment_weight = commitment_weight
        self.normalize = normalize
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight)
        # EMA of the share of assignments each code gets; starts uniform so no code is dead before it was tried.
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))

    def codes(self) -> torch.Tensor:
        w = self.codebook.weight
        return F.normalize(w, dim=-1) if self.normalize else w

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for integer indices (any shape) -> (..., dim)."""
        return F.embedding(indices, self.codes())

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """z (..., dim) -> quantised (same shape, straight-through gradients), indices (...), loss, stats."""
        if z.device.type not in ("cuda", "cpu"):  # e.g. the meta device (FLOP counting): no autocast there
            return self._quantize(z)
        with torch.autocast(device_type=z.device.type, enabled=False):  # distances in fp32, never bf16
            return self._quantize(z)

    def _quantize(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = z.reshape(-1, self.dim).float()
        if self.normalize:
            flat = F.normalize(flat, dim=-1)
        codes = self.codes().float()
        dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        indices = dist2.argmin(dim=1)
        q = codes[indices]
        codebook_loss = F.mse_loss(q, flat.detach())
        commitment_loss = F.mse_loss(flat, q.detach())
        quantized = flat + (q - flat).detach()  # straight-through: gradients pass to the encoder unchanged
        counts = torch.zeros(self.num_codes, device=z.device).scatter_add_(0, indices, torch.ones_like(flat[:, 0]))
        if self.training:
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(counts)
            with torch.no_grad():
                share = counts / counts.sum().clamp(min=1)
                self.usage.mul_(self.usage_decay).add_(share, alpha=1 - self.usage_decay)
                self._last_latents = flat.detach()
                self._last_error = dist2.gather(1, indices[:, None]).squeeze(1).detach()
        probs = counts / counts.sum().clamp(min=1)
        perplexity = torch.exp(-(probs * probs.clamp(min=1e-10).log()).sum())
        return {
            "quantized": quantized.view(z.shape).to(z.dtype),
            "indices": indices.view(z.shape[:-1]),
            "loss": codebook_loss + self.commitment_weight * commitment_loss,
            "perplexity": perplexity,
            "codes_used": (counts > 0).sum(),
        }

    @torch.no_grad()
    def reset_dead_codes(self) -> torch.Tensor:
        """Re-initialise dead codes from the last training batch's worst-quantised latents; returns their indices
        (long, possibly empty): a model keyed on these indices (the dynamics model's action table) must forget
        what it learned for them (``modeling.train``)."""
        if not hasattr(self, "_last_latents"):
            return torch.zeros(0, dtype=torch.long, device=self.usage.device)
        dead = (self.usage < self.dead_code_threshold / self.num_codes).nonzero().squeeze(1)
        if dead.numel():
            order = self._last_error.argsort(descending=True)
            picks = order[torch.arange(dead.numel(), device=order.device) % order.numel()]
            self.codebook.weight[dead] = self._last_latents[picks].to(self.codebook.weight.dtype)
            self.usage[dead] = 1.0 / self.num_codes
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebook.weight.data, src=0)
            dist.broadcast(self.usage, src=0)
        return dead

    def usage_fraction(self) -> float:
        """Share of codes whose EMA usage is above the dead threshold (1.0 = no dead code)."""
        return float((self.usage >= self.dead_code_threshold / self.num_codes).float().mean())
