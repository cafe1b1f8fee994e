"""The dynamics model's MaskGIT step through ``torch.compile``: CUDA graphs for playable frame rates.

Generation at batch 1 is bound by kernel launches, not arithmetic: a `coinrun` frame is 25 MaskGIT steps, each a
pass of every layer over one frame, about 15,000 launches in all, with the GPU idle ~94% of the time (record:
docs/measurements/2026-12-04-gpu-check-h200.md). ``mode="reduce-overhead"`` captures the step as one CUDA graph
and replays it with a single launch.

A graph needs fixed shapes. ``DynamicsModel.step_logits`` takes the new frame's RoPE tables and each layer's
cached keys/values as tensors, so its shapes depend on the number of cached frames alone: 0..T-1 while the
window fills, then fixed in both contexts. That is at most T graphs, each compiled and captured on first use;
a later position replays one (the position is a tensor input, never a Python constant the compiler would
specialise on). On a CPU the same call compiles with Inductor and no graphs; the tests run it there.
"""

from __future__ import annotations

import torch
import torch._dynamo

from modeling.dynamics import DynamicsModel
from modeling.st_transformer import TemporalKVCache


class CompiledStep:
    """``DynamicsModel.forward_step`` compiled: call it with the same arguments, get the same logits.

    Compiling takes seconds to minutes per cache length (once per process); use it for long rollouts and play,
    not for a handful of frames. ``backend`` and ``mode`` go to ``torch.compile`` (``mode`` is Inductor's).
    """

    def __init__(self, dynamics: DynamicsModel, backend: str | object = "inductor",
                 mode: str | None = "reduce-overhead"):
        self.dynamics = dynamics
        # One graph per cache length (0..T-1) must not hit Dynamo's default limit of 8 recompiles, past which
        # it would fall back to eager without an error.
        limit = dynamics.cfg.num_frames + 1
        if torch._dynamo.config.recompile_limit < limit:
            torch._dynamo.config.recompile_limit = limit
        self._step = torch.compile(dynamics.step_logits, backend=backend, mode=mode, fullgraph=True, dynamic=False)

    def __call__(self, frame_tokens: torch.Tensor, action: torch.Tensor | None, frame_mask: torch.Tensor | None,
                 cache: TemporalKVCache) -> torch.Tensor:
        transformer = self.dynamics.transformer
        rope = transformer.step_rope(cache, frame_tokens.device)
        # Each call is a new step: a replay may overwrite the previous call's output buffer, hence the copy (the
        # logits of one frame, ~1 MB at batch 1).
        torch.compiler.cudagraph_mark_step_begin()
        return self._step(frame_tokens, action, frame_mask, rope, transformer.step_past(cache)).clone()
