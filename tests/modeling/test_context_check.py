"""The slot-1 measurement: frame 0 is the same computation in context and alone (0 mismatch, the reference),
and a tokenizer whose encoder mixes frames gives later frames other tokens in context than alone."""

from __future__ import annotations

import torch

from modeling.configs import get_config
from modeling.context_check import slot1_mismatch
from modeling.tokenizer import VideoTokenizer


def test_frame0_is_the_reference_and_context_changes_later_frames():
    torch.manual_seed(0)
    cfg = get_config("tiny").tokenizer
    tokenizer = VideoTokenizer(cfg).eval()
    video = torch.rand(2, 4, 3, cfg.frame_height, cfg.frame_width)
    got = slot1_mismatch(tokenizer, video)
    assert got["frame0"] == 0.0
    assert 0.0 < got["later_frames"] <= 1.0  # a random causal encoder attends over time
    assert len(got["per_frame"]) == 4 and got["per_frame"][0] == 0.0
