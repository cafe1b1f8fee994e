"""The action-necessity check: does the LAM's decoder need the code it is given?

A decoder that predicts x_{t+1} as well from a constant code as from the inferred one has collapsed, whatever
the code usage says. On one batch, the decoder's PSNR of frames 2..T with the ``inferred`` codes, the best
``constant`` code, the ``true`` actions (where the shards carry them, each mapped to the code that serves it
best) and the ``continuous`` latent. ``gap_db`` (inferred - constant) is what the code is worth, ``true_gap_db``
(true - constant) what the action is worth to this decoder. ``after_step`` runs it every ``lam.check_every``
steps, appends to ``RUN/lam_check.jsonl`` and warns when ``gap_db`` stays under ``GAP_WARN_DB`` after the VQ
warm-up; ``benchmarks/lam_probe.py`` runs it on held-out clips.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from modeling.lam import LatentActionModel

GAP_WARN_DB = 0.1  # a code worth less than this is not carrying the action
WARN_AFTER_CHECKS = 2  # consecutive checks under it (after the warm-up) before the warning


def _psnr(mse: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max(float(mse), 1e-10))


@torch.no_grad()
def action_necessity(lam: LatentActionModel, video: torch.Tensor, actions: torch.Tensor | None = None
                     ) -> dict[str, float]:
    """video (B, T, 3, H, W) in [0, 1]; actions (B, T) long, ``actions[:, k]`` taken after frame k (-1: unknown)
    -> PSNRs (dB) of the decoder with the inferred, best constant, true-action and continuous codes, and gaps."""
    was_training = lam.training
    lam.eval()  # no side effects: running statistics, code usage and the latent bank stay as they are
    try:
        enc = lam.choose(video)
        past, target = video[:, :-1], video[:, 1:].float()
        codes = lam.codes().to(enc["quantized"].dtype)
        shape = enc["indices"].shape

        def per_transition(latents: torch.Tensor) -> torch.Tensor:  # (B, T-1) MSE
            return (lam.decode(past, latents).float() - target).pow(2).mean(dim=(2, 3, 4))

        inferred = per_transition(enc["quantized"])
        per_code = torch.stack([per_transition(codes[k].expand(*shape, -1)) for k in range(codes.shape[0])], -1)
        constant = per_code.mean(dim=(0, 1)).min()
        latent = F.normalize(enc["latent"], dim=-1) if lam.vq.normalize else enc["latent"]
        out = {"psnr_inferred": _psnr(inferred.mean()), "psnr_constant": _psnr(constant),
               "psnr_continuous": _psnr(per_transition(latent.to(codes.dtype)).mean()),
               "codes_used": float(enc["indices"].unique().numel())}
        out["gap_db"] = out["psnr_inferred"] - out["psnr_constant"]
        if actions is not None:
            truth = actions[:, :shape[1]].to(enc["indices"].device)
            if (truth >= 0).all():
                mapping = torch.zeros(int(truth.max()) + 1, dtype=torch.long, device=truth.device)
                for a in truth.unique():
                    mapping[a] = per_code[truth == a].mean(0).argmin()
                out["psnr_true"] = _psnr(per_transition(codes[mapping[truth]]).mean())
                out["true_gap_db"] = out["psnr_true"] - out["psnr_constant"]
        return out
    finally:
        lam.train(was_training)


def after_step(objective: Any, result: dict[str, Any], inputs: dict[str, torch.Tensor], step: int, out: Path,
               log: Callable[[str], None] = print) -> dict[str, float] | None:
    """The trainer's hook: every ``lam.check_every`` steps, the check on this step's batch (lam and lam-dynamics
    phases; nothing for the others). Returns the line written, or None."""
    lam = getattr(objective, "lam", None)
    if not isinstance(lam, LatentActionModel) or not lam.cfg.check_every or step % lam.cfg.check_every:
        return None
    row = action_necessity(lam, result["video"], inputs.get("actions"))
    row.update(step=step, warming_up=float(lam.vq.warming_up))
    with open(Path(out) / "lam_check.jsonl", "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    true = f", true action {row['psnr_true']:.2f} dB ({row['true_gap_db']:+.2f})" if "psnr_true" in row else ""
    log(f"lam check step {step}: decoder PSNR with inferred code {row['psnr_inferred']:.2f} dB, best constant "
        f"{row['psnr_constant']:.2f} dB (gap {row['gap_db']:+.2f}){true}, continuous {row['psnr_continuous']:.2f}")
    low = row["gap_db"] < GAP_WARN_DB and not lam.vq.warming_up
    lam._low_gap_checks = getattr(lam, "_low_gap_checks", 0) + 1 if low else 0
    if lam._low_gap_checks >= WARN_AFTER_CHECKS:
        log(f"warning: the LAM's code is worth {row['gap_db']:+.2f} dB (< {GAP_WARN_DB} dB) for "
            f"{lam._low_gap_checks} checks after its warm-up: the decoder does not need its action (collapse)")
    return row
