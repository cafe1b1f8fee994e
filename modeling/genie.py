"""Genie inference: prompt frames -> tokens -> (latent action -> MaskGIT dynamics -> decoder -> frame)*.

Genie (Bruce et al. 2024), Section 2.2 and Figure 8: for each action the user picks (an index into the LAM's
codebook) the dynamics model samples the next frame's tokens with MaskGIT, the tokenizer decodes them, and they
join the history; actions between prompt frames are inferred by the LAM, as in training. The context is the
trained window T, the new frame included. Both models are causal in time, so ``use_cache`` keeps their temporal
keys/values per frame (``modeling.st_transformer.TemporalKVCache``) and a MaskGIT step costs one frame, not a
window. Past the window, ``context="window"`` (default, as trained) re-encodes the last T-1 frames per frame;
``"stream"`` keeps a rolling cache, cheapest but deeper layers see further back than training showed. The uncached
path is the reference the cache is tested against. Precision and sampling default to the run's, so tokens are
made as in training and each preset samples at the paper's temperature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modeling.checkpoint import PHASE_DYNAMICS, PHASE_LAM_DYNAMICS, load_genie, read_run_config
from modeling.compiled_step import CompiledStep
from modeling.configs import GenieConfig
from modeling.dynamics import DynamicsModel
from modeling.lam import LatentActionModel
from modeling.maskgit import SamplingConfig, sample_frame
from modeling.precision import autocast
from modeling.st_transformer import CONTEXTS, TemporalKVCache
from modeling.tokenizer import VideoTokenizer


class Genie:
    """A trained world model ready for inference (tokenizer + LAM + dynamics, eval mode, no gradients)."""

    def __init__(self, tokenizer: VideoTokenizer, lam: LatentActionModel, dynamics: DynamicsModel,
                 cfg: GenieConfig, device: torch.device | str = "cpu", precision: str | None = None):
        self.device = torch.device(device)
        self.precision = precision or cfg.precision  # the run's policy unless overridden (modeling.precision)
        self.sampling = cfg.sampling  # the preset's MaskGIT steps and temperature unless a call passes others
        self.tokenizer = tokenizer.to(self.device).eval()
        self.lam = lam.to(self.device).eval()
        self.dynamics = dynamics.to(self.device).eval()
        self.cfg = cfg
        self.dynamics_step = self.dynamics.forward_step  # the MaskGIT step sessions call (``compile_generation``)

    @classmethod
    def load(cls, run_dir: str | Path, device: torch.device | str = "cpu", which: str | int = "latest") -> Genie:
        """The models of a lam-dynamics (or dynamics) run directory."""
        tokenizer, lam, dynamics, cfg = load_genie(run_dir, map_location=str(device), which=which)
        return cls(tokenizer, lam, dynamics, cfg, device)

    def autocast(self):
        """The precision policy's autocast on this device (see ``modeling.precision``)."""
        return autocast(self.precision, self.device)

    def compile_generation(self, backend: str | object = "inductor", mode: str | None = "reduce-overhead") -> None:
        """Run cached sessions' MaskGIT steps through ``torch.compile`` (CUDA graphs on a GPU with the default
        ``mode``; ``modeling.compiled_step``). The same tokens as eager up to float rounding; the first frames at
        each cache length pay for compiling."""
        self.dynamics_step = CompiledStep(self.dynamics, backend, mode)

    @property
    def num_actions(self) -> int:
        return self.dynamics.cfg.num_actions

    @property
    def window(self) -> int:
        """Trained T: frames of context, including the frame being generated."""
        return self.dynamics.cfg.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.tokenizer.cfg.frame_height, self.tokenizer.cfg.frame_width

    @torch.no_grad()
    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video float (B, L, 3, H, W) in [0, 1] -> LAM actions long (B, L-1); action t is x_t -> x_{t+1}.

        Clips of any length, in windows of the LAM's trained T (``LatentActionModel.infer_clip_actions``).
        """
        with self.autocast():
            return self.lam.infer_clip_actions(video.to(self.device, torch.float32))

    def start(self, prompt: torch.Tensor, use_cache: bool = True, seed: int = 0, context: str = "window") -> Session:
        """A batch of rollouts from ``prompt`` float (B, P, 3, H, W) in [0, 1]; ``seed`` seeds its sampler."""
        return Session(self, prompt, use_cache, seed, context)

    @torch.no_grad()
    def rollout(self, prompt: torch.Tensor, actions: torch.Tensor, sampling: SamplingConfig | None = None,
                seed: int = 0, use_cache: bool = True, context: str = "window") -> dict[str, torch.Tensor]:
        """Generate one frame per action column of ``actions`` long (B, N); deterministic for a seed.

        Returns ``frames`` float (B, P+N, 3, H, W) (the prompt frames as given, then the generated ones) and
        ``tokens`` long (B, P+N, h, w).
        """
        session = self.start(prompt, use_cache, seed, context)
        actions = torch.as_tensor(actions)
        if actions.ndim != 2 or actions.shape[0] != session.batch_size:
            raise ValueError(f"actions must be (B, N) with B = {session.batch_size}, got {tuple(actions.shape)}")
        for i in range(actions.shape[1]):
            session.step(actions[:, i], sampling)
        return {"frames": torch.stack(session.frames, 1), "tokens": torch.stack(session.tokens, 1)}


def load_genie_run(run_dir: str | Path, device: torch.device | str = "cpu") -> Genie:
    """The Genie of a lam-dynamics (or dynamics) run, with one-line errors for anything else."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist")
    _, phase, _ = read_run_config(run)
    if phase not in (PHASE_LAM_DYNAMICS, PHASE_DYNAMICS):
        raise ValueError(f"{run} is a {phase} run; evaluate needs a {PHASE_LAM_DYNAMICS} (or "
                         f"{PHASE_DYNAMICS}) run, which holds the LAM and dynamics model")
    return Genie.load(run, device)

