"""MaskGIT dynamics model: predicts the next frame's tokens from past tokens and latent actions.

Genie (Bruce et al. 2024), Section 2.1 and Appendix C.3: a decoder-only ST-transformer (causal in time) over
tokenizer tokens, trained with MaskGIT (Chang et al. 2022): tokens masked at a rate drawn from U(0.5, 1) per
example, cross-entropy on the masked tokens of frames 2..T (frame 1, the context, is never masked).

The action that produced frame t (``actions[:, t-1]``) conditions frame t; frame 1 and actions of -1 get a learned
"no action" embedding. ``DynamicsConfig.action_conditioning``: ``"additive"`` (the paper) adds the embedding to
every token of its frame; ``"token"`` (Jasmine, which found it essential for faithful CoinRun rollouts) prepends it
as an extra spatial token. Inference (``new_cache`` / ``forward_step`` / ``commit``) runs frame by frame against a
temporal KV cache (``modeling.st_transformer.TemporalKVCache`` describes its ``"window"`` and ``"stream"`` contexts).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from modeling.configs import DynamicsConfig
from modeling.st_transformer import STTransformer, TemporalKVCache

ACTION_MODES = ("additive", "token")


class DynamicsModel(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        if cfg.action_conditioning not in ACTION_MODES:
            raise ValueError(f"action_conditioning must be one of {ACTION_MODES}, got {cfg.action_conditioning!r}")
        self.cfg = cfg
        h, w = cfg.token_grid
        self.mask_id = cfg.vocab_size  # the extra embedding row used for masked inputs
        self.no_action_id = cfg.num_actions
        self.token_emb = nn.Embedding(cfg.vocab_size + 1, cfg.dim)
        self.pos = nn.Parameter(torch.randn(h * w, cfg.dim) * 0.02)
        self.action_emb = nn.Embedding(cfg.num_actions + 1, cfg.dim)
        if cfg.action_conditioning == "token":
            self.action_pos = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.transformer = STTransformer(cfg.dim, cfg.heads, cfg.layers, cfg.mlp_ratio, causal=True)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size)

    @torch.no_grad()
    def forget_actions(self, indices: torch.Tensor) -> None:
        """Make latent actions ``indices`` mean "no action" again: called when the LAM resets those codes
        (dead-code reset), which gives them a new meaning the rows learned so far would contradict. Copying the
        "no action" row is deterministic (exact resume) and identical on every DDP rank."""
        self.action_emb.weight[indices] = self.action_emb.weight[self.no_action_id].clone()

    def _full_actions(self, actions: torch.Tensor | None, b: int, t: int, device: torch.device) -> torch.Tensor:
        """(B, T-1) actions -> (B, T) with "none" (-1) for frame 1; (B, T) passes through."""
        if actions is None:
            return torch.full((b, t), -1, dtype=torch.long, device=device)
        if actions.shape == (b, t - 1):
            return torch.cat([torch.full((b, 1), -1, dtype=torch.long, device=device), actions.long()], dim=1)
        if actions.shape == (b, t):
            return actions.long()
        raise ValueError(f"actions must be (B, T-1) = {(b, t - 1)} or (B, T), got {tuple(actions.shape)}")

    def _embed(self, tokens: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """tokens (B, T, h, w), actions (B, T) with -1 = none, mask (B, T, h, w) -> (B, T, S(+1), D)."""
        b, t, h, w = tokens.shape
        if (h, w) != tuple(self.cfg.token_grid):
            raise ValueError(f"token grid {(h, w)} does not match the model's {tuple(self.cfg.token_grid)}")
        ids = tokens.reshape(b, t, h * w)
        if mask is not None:
            ids = torch.where(mask.reshape(b, t, h * w), self.mask_id, ids)
        x = self.token_emb(ids) + self.pos
        a = self.action_emb(torch.where(actions < 0, self.no_action_id, actions))
        if self.cfg.action_conditioning == "additive":
            return x + a[:, :, None, :]
        return torch.cat([(a + self.action_pos)[:, :, None, :], x], dim=2)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.action_conditioning == "token":
            x = x[..., 1:, :]
        h, w = self.cfg.token_grid
        return self.head(x).unflatten(-2, (h, w))

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor | None,
                token_mask: torch.Tensor | None = None, window: int | None = None) -> torch.Tensor:
        """tokens long (B, T, h, w), actions long (B, T-1) [or (B, T)], mask bool -> logits (B, T, h, w, V).

        ``window`` bands temporal attention to that many frames (the ``"stream"`` generation reference).
        """
        b, t = tokens.shape[:2]
        x = self._embed(tokens, self._full_actions(actions, b, t, tokens.device), token_mask)
        return self._logits(self.transformer(x, window=window))

    def sample_mask(self, shape: torch.Size, device: torch.device, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """Bool (B, T, h, w): per example a rate r ~ U(min, max), then each token of frames 2..T masked w.p. r."""
        lo, hi = self.cfg.mask_rate_min, self.cfg.mask_rate_max
        rate = lo + (hi - lo) * torch.rand(shape[0], generator=generator, device=device)
        mask = torch.rand(shape, generator=generator, device=device) < rate[:, None, None, None]
        mask[:, 0] = False
        return mask

    def loss(self, tokens: torch.Tensor, actions: torch.Tensor | None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """MaskGIT training loss: per-example rate ~ U(min, max), cross-entropy on masked tokens of frames 2..T.

        Returns loss, accuracy and mask fraction, and ``predicted`` long (1, T, h, w): the first example's
        argmax tokens (for sample images).
        """
        mask = self.sample_mask(tokens.shape, tokens.device, generator)
        logits = self(tokens, actions, mask)
        target = tokens[mask]
        picked = logits[mask].float()
        loss = F.cross_entropy(picked, target) if target.numel() else logits.sum() * 0.0
        with torch.no_grad():
            acc = (picked.argmax(-1) == target).float().mean() if target.numel() else torch.zeros(())
            predicted = logits[:1].argmax(-1)  # the first example's argmax tokens, for sample images
        # Never the logits themselves: (B, T, h, w, V) is ~1.1 GB in bf16 for a 160x90 CoinRun-sized micro-batch,
        # and a caller keeping the result (the training loop does, for logging) would hold it into the next step.
        return {"loss": loss, "acc": acc, "mask_fraction": mask[:, 1:].float().mean(), "predicted": predicted}

    # --- inference: one frame at a time against a temporal KV cache -------------------------------------------

    def new_cache(self, batch_size: int, max_frames: int | None = None, context: str = "window") -> TemporalKVCache:
        """An empty cache; ``max_frames`` (default: the training length T) is the window INCLUDING the new frame."""
        del batch_size  # tensors are allocated on the first commit
        return TemporalKVCache(max_frames=max_frames or self.cfg.num_frames, context=context)

    def _step_input(self, frame_tokens: torch.Tensor, action: torch.Tensor | None,
                    frame_mask: torch.Tensor | None) -> torch.Tensor:
        b = frame_tokens.shape[0]
        acts = self._full_actions(None if action is None else action.reshape(b, 1), b, 1, frame_tokens.device)
        return self._embed(frame_tokens[:, None], acts, None if frame_mask is None else frame_mask[:, None])[:, 0]

    def forward_step(self, frame_tokens: torch.Tensor, action: torch.Tensor | None,
                     frame_mask: torch.Tensor | None, cache: TemporalKVCache) -> torch.Tensor:
        """Logits (B, h, w, V) for one new frame given the committed frames in ``cache`` (left unchanged)."""
        return self.step_logits(frame_tokens, action, frame_mask,
                                self.transformer.step_rope(cache, frame_tokens.device), self.transformer.step_past(cache))

    def step_logits(self, frame_tokens: torch.Tensor, action: torch.Tensor | None, frame_mask: torch.Tensor | None,
                    rope: tuple[torch.Tensor, torch.Tensor],
                    past: list[tuple[torch.Tensor, torch.Tensor] | None]) -> torch.Tensor:
        """``forward_step`` on tensors alone: the new frame's RoPE tables and each layer's cached K/V are inputs,
        so its shapes depend on the cache's length only (what ``modeling.compiled_step`` compiles)."""
        y, _ = self.transformer.step_at(self._step_input(frame_tokens, action, frame_mask), rope, past)
        return self._logits(y)

    def commit(self, frame_tokens: torch.Tensor, action: torch.Tensor | None, cache: TemporalKVCache) -> None:
        """Add the final tokens of a frame (and the action that produced it) to ``cache``.

        Once a ``"window"`` cache is full, the kept frames are re-encoded as a fresh window whose first frame
        gets "no action", as frame 1 of every training clip does.
        """
        b = frame_tokens.shape[0]
        action = torch.full((b,), -1, dtype=torch.long, device=frame_tokens.device) if action is None else action
        reencode = cache.reencode_on_commit
        kept = cache.push_frame((frame_tokens, action.reshape(b)))
        if not reencode:
            _, kvs = self.transformer.step(self._step_input(frame_tokens, action, None), cache)
            cache.append(kvs)
            return
        if not kept:  # a one-frame window keeps no history
            return
        tokens = torch.stack([t for t, _ in kept], 1)
        actions = torch.stack([a for _, a in kept], 1)
        self.transformer.prefill(self._embed(tokens, self._full_actions(actions[:, 1:], b, len(kept),
                                                                        tokens.device), None), cache)
