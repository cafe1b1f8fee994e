"""The behaviour-cloning policy: a small CNN from the last two frames to a distribution over actions.

The same network is trained twice (the paper's comparison): on the LAM's latent labels (``target="latent"``,
as many outputs as the LAM has codes) and on the true actions (``target="action"``, Procgen's 15: the oracle).
Two frames rather than one let the policy see velocity (a jump in progress), which one 64x64 frame hides.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from modeling.bc.transitions import Transitions

NUM_REAL_ACTIONS = 15  # Procgen's action space
TARGETS = ("latent", "action")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    target: str = "latent"  # latent: LAM labels; action: true actions (the oracle)
    channels: int = 32  # width of the conv stack
    hidden: int = 128  # width of the head
    epochs: int = 3  # passes over the expert transitions
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


class CNNPolicy(nn.Module):
    def __init__(self, num_outputs: int, channels: int = 32, hidden: int = 128):
        super().__init__()
        c = channels
        self.convs = nn.Sequential(  # 64x64 -> 8x8
            nn.Conv2d(6, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c, c, 4, 2, 1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
        self.num_outputs = num_outputs

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, 2, H, W, 3) -> logits (B, num_outputs)."""
        x = frames.permute(0, 1, 4, 2, 3).flatten(1, 2).float().div(255.0)
        return self.head(self.convs(x))


def train_policy(data: Transitions, config: PolicyConfig, num_outputs: int, log=print) -> CNNPolicy:
    if config.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {config.target!r}")
    targets = data.latents if config.target == "latent" else data.actions
    if targets is None:
        raise ValueError("latent targets need labels (python -m modeling bc label)")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    policy = CNNPolicy(num_outputs, config.channels, config.hidden)
    policy(torch.from_numpy(data.frames[:1]))  # materialise the lazy layer before the optimiser sees it
    optimiser = torch.optim.Adam(policy.parameters(), lr=config.lr)
    frames, targets = torch.from_numpy(data.frames), torch.from_numpy(targets)
    for epoch in range(config.epochs):
        order = torch.from_numpy(rng.permutation(len(frames)))
        losses, correct = [], 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            logits = policy(frames[idx])
            loss = F.cross_entropy(logits, targets[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == targets[idx]).sum())
        log(f"bc train: {config.target} seed {config.seed} epoch {epoch + 1}/{config.epochs}: "
            f"loss {np.mean(losses):.3f}, train accuracy {correct / len(order):.3f}")
    return policy.eval()


def save_policy(policy: CNNPolicy, config: PolicyConfig, path: str | Path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(policy.state_dict(), path / "policy.pt")
    (path / "policy.json").write_text(json.dumps({"config": dataclasses.asdict(config),
                                                  "num_outputs": policy.num_outputs}))

