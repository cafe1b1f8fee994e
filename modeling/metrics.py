"""Evaluation metrics of the world model: image fidelity (PSNR, SSIM), agreement of latent with true actions (NMI,
many-to-one accuracy), latent-action code usage. One home, so a number means the same in training logs and in
``python -m modeling evaluate``.

- PSNR per image (or clip) from its own MSE, then averaged, as video-prediction papers (and Genie's ΔtPSNR)
  report it; images are floats in [0, 1].
- SSIM is Wang et al. (2004) as ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)``.
- NMI uses the arithmetic mean of the entropies (scikit-learn's default): 1 = each determines the other up to
  relabelling, 0 = independent. Many-to-one accuracy maps each latent action to its most frequent true action:
  what a policy could reach by relabelling latent actions from a few labelled samples (the paper's Fig. 15).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean"
         ) -> torch.Tensor:
    """PSNR (dB) of each item along dim 0 (its MSE over all other dims), averaged unless ``reduction="none"``.

    Identical items give 100 dB (MSE floored at 1e-10) rather than infinity, so means stay finite.
    """
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    values = 10 * torch.log10(data_range ** 2 / mse)
    return values.mean() if reduction == "mean" else values


def _gaussian_window(device: torch.device) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * SSIM_SIGMA ** 2))
    return (g / g.sum()).float()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean"
         ) -> torch.Tensor:
    """SSIM of images (N, C, H, W) (or (..., C, H, W), flattened to N), per image unless averaged.

    Images must be at least 11 x 11. The Gaussian filter runs as two separable 'valid' convolutions, which is
    skimage's reflect-padded filter followed by its crop of the 5-pixel border.
    """
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(f"ssim needs two equal shapes (..., C, H, W), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    c, h, w = pred.shape[-3:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {w}x{h}")
    x = pred.reshape(-1, c, h, w).float()
    y = target.reshape(-1, c, h, w).float()
    g = _gaussian_window(x.device)
    kh, kw = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    values = s_map.flatten(1).mean(1)
    return values.mean() if reduction == "mean" else values


# --- latent actions ----------------------------------------------------------------------------------------


def contingency(latent: np.ndarray, true: np.ndarray, num_latent: int | None = None,
                num_true: int | None = None) -> np.ndarray:
    """Counts (num_latent, num_true): entry [l, a] = transitions with latent action l and true action a."""
    latent, true = np.asarray(latent, np.int64).ravel(), np.asarray(true, np.int64).ravel()
    if latent.shape != true.shape:
        raise ValueError(f"latent and true actions differ in length: {latent.size} vs {true.size}")
    if latent.size and (latent.min() < 0 or true.min() < 0):
        raise ValueError("actions must be >= 0 (drop unknown true actions, -1, first)")
    n_l = max(num_latent or 0, int(latent.max()) + 1 if latent.size else 0)
    n_t = max(num_true or 0, int(true.max()) + 1 if true.size else 0)
    table = np.zeros((n_l, n_t), np.int64)
    np.add.at(table, (latent, true), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(latent: np.ndarray, true: np.ndarray) -> float:
    """NMI = I(L; A) / mean(H(L), H(A)) in [0, 1]; 1.0 when both are constant (one cluster each: sklearn)."""
    table = contingency(latent, true).astype(np.float64)
    n = table.sum()
    if n == 0:
        raise ValueError("normalized_mutual_info needs at least one pair")
    rows, cols = table.sum(1), table.sum(0)
    h_l, h_a = _entropy(rows), _entropy(cols)
    if h_l == 0 and h_a == 0:
        return 1.0
    nz = table > 0
    outer = np.outer(rows, cols)[nz]
    mi = float((table[nz] / n * np.log(table[nz] * n / outer)).sum())
    return float(min(1.0, max(0.0, mi / ((h_l + h_a) / 2))))


def many_to_one(latent: np.ndarray, true: np.ndarray) -> tuple[float, dict[int, int]]:
    """(accuracy, mapping): each latent action -> its most frequent true action (ties: the smallest id)."""
    table = contingency(latent, true)
    if table.sum() == 0:
        raise ValueError("many_to_one needs at least one pair")
    used = np.flatnonzero(table.sum(1))
    mapping = {int(code): int(table[code].argmax()) for code in used}
    return float(table.max(1).sum() / table.sum()), mapping


def action_agreement(latent: np.ndarray, true: np.ndarray, num_latent: int | None = None) -> dict:
    """Agreement of latent with true actions over the pairs whose true action is known (``true >= 0``).

    Returns transitions, NMI, many-to-one accuracy and mapping, the majority baseline (accuracy of mapping
    everything to the most common true action: what a collapsed LAM gets), and the contingency table.
    """
    latent, true = np.asarray(latent, np.int64).ravel(), np.asarray(true, np.int64).ravel()
    known = true >= 0
    latent, true = latent[known], true[known]
    if latent.size == 0:
        raise ValueError("no transition has a known true action")
    table = contingency(latent, true, num_latent=num_latent)
    accuracy, mapping = many_to_one(latent, true)
    return {
        "transitions": int(latent.size),
        "nmi": normalized_mutual_info(latent, true),
        "many_to_one_accuracy": accuracy,
        "majority_baseline": float(table.sum(0).max() / table.sum()),
        "mapping": {str(k): v for k, v in mapping.items()},
        "contingency": table.tolist(),
    }


def code_usage(actions: np.ndarray | torch.Tensor, num_actions: int) -> dict:
    """How latent actions are used: counts per code, codes used, perplexity exp(H) (at most num_actions)."""
    a = np.asarray(actions.cpu() if isinstance(actions, torch.Tensor) else actions, np.int64).ravel()
    if a.size and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(f"actions must be in 0..{num_actions - 1}")
    counts = np.bincount(a, minlength=num_actions)
    return {
        "num_actions": int(num_actions),
        "transitions": int(a.size),
        "counts": counts.tolist(),
        "codes_used": int((counts > 0).sum()),
        "perplexity": math.exp(_entropy(counts)) if a.size else 0.0,
    }


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval); half-width 0 for a single value. Used for the spread
    over seeds (bc) and, on paired per-clip differences, for ΔtPSNR."""
    from scipy import stats

    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)
