"""Where a frame shows something its predecessor, moved, cannot: per-pixel weights for the LAM's reconstruction loss.

In a scrolling game most of what changes between x_t and x_{t+1} is the camera: the whole view moves, layers at
their own speeds, by fractions of a pixel. A plain squared error makes that scroll the costliest error, so a tiny
LAM code is spent on it, and the scroll follows the player's momentum more than the action taken
(docs/measurements/2026-12-06-lam-action-in-frames.md). A video codec's answer is motion compensation: what
x_{t+1} shows beyond x_t moved block by block is the innovation (the player turning, an object appearing).

``innovation_weights`` finds it in two steps, without gradients:
1. the integer global shift of x_t that best matches x_{t+1} in grey (exhaustive, up to 1/8 of the frame each way);
2. around it, half-pixel offsets within ``radius`` px by bilinear sampling; each pixel keeps the residual of the
   offset that best matches its ``block`` x ``block`` neighbourhood in colour (block matching, so each layer and each
   moving object gets its own motion).
The weight is ``1 - share + share * residual / mean residual`` per frame: mean 1, so the loss keeps its scale,
and ``share`` of it follows the innovation (errors under half an 8-bit level count as none). Pixels the global shift brings into view (whose source lies outside
x_t) get the floor ``1 - share``: no past predicts them, so no code should be spent on them.

Cost: (2 * h/8 + 1) (2 * w/8 + 1) integer shifts plus (4 radius + 1)^2 bilinear samplings of a colour frame per
transition, a few per cent of the LAM's own forward pass on a GPU; nothing is stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUANTUM = (0.5 / 255) ** 2  # squared error below half an 8-bit level: interpolation noise, not content


def global_shifts(prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """Grey frames (N, H, W) -> (N, 2) float (dx, dy): the integer shift with nxt[y, x] ~ prev[y - dy, x - dx] that
    minimises the squared error over the overlap, searched within H/8 and W/8 px (ties: the first searched)."""
    n, h, w = prev.shape
    ry, rx = max(1, h // 8), max(1, w // 8)
    best = torch.full((n,), float("inf"), device=prev.device)
    out = torch.zeros(n, 2, device=prev.device)
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            a = prev[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            b = nxt[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
            err = ((a - b) ** 2).mean((1, 2))
            better = err < best
            best = torch.where(better, err, best)
            out[better] = torch.tensor([dx, dy], dtype=out.dtype, device=out.device)
    return out


@torch.no_grad()
def motion_residual(prev: torch.Tensor, nxt: torch.Tensor, radius: float = 1.5,
                    block: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (N, 3, H, W) in [0, 1] -> (residual (N, H, W), revealed (N, H, W) bool): the squared error (mean over
    colours, so a change of hue at equal brightness counts) of each pixel of nxt against prev moved by its block's best motion, and the pixels the global shift brings in."""
    x0, x1 = prev.float(), nxt.float()
    g0, g1 = x0.mean(1), x1.mean(1)
    n, h, w = g0.shape
    base = global_shifts(g0, g1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=g0.device),
                            torch.arange(w, dtype=torch.float32, device=g0.device), indexing="ij")
    dx0, dy0 = base[:, 0, None, None], base[:, 1, None, None]
    revealed = ((xs - dx0) < 0) | ((xs - dx0) > w - 1) | ((ys - dy0) < 0) | ((ys - dy0) > h - 1)
    steps = int(round(radius * 2))
    best_local = best = None
    for oy in range(-steps, steps + 1):
        for ox in range(-steps, steps + 1):
            sx, sy = xs - dx0 - ox / 2, ys - dy0 - oy / 2  # where each pixel of nxt comes from in prev
            grid = torch.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], -1)
            moved = F.grid_sample(x0, grid, mode="bilinear", padding_mode="border", align_corners=True)
            err = ((moved - x1) ** 2).mean(1)
            local = F.avg_pool2d(err[:, None], block, 1, block // 2, count_include_pad=False)[:, 0]
            if best is None:
                best_local, best = local, err
            else:
                better = local < best_local
                best_local, best = torch.where(better, local, best_local), torch.where(better, err, best)
    still = ((x0 - x1) ** 2).mean(1)  # what does not move with the view (a sprite the camera follows, a HUD)
    return torch.minimum(best, still), revealed


def innovation_weights(video: torch.Tensor, share: float) -> torch.Tensor:
    """video (B, T, 3, H, W) in [0, 1] -> loss weights (B, T-1, 1, H, W) for frames 2..T, mean 1 per frame."""
    b, t, c, h, w = video.shape
    residual, revealed = motion_residual(video[:, :-1].flatten(0, 1), video[:, 1:].flatten(0, 1))
    residual = (residual - QUANTUM).clamp_min(0.0).masked_fill(revealed, 0.0)
    scale = residual.mean((1, 2), keepdim=True)
    # a frame with nothing unexplained (a still view) weighs its pixels alike
    innovation = torch.where(scale > 0, residual / scale.clamp_min(1e-12), torch.ones_like(residual))
    weights = torch.where(revealed, torch.full_like(residual, 1 - share), 1 - share + share * innovation)
    weights = weights / weights.mean((1, 2), keepdim=True)
    return weights.view(b, t - 1, 1, h, w)
