"""The spatiotemporal (ST) transformer shared by the tokenizer, the latent action model and the dynamics model.

Genie (Bruce et al. 2024, arXiv 2402.15391), Section 2 and Fig. 4: each block applies spatial self-attention
over the H'xW' tokens of one frame, then causal temporal self-attention over the T frames at each spatial
position, then ONE feed-forward layer (there is none after the spatial layer). Attention cost is therefore
O(T*S^2 + S*T^2) instead of O((T*S)^2), and memory grows linearly with T.

Differences from the paper, on purpose:
- Pre-norm blocks with QK-norm (RMSNorm on queries and keys per head), which the paper mentions for stability.
- Temporal positions use rotary embeddings (RoPE) inside temporal attention only, so attention depends on frame
  OFFSETS, never on where a window starts. Spatial positions are learned absolute embeddings added by each model
  at its input.
- ``F.scaled_dot_product_attention`` everywhere, so flash / memory-efficient kernels are used on GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (L, head_dim/2) for integer ``positions`` (L,)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the last dim of x (N, H, L, Dh) by the angles of each position."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[None, None], sin[None, None]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class QKNorm(nn.RMSNorm):
    """RMSNorm of queries or keys with its weight cast to their dtype: under bf16 autocast they come out of the
    qkv projection in bf16, and ``torch.rms_norm`` with a float32 weight falls back from the fused kernel to a
    chain of unfused ones. Same parameters (and checkpoint keys) as ``nn.RMSNorm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention with QK-norm; optional RoPE, causal mask and past keys/values (inference)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim {dim} must split into {heads} heads of even size")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = QKNorm(self.head_dim)
        self.k_norm = QKNorm(self.head_dim)

    def forward(self, x: torch.Tensor, causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, window: int | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (N, L, D) -> (N, L, D), plus this call's (rotated) keys and values (N, H, L, Dh) for a cache.

        ``window`` (causal only) limits each position to the last ``window`` positions including itself (a band
        mask): the reference for streaming generation, whose rolling cache holds ``window - 1`` positions.
        """
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        new_kv = (k, v)
        if past is not None:
            # The new positions come after every cached one, so attending to all of them is causal.
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            causal = causal and length > 1
            if causal:
                raise ValueError("cached attention supports one new position at a time")
        mask = None
        if causal and window is not None and length > window:
            i = torch.arange(length, device=x.device)
            mask, causal = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window), False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(n, length, dim)), new_kv


class MLP(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class STBlock(nn.Module):
    """Spatial attention -> causal temporal attention -> feed-forward, each pre-normed with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.norm_spatial = nn.LayerNorm(dim)
        self.spatial = SelfAttention(dim, heads)
        self.norm_temporal = nn.LayerNorm(dim)
        self.temporal = SelfAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                past: tuple[torch.Tensor, torch.Tensor] | None = None, window: int | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, S, D). With ``past`` (cached temporal K/V of earlier frames), T must be 1."""
        b, t, s, d = x.shape
        x = x + self.spatial(self.norm_spatial(x).reshape(b * t, s, d))[0].view(b, t, s, d)
        xt = self.norm_temporal(x).transpose(1, 2).reshape(b * s, t, d)
        y, kv = self.temporal(xt, causal=self.causal, rope=rope, past=past, window=window)
        x = x + y.view(b, s, t, d).transpose(1, 2)
        x = x + self.mlp(self.norm_mlp(x))
        return x, kv


CONTEXTS = ("window", "stream")


@dataclass
class TemporalKVCache:
    """Per-layer temporal keys/values of committed frames, for frame-by-frame generation.

    ``max_frames`` is the attention window INCLUDING the frame being predicted (the training length T), so at most
    ``max_frames - 1`` committed frames are kept; ``context`` decides what a commit beyond that does, both exact
    against a full forward pass (``tests/modeling/test_genie.py``):
    - ``"window"`` (default): each frame is computed as in training, from a fresh pass over the last T-1 frames; deeper
      layers' keys of an old frame depend on frames that have left the window, so once full the owner re-encodes the
      window (``STTransformer.prefill``) on each commit.
    - ``"stream"``: sliding-window attention per layer (Mistral's rolling cache): every frame costs the same, but deeper
      layers see further back than T, unlike training; the reference is a band-masked ``STTransformer.forward(window=T)``.
    Keys are stored rotated at their frame's position; RoPE makes scores depend on offsets only. They are stored
    contiguous, so a cache of a given length always has the same strides (one compiled graph per length,
    ``modeling.compiled_step``).
    """

    max_frames: int
    context: str = "window"
    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    next_pos: int = 0  # position (RoPE index) of the next frame
    frames: list[Any] = field(default_factory=list)  # the owner's inputs of the kept frames (for a re-encode)

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")

    @property
    def keep(self) -> int:
        return self.max_frames - 1

    @property
    def num_frames(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[2]

    @property
    def reencode_on_commit(self) -> bool:
        """True when the next commit must re-encode the window (``"window"`` context, window full)."""
        return self.context == "window" and self.num_frames >= self.keep

    def past(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.keys or self.keys[layer] is None:
            return None
        return self.keys[layer], self.values[layer]

    def push_frame(self, frame: Any) -> list[Any]:
        """Remember the owner's input of a committed frame; returns the kept ones (at most ``keep``), oldest first."""
        self.frames = [*self.frames, frame][-self.keep:] if self.keep else []
        return self.frames

    def append(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Add one frame's per-layer K/V, dropping the oldest beyond ``keep`` (the ``"stream"`` slide)."""
        if not self.keys:
            self.keys, self.values = [None] * len(kvs), [None] * len(kvs)
        for i, (k, v) in enumerate(kvs):
            if self.keys[i] is not None:  # the frames that stay, then the new one: one copy, already contiguous
                drop = max(0, self.keys[i].shape[2] + k.shape[2] - self.keep)
                k = torch.cat([self.keys[i][:, :, drop:], k], dim=2)
                v = torch.cat([self.values[i][:, :, drop:], v], dim=2)
            start = max(0, k.shape[2] - self.keep)
            self.keys[i], self.values[i] = k[:, :, start:].contiguous(), v[:, :, start:].contiguous()
        self.next_pos += 1

    def replace(self, kvs: list[tuple[torch.Tensor, torch.Tensor]], next_pos: int) -> None:
        """Set the cache to a re-encoded window (``STTransformer.prefill``)."""
        self.keys, self.values = [k.contiguous() for k, _ in kvs], [v.contiguous() for _, v in kvs]
        self.next_pos = next_pos


class STTransformer(nn.Module):
    """A stack of ST blocks and a final norm over (B, T, S, D) token grids (S = tokens per frame)."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float = 4.0, causal: bool = True):
        super().__init__()
        self.head_dim = dim // heads
        self.blocks = nn.ModuleList(STBlock(dim, heads, mlp_ratio, causal) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.checkpointing = False  # recompute each block in backward: activation memory of ~1 block, +1 forward

    def forward(self, x: torch.Tensor, start_pos: int = 0, window: int | None = None) -> torch.Tensor:
        """x (B, T, S, D) -> (B, T, S, D); ``window`` bands temporal attention (see ``SelfAttention``)."""
        return self._run(x, start_pos, window)[0]

    def _run(self, x: torch.Tensor, start_pos: int = 0, window: int | None = None
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        rope = rope_cos_sin(torch.arange(start_pos, start_pos + x.shape[1], device=x.device), self.head_dim)
        kvs = []
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled():
                x, kv = torch.utils.checkpoint.checkpoint(block, x, rope, None, window, use_reentrant=False)
            else:
                x, kv = block(x, rope, window=window)
            kvs.append(kv)
        return self.norm(x), kvs

    def prefill(self, x: torch.Tensor, cache: TemporalKVCache) -> None:
        """Fill ``cache`` from a fresh causal forward pass over the frames x (B, L, S, D) at positions 0..L-1."""
        if x.shape[1] > cache.keep:
            raise ValueError(f"prefill of {x.shape[1]} frames into a cache that keeps {cache.keep}")
        if x.shape[1] == 0:
            cache.replace([], 0)
            return
        cache.replace(self._run(x)[1], next_pos=x.shape[1])

    def step(self, x: torch.Tensor, cache: TemporalKVCache
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One new frame x (B, S, D) attending to the cached frames; returns outputs and its per-layer K/V."""
        return self.step_at(x, self.step_rope(cache, x.device), self.step_past(cache))

    def step_rope(self, cache: TemporalKVCache, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoPE tables (1, head_dim/2) of the frame ``cache`` would place next."""
        return rope_cos_sin(torch.tensor([cache.next_pos], device=device), self.head_dim)

    def step_past(self, cache: TemporalKVCache) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Each layer's cached K/V (None before the first commit)."""
        return [cache.past(i) for i in range(len(self.blocks))]

    def step_at(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                past: list[tuple[torch.Tensor, torch.Tensor] | None]
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """``step`` on tensors alone (no cache object, no Python position): what a compiled graph can capture
        once per cache length and replay at every position (``modeling.compiled_step``)."""
        x = x.unsqueeze(1)
        kvs = []
        for block, layer_past in zip(self.blocks, past, strict=True):
            x, kv = block(x, rope, past=layer_past)
            kvs.append(kv)
        return self.norm(x.squeeze(1)), kvs
