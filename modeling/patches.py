"""Frames <-> patch tokens, with the padding that makes 160x90 frames divisible by the patch size.

90 is not a multiple of 4 or 16: frames are zero-padded at the bottom (and right) to the next multiple of the
patch size and cropped back after decoding. Patch 4 gives 92x160 -> 23x40 tokens, patch 16 gives 96x160 ->
6x10. Padding (rather than resizing) keeps every real pixel and the 160x90 clip format untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(height: int, width: int, patch: int) -> tuple[int, int]:
    return -(-height // patch) * patch, -(-width // patch) * patch


def patchify(video: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, h*w, patch*patch*C), zero-padding H and W up to multiples of ``patch``."""
    b, t, c, height, width = video.shape
    hp, wp = padded_size(height, width, patch)
    video = F.pad(video, (0, wp - width, 0, hp - height))
    h, w = hp // patch, wp // patch
    x = video.reshape(b, t, c, h, patch, w, patch).permute(0, 1, 3, 5, 4, 6, 2)
    return x.reshape(b, t, h * w, patch * patch * c)


def unpatchify(x: torch.Tensor, patch: int, height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Inverse of ``patchify``: (B, T, h*w, patch*patch*C) -> (B, T, C, H, W), cropping the padding off."""
    b, t = x.shape[:2]
    hp, wp = padded_size(height, width, patch)
    h, w = hp // patch, wp // patch
    x = x.reshape(b, t, h, w, patch, patch, channels).permute(0, 1, 6, 2, 4, 3, 5)
    return x.reshape(b, t, channels, hp, wp)[..., :height, :width]