class Session:
    """One batch of interactive rollouts: token and action history, temporal KV caches, the sampler's RNG."""

    def __init__(self, genie: Genie, prompt: torch.Tensor, use_cache: bool = True, seed: int = 0,
                 context: str = "window"):
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        self.genie, self.use_cache, self.context = genie, use_cache, context
        height, width = genie.frame_size
        prompt = torch.as_tensor(prompt)
        if prompt.ndim == 4:
            prompt = prompt[:, None]
        if prompt.ndim != 5 or tuple(prompt.shape[2:]) != (3, height, width) or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be float (B, P>=1, 3, {height}, {width}) in [0, 1], "
                             f"got {tuple(prompt.shape)}")
        if not prompt.is_floating_point():
            raise ValueError(f"prompt must be float in [0, 1], got dtype {prompt.dtype}")
        prompt = prompt[:, -(genie.window - 1):].to(genie.device, torch.float32).clamp(0, 1)
        self.batch_size = prompt.shape[0]
        self.generator = torch.Generator(device=genie.device).manual_seed(seed)
        self.frames: list[torch.Tensor] = list(prompt.unbind(1))
        self.tokens: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []  # action that produced each frame; -1 for the first prompt frame
        self._dyn_cache: TemporalKVCache | None = None
        self._dec_cache: TemporalKVCache | None = None
        with torch.no_grad(), genie.autocast():
            tokens = genie.tokenizer.encode(prompt)
            none = torch.full((self.batch_size, 1), -1, dtype=torch.long, device=genie.device)
            acts = torch.cat([none, genie.infer_actions(prompt)], 1) if prompt.shape[1] > 1 else none
            if use_cache:
                self._dyn_cache = genie.dynamics.new_cache(self.batch_size, context=context)
                self._dec_cache = genie.tokenizer.new_decode_cache(context)
            for t in range(prompt.shape[1]):
                self._append(tokens[:, t], acts[:, t])
                if use_cache:
                    genie.tokenizer.decode_step(tokens[:, t], self._dec_cache)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def _append(self, tokens: torch.Tensor, action: torch.Tensor) -> None:
        self.tokens.append(tokens)
        self.actions.append(action)
        if self._dyn_cache is not None:
            self.genie.dynamics.commit(tokens, action, self._dyn_cache)

    def _action_tensor(self, actions: Any) -> torch.Tensor:
        n = self.genie.num_actions
        a = torch.as_tensor(actions, dtype=torch.long).reshape(-1)
        if a.numel() == 1:
            a = a.expand(self.batch_size)
        if a.numel() != self.batch_size:
            raise ValueError(f"need one action per rollout ({self.batch_size}), got {a.numel()}")
        if bool(((a < 0) | (a >= n)).any()):
            raise ValueError(f"actions must be in 0..{n - 1} (the model has {n} latent actions), got {a.tolist()}")
        return a.to(self.genie.device)

    def _logits_fn(self, action: torch.Tensor):
        dynamics = self.genie.dynamics
        if self.use_cache:
            return lambda tokens, mask: self.genie.dynamics_step(tokens, action, mask, self._dyn_cache)
        window = self.genie.window
        if self.context == "window":  # a fresh window: the last T-1 frames, the first without an action
            history = torch.stack(self.tokens[-(window - 1):], 1) if window > 1 else self.tokens[-1][:, :0, None]
            acts = torch.stack([*self.actions[-(window - 1):], action], 1)
            acts[:, 0] = -1
            band = None
        else:  # the whole history, temporal attention banded to the window
            history, acts, band = torch.stack(self.tokens, 1), torch.stack([*self.actions, action], 1), window

        def logits(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            frames = torch.cat([history, tokens[:, None]], 1)
            full_mask = torch.cat([torch.zeros_like(history, dtype=torch.bool), mask[:, None]], 1)
            return dynamics(frames, acts, full_mask, window=band)[:, -1]

        return logits

    def _decode_uncached(self) -> torch.Tensor:
        window = self.genie.tokenizer.cfg.num_frames
        if self.context == "window":
            return self.genie.tokenizer.decode(torch.stack(self.tokens[-window:], 1))[:, -1]
        return self.genie.tokenizer.decode(torch.stack(self.tokens, 1), window=window)[:, -1]

    @torch.no_grad()
    def step(self, actions: Any, sampling: SamplingConfig | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate the next frame of every rollout for ``actions`` (an int for all, or one per rollout);
        ``sampling`` defaults to the run's (``Genie.sampling``).

        Returns the new frames float (B, 3, H, W) in [0, 1]; they are also appended to ``frames``.
        """
        action = self._action_tensor(actions)
        sampling = sampling or self.genie.sampling
        with self.genie.autocast():
            tokens = sample_frame(self._logits_fn(action), self.batch_size,
                                  tuple(self.genie.dynamics.cfg.token_grid), sampling, generator or self.generator,
                                  self.genie.device)
            self._append(tokens, action)
            frame = (self.genie.tokenizer.decode_step(tokens, self._dec_cache) if self.use_cache
                     else self._decode_uncached()).float()
        self.frames.append(frame)
        return frame
