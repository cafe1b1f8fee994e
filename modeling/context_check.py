"""How far inference drifts from training once the generation window slides: the tokens in the window's slot 1.

Training encodes every window of T frames from scratch, so the tokens in slot 1 of a window were always made
by the causal tokenizer *without* context. At inference, once a rollout is longer than the window, slot 1
holds a frame whose tokens were made *with* context (encoded, or generated, after earlier frames). The
dynamics model and the decoder then see a slot-1 token they were never trained on, wherever the two differ.

``slot1_mismatch`` measures how often they differ on real video: the tokens of frame k encoded after k
frames of context against frame k encoded alone (what training shows in slot 1). Zero would mean the drift
does not exist; the value says how much a fix (re-encoding slot 1 from its decoded pixels at every slide, one
extra decode + encode of one frame per generated frame) could matter.
"""

from __future__ import annotations

import torch

from modeling.tokenizer import VideoTokenizer


@torch.no_grad()
def slot1_mismatch(tokenizer: VideoTokenizer, video: torch.Tensor) -> dict[str, float]:
    """video (B, T', 3, H, W) in [0, 1], T' >= 2 -> mismatch statistics over frames 1..T'-1 (frame 0 is
    the reference: in context and alone it is the same computation, so its mismatch must be 0)."""
    in_context = tokenizer.encode(video)  # (B, T', h, w): frame k after frames 0..k-1
    alone = torch.cat([tokenizer.encode(video[:, k:k + 1]) for k in range(video.shape[1])], 1)
    differ = (in_context != alone).float()
    return {"frame0": differ[:, 0].mean().item(), "later_frames": differ[:, 1:].mean().item(),
            "per_frame": differ.mean(dim=(0, 2, 3)).tolist()}
