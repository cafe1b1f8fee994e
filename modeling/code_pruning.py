"""Pruning a best-fit LAM's codebook to its action count (``lam.train_codes`` -> ``lam.num_actions``).

A best-fit LAM (``lam.code_choice = "best_fit"``) is hard EM over K forward models, and, as in k-means, a few
codes trained from the start settle in poorer optima than many codes merged later. So it can train
``lam.train_codes`` codes and, at step ``lam.prune_at``, keep the ``lam.num_actions`` whose loss is least missed:
greedy backward elimination on the per-transition training errors of the latest steps (each round drops the code
whose transitions cost least when they move to their next best code). Fewer, broader codes say what the action
does without splitting one action over several codes; the action vocabulary a player chooses from is then small.

Cost: the errors of the last ``PRUNE_SAMPLE`` transitions (K floats each) kept in the model; the choice itself
K^2 passes over them, once. Under DDP each round's costs are summed over ranks, so every rank keeps the same codes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

PRUNE_SAMPLE = 8192  # latest transitions whose per-code errors choose the codes kept


def prune_by_fit(errors: torch.Tensor, keep: int) -> torch.Tensor:
    """errors (N, K): each transition's training error under each code -> the ``keep`` codes (long, ascending)
    left by greedy backward elimination, each round dropping the code whose removal raises the total error of
    the best fits least (every transition served by its best remaining code)."""
    if not 0 < keep <= errors.shape[1]:
        raise ValueError(f"keep must be between 1 and the number of codes ({errors.shape[1]}), got {keep}")
    errors = errors.double()
    live = list(range(errors.shape[1]))
    while len(live) > keep:
        cost = torch.stack([errors[:, [c for c in live if c != drop]].min(1).values.sum() for drop in live])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(cost)
        live.pop(int(cost.argmin()))
    return torch.tensor(live, dtype=torch.long)


class FitErrors:
    """A ring buffer (inside a module's persistent buffer, so exact resume keeps it) of the latest transitions'
    per-code errors."""

    def __init__(self, buffer: torch.Tensor, seen: torch.Tensor):
        self.buffer, self.seen = buffer, seen

    @torch.no_grad()
    def push(self, errors: torch.Tensor) -> None:
        """errors (..., K): appended; the oldest beyond the buffer's length are dropped."""
        rows = errors.reshape(-1, errors.shape[-1])[-self.buffer.shape[0]:]
        start = int(self.seen) % self.buffer.shape[0]
        at = (torch.arange(rows.shape[0], device=rows.device) + start) % self.buffer.shape[0]
        self.buffer[at] = rows.to(self.buffer.dtype)
        self.seen += rows.shape[0]

    def filled(self) -> torch.Tensor:
        return self.buffer[:min(int(self.seen), self.buffer.shape[0])]
