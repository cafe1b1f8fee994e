"""MaskGIT sampling of one frame's tokens (Chang et al. 2022), as Genie generates every frame.

Genie (Bruce et al. 2024), Section 2.2: each new frame starts fully masked; at each of ``steps`` iterations
(paper: 25) the dynamics model predicts every masked token, a candidate is sampled per token (temperature 1.0 for
CoinRun, 2.0 for Platformers: ``GenieConfig.sampling`` of each preset; 0 means greedy), and the most confident candidates are kept while the rest are
masked again, following a schedule of how many stay masked (MaskGIT's cosine schedule by default).

Sampling noise comes only from the ``torch.Generator`` passed in (Gumbel-max sampling), so a seed fixes the
result and the cached and uncached inference paths consume exactly the same random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from modeling.configs import SCHEDULE_NAMES, SamplingConfig

SCHEDULES: dict[str, Callable[[float], float]] = {
    # fraction of the frame's tokens still masked after a fraction r of the steps
    "cosine": lambda r: math.cos(math.pi / 2 * r),
    "linear": lambda r: 1.0 - r,
    "square": lambda r: 1.0 - r * r,
}
assert tuple(SCHEDULES) == SCHEDULE_NAMES  # SamplingConfig (modeling.configs) validates against the names

__all__ = ["SCHEDULES", "SamplingConfig", "masked_counts", "sample_frame"]


def masked_counts(num_tokens: int, cfg: SamplingConfig) -> list[int]:
    """Tokens still masked after each step: follows the schedule, strictly decreasing, 0 after the last step."""
    counts, remaining = [], num_tokens
    for i in range(cfg.steps):
        target = 0 if i == cfg.steps - 1 else math.floor(num_tokens * SCHEDULES[cfg.schedule]((i + 1) / cfg.steps))
        remaining = max(0, min(target, remaining - 1))  # every step commits at least one token
        counts.append(remaining)
    return counts


def _gumbel(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return -torch.log(-torch.log(u.clamp_(1e-20, 1.0 - 1e-7)))


def sample_frame(logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch: int,
                 grid: tuple[int, int], cfg: SamplingConfig, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Tokens long (B, h, w) of one new frame.

    ``logits_fn(tokens (B, h, w), mask (B, h, w) bool) -> logits (B, h, w, V)`` runs the dynamics model on the
    frame's current tokens with ``mask`` marking the ones still to predict (their token values are ignored).
    """
    device = torch.device(device)
    h, w = grid
    n = h * w
    tokens = torch.zeros(batch, n, dtype=torch.long, device=device)
    mask = torch.ones(batch, n, dtype=torch.bool, device=device)
    for remaining in masked_counts(n, cfg):
        logits = logits_fn(tokens.view(batch, h, w), mask.view(batch, h, w)).reshape(batch, n, -1).float()
        noise = _gumbel(logits.shape, generator, device)  # drawn every step, whatever the temperature
        candidates = logits.argmax(-1) if cfg.temperature == 0 else (logits / cfg.temperature + noise).argmax(-1)
        confidence = torch.log_softmax(logits, -1).gather(-1, candidates[..., None])[..., 0]
        confidence = torch.where(mask, confidence, torch.inf)  # committed tokens are never re-masked
        tokens = torch.where(mask, candidates, tokens)
        # The `remaining` least confident of this step's candidates stay masked (stable order on ties).
        order = torch.argsort(confidence, dim=-1, stable=True)
        mask = torch.zeros_like(mask).scatter_(1, order[:, :remaining], True)
    return tokens.view(batch, h, w)
