"""Vector quantisation with a straight-through estimator (van den Oord et al. 2017), for Genie's tokenizer and LAM.

- ``normalize=True``: cosine-similarity VQ (as Jafar/Jasmine): codes lie on the unit sphere, so none can drift
  away from the data and die.
- Dead-code reset, the guard against the LAM collapsing to one or two actions: a code whose EMA share of
  assignments falls below ``dead_code_threshold`` / num_codes is re-initialised to the batch latent worst served.
- ``bank_size > 0`` (a tiny codebook, the LAM's; as LAPA/LAQ): ``warmup_steps`` pass latents through unquantised,
  then k-means on a ring buffer of recent latents sets the codebook; a dead code is re-seeded by k-means over the
  last batch only, live codes fixed (older latents come from an encoder that has moved on:
  docs/measurements/2026-12-06-lam-cpu.md).
Every choice is deterministic (no RNG), so exact resume holds; under DDP rank 0's codebook is broadcast.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class VectorQuantizer(nn.Module):
    def __init__(self, num_codes: int, dim: int, commitment_weight: float = 0.25, normalize: bool = True,
                 dead_code_threshold: float = 1e-3, usage_decay: float = 0.99, bank_size: int = 0,
                 warmup_steps: int = 0):
        super().__init__()
        if warmup_steps and not bank_size:
            raise ValueError("a VQ warm-up needs a latent bank (bank_size > 0) to initialise the codebook from")
        self.num_codes, self.dim = num_codes, dim
        self.commitment_weight = commitment_weight
        self.normalize = normalize
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight)
        # EMA of the share of assignments each code gets; starts uniform so no code is dead before it was tried.
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))
        self.bank_size, self.warmup_steps = bank_size, warmup_steps
        if bank_size:  # only then: the tokenizer's state dict (and its checkpoints) keep their keys
            self.register_buffer("bank", torch.zeros(bank_size, dim))
            self.register_buffer("bank_filled", torch.tensor(0, dtype=torch.long))  # latents ever pushed
            self.register_buffer("updates", torch.tensor(0, dtype=torch.long))  # training forwards so far

    @property
    def warming_up(self) -> bool:
        """True while training forwards still bypass the codebook (the continuous warm-up)."""
        return self.bank_size > 0 and int(self.updates) < self.warmup_steps

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
        warming = False
        if self.training and self.bank_size and flat.device.type != "meta":  # meta: FLOP counting, no values
            if self.warmup_steps and int(self.updates) == self.warmup_steps:
                self.init_codebook()  # the first quantised step: codes from k-means on the warm-up's latents
            warming = self.warming_up
            self._push(flat.detach())
            self.updates += 1
        codes = self.codes().float()
        dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        indices = dist2.argmin(dim=1)
        q = codes[indices]
        codebook_loss = F.mse_loss(q, flat.detach())
        commitment_loss = F.mse_loss(flat, q.detach())
        quantized = flat + (q - flat).detach()  # straight-through: gradients pass to the encoder unchanged
        if warming:  # continuous: the decoder gets the latent itself; the random codebook pulls on nothing
            quantized, codebook_loss, commitment_loss = flat, flat.sum() * 0, flat.sum() * 0
        if self.training and not warming:
            with torch.no_grad():
                self._last_latents = flat.detach()
                self._last_error = dist2.gather(1, indices[:, None]).squeeze(1).detach()
        return {
            "quantized": quantized.view(z.shape).to(z.dtype),
            "indices": indices.view(z.shape[:-1]),
            "loss": codebook_loss + self.commitment_weight * commitment_loss,
            **self._count(indices, update=self.training and not warming),
        }

    def record(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Count codes chosen outside ``forward`` (a LAM that picks each code by fit): usage EMA and stats; a
        code left dead is then re-seeded by ``reset_dead_codes`` as a copy of the busiest code, nudged."""
        if self.training:
            self._split_dead = True
        return self._count(indices.reshape(-1), update=self.training)

    def _count(self, indices: torch.Tensor, update: bool) -> dict[str, torch.Tensor]:
        """Perplexity and codes used of flat ``indices``; with ``update``, the usage EMA moves (counts summed
        over ranks under DDP)."""
        counts = torch.zeros(self.num_codes, device=indices.device).scatter_add_(  # works on meta, as bincount does not
            0, indices, torch.ones(indices.shape, device=indices.device))
        if update:
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(counts)
            with torch.no_grad():
                self.usage.mul_(self.usage_decay).add_(counts / counts.sum().clamp(min=1), alpha=1 - self.usage_decay)
        probs = counts / counts.sum().clamp(min=1)
        return {"perplexity": torch.exp(-(probs * probs.clamp(min=1e-10).log()).sum()),
                "codes_used": (counts > 0).sum()}

    @torch.no_grad()
    def reset_dead_codes(self, live: int | None = None) -> torch.Tensor:
        """Re-initialise dead codes (k-means over the bank when there is one, else the last training batch's
        worst-quantised latents; codes chosen by fit: split from the busiest) unless the warm-up is still on;
        returns their indices
        (long, possibly empty): a model keyed on these indices (the dynamics model's action table) must forget
        what it learned for them (``modeling.train``)."""
        if getattr(self, "_split_dead", False):  # only the first ``live`` codes are chosen from (a pruned LAM's)
            live = live or self.num_codes
            dead = (self.usage[:live] < self.dead_code_threshold / live).nonzero().squeeze(1)
            if dead.numel():
                busiest = int(self.usage[:live].argmax())
                gen = torch.Generator().manual_seed(int(self.usage.numel() * 1000 + dead.sum()))
                noise = torch.randn(dead.numel(), self.dim, generator=gen).to(self.codebook.weight)
                w = self.codebook.weight
                self.codebook.weight[dead] = w[busiest] + 0.1 * w[busiest].norm() / self.dim ** 0.5 * noise
                self.usage[dead] = self.usage[busiest] = self.usage[busiest] / (dead.numel() + 1)
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(self.codebook.weight.data, src=0)
                dist.broadcast(self.usage, src=0)
            return dead
        if not hasattr(self, "_last_latents") or self.warming_up:
            return torch.zeros(0, dtype=torch.long, device=self.usage.device)
        dead = (self.usage < self.dead_code_threshold / self.num_codes).nonzero().squeeze(1)
        if dead.numel() and self.bank_size and self._last_latents.shape[0] >= self.num_codes:
            live = torch.ones(self.num_codes, dtype=torch.bool, device=dead.device)
            live[dead] = False
            centers = self._kmeans(self._last_latents, self.codes().detach().float(), live)
            self.codebook.weight[dead] = centers[dead].to(self.codebook.weight.dtype)
            self.usage[dead] = 1.0 / self.num_codes
        elif dead.numel():
            order = self._last_error.argsort(descending=True)
            picks = order[torch.arange(dead.numel(), device=order.device) % order.numel()]
            self.codebook.weight[dead] = self._last_latents[picks].to(self.codebook.weight.dtype)
            self.usage[dead] = 1.0 / self.num_codes
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebook.weight.data, src=0)
            dist.broadcast(self.usage, src=0)
        return dead

    @torch.no_grad()
    def init_codebook(self) -> None:
        """Every code from k-means on the bank (the end of the warm-up); usage starts uniform again."""
        if int(self.bank_filled) >= self.num_codes:
            bank = self.bank[:min(int(self.bank_filled), self.bank_size)].float()
            self.codebook.weight.copy_(self._kmeans(bank, self.codes().detach().float(),
                                                    torch.zeros(self.num_codes, dtype=torch.bool)))
        self.usage.fill_(1.0 / self.num_codes)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebook.weight.data, src=0)

    @torch.no_grad()
    def _push(self, latents: torch.Tensor) -> None:
        """Add latents to the ring buffer (the newest ``bank_size`` are kept)."""
        latents = latents[-self.bank_size:]
        start = int(self.bank_filled) % self.bank_size
        rows = (torch.arange(latents.shape[0], device=latents.device) + start) % self.bank_size
        self.bank[rows] = latents.to(self.bank.dtype)
        self.bank_filled += latents.shape[0]

    def _kmeans(self, data: torch.Tensor, centers: torch.Tensor, fixed: torch.Tensor, iters: int = 20
                ) -> torch.Tensor:
        """Lloyd's k-means over ``data`` (N, dim) from ``centers`` (k, dim); rows where ``fixed`` stay put. Free centers
        start at k-means++ picks (drawn with the squared distance to the centers placed so far, so mostly from
        dense regions the placed centers serve badly, seldom an outlier), seeded by the bank's fill count:
        deterministic, and exact on resume. On the unit sphere (cosine VQ) means are re-normalised."""
        centers, fixed = centers.clone(), fixed.to(centers.device)
        placed = fixed.clone()
        gen = torch.Generator().manual_seed(int(self.bank_filled))
        for i in (~placed).nonzero().squeeze(1).tolist():
            if placed.any():
                weight = torch.cdist(data, centers[placed]).min(1).values.pow(2).cpu() + 1e-12
            else:
                weight = torch.ones(data.shape[0])
            centers[i] = data[int(torch.multinomial(weight, 1, generator=gen))]
            placed[i] = True
        for _ in range(iters):
            assign = torch.cdist(data, centers).argmin(1)
            sums = torch.zeros_like(centers).index_add_(0, assign, data)
            counts = torch.bincount(assign, minlength=centers.shape[0]).to(data.dtype)
            means = sums / counts.clamp(min=1)[:, None]
            if self.normalize:
                means = F.normalize(means, dim=-1)
            move = (counts > 0) & ~fixed
            centers[move] = means[move]
        return centers

    def usage_fraction(self) -> float:
        """Share of codes whose EMA usage is above the dead threshold (1.0 = no dead code)."""
        return float((self.usage >= self.dead_code_threshold / self.num_codes).float().mean())
