"""The camera's global motion between frames, and frames moved by it (motion compensation for the LAM's decoder).

In a platformer the camera follows the player, so most of a frame's change is the whole view scrolling. A LAM
decoder that must predict that scroll spends its few codes on it (jumps and falls scroll most) and says little
about the action, which shows mostly in the player's sprite. Handing the decoder the measured scroll lets the code
carry what the scroll does not (``lam.camera_radius``). The shift is found by exhaustive search: the integer
(dy, dx) within the radius whose moved x_t best matches x_{t+1} (mean squared error of grey values over the
interior), as a video codec's global motion search does.
"""

from __future__ import annotations

import torch


def global_shifts(video: torch.Tensor, radius: int) -> torch.Tensor:
    """video (B, T, C, H, W) -> (B, T-1, 2) long: (dy, dx) with x_{t+1}[y, x] ~ x_t[y + dy, x + dx], |dy|, |dx| <=
    radius; ties go to the smaller shift (searched first)."""
    b, t, _, h, w = video.shape
    if h <= 2 * radius or w <= 2 * radius:
        raise ValueError(f"frames of {h}x{w} are too small for a camera search of +-{radius} px")
    grey = video.detach().float().mean(dim=2)
    a, target = grey[:, :-1].flatten(0, 1), grey[:, 1:].flatten(0, 1)[:, radius:h - radius, radius:w - radius]
    offsets = sorted(((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)),
                     key=lambda s: (abs(s[0]) + abs(s[1]), s))
    errors = torch.stack([(target - a[:, radius + dy:h - radius + dy, radius + dx:w - radius + dx]).pow(2).mean((1, 2))
                          for dy, dx in offsets], dim=1)
    best = torch.tensor(offsets, device=video.device)[errors.argmin(dim=1)]
    return best.view(b, t - 1, 2)


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """frames (N, C, H, W), shifts (N, 2) long -> frames moved by the camera: out[y, x] = frames[y + dy, x + dx],
    the edge the view scrolls onto filled with the nearest row or column (what the old frame can say of it)."""
    n, c, h, w = frames.shape
    rows = (torch.arange(h, device=frames.device)[None] + shifts[:, :1]).clamp(0, h - 1)  # (N, H)
    cols = (torch.arange(w, device=frames.device)[None] + shifts[:, 1:]).clamp(0, w - 1)  # (N, W)
    out = frames.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def shift_index(shifts: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., 2) shifts -> (...) long in [0, (2 * radius + 1) ** 2): an embedding index."""
    side = 2 * radius + 1
    return (shifts[..., 0] + radius) * side + shifts[..., 1] + radius

