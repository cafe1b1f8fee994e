"""The one numeric precision policy of a run: every forward pass of training, token extraction, evaluation and
generation runs under ``autocast(cfg.precision, device)``.

Why one policy: the tokens and latent actions are argmins (VQ) and argmaxes, so a change of precision flips
some of them (docs/modeling.md gives the measured share). If training encoded under bf16
and evaluation under fp32, the dynamics model would be evaluated on inputs it never saw. The policy is
``GenieConfig.precision``, saved in every run's config.json and checkpoint, and applies on every device (CPU
autocast supports bf16 too), so a GPU-trained run evaluated on a CPU still sees its training precision.
"""

from __future__ import annotations

import contextlib

import torch

from modeling.configs import PRECISIONS


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``"bf16"``; nothing for ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    if precision == "fp32" or device_type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)
