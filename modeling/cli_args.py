"""Command-line pieces the model's commands share (``generate``, ``play``, ``evaluate``).

- ``StrictParser`` and ``UsageError`` (re-exported from ``schemas.cli``, their one home): a usage mistake is one
  line and exit status 2, an unknown flag is named with a suggestion;
- ``add_model_args`` / ``load_model_args``: the run, prompt, sampling, device, cache and compile options of the commands
  that roll a trained Genie out from a prompt, and loading what they name;
- ``sampling_options``: a run's sampling config with the options given on the command line;
- ``resolve_device``: ``--device`` or the best available one;
- ``run_frame_size``: the frame size a run's prompt is loaded at.

The commands import these from here, not from each other.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from modeling.checkpoint import read_run_config
from modeling.configs import PRECISIONS
from modeling.genie import Genie, load_genie_run
from modeling.maskgit import SCHEDULES, SamplingConfig
from modeling.prompts import CLIP_SIZE, FITS, load_prompt
from modeling.st_transformer import CONTEXTS
from schemas.cli import StrictParser, UsageError

__all__ = ["StrictParser", "UsageError", "add_model_args", "load_model_args", "resolve_device", "run_frame_size",
           "sampling_options"]


def resolve_device(name: str | None) -> str:
    """``name`` or the best available device; a CUDA request without CUDA is a usage error."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return name


def sampling_options(run: SamplingConfig, steps: int | None, temperature: float | None,
                     schedule: str | None) -> SamplingConfig:
    """The run's sampling config with the command-line options that were given (None = keep the run's)."""
    given = {"steps": steps, "temperature": temperature, "schedule": schedule}
    return replace(run, **{k: v for k, v in given.items() if v is not None})


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The options ``generate`` and ``play`` share: the run, the prompt, sampling, device and cache."""
    p.add_argument("--checkpoint", required=True, help="lam-dynamics (or dynamics) run directory")
    p.add_argument("--prompt", required=True,
                   help="image/sketch file, video file, shard.tar (first clip) or shard.tar#<sample key>")
    p.add_argument("--prompt-start", type=int, default=0, help="first prompt frame (10 FPS index; default 0)")
    p.add_argument("--prompt-frames", type=int, default=1,
                   help="prompt frames (default 1; the model keeps at most its window - 1)")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="images/videos not 16:9: crop the centre (default, as the pipeline) or pad")
    p.add_argument("--steps", type=int, help="MaskGIT steps per frame (default: the run's config, 25)")
    p.add_argument("--temperature", type=float,
                   help="sampling temperature (default: the run's preset; paper: 1.0 CoinRun, 2.0 Platformers; "
                        "0 = greedy)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), help="unmasking schedule (default: the run's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="default: the run's own (config.json 'precision', what its tokens and actions were made "
                        "in during training); another value makes inference differ from training")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole window every step (reference path)")
    p.add_argument("--context", choices=CONTEXTS, default="window",
                   help="beyond the trained window: 'window' (default) predicts each frame from a fresh window of "
                        "the last T-1 frames, as in training; 'stream' keeps a rolling cache (constant cost per "
                        "frame; deeper layers see further back than in training)")
    p.add_argument("--compile", action="store_true",
                   help="run the dynamics step through torch.compile (CUDA graphs on a GPU): faster frames after "
                        "a one-off compile per cache length (seconds to minutes); same tokens up to float rounding")


def load_model_args(args: argparse.Namespace) -> tuple[SamplingConfig, torch.Tensor, Genie]:
    """Sampling options, prompt and model of ``add_model_args``' options (cheap checks first, the model last).
    The prompt is loaded at the run's frame size (read from its config.json, before any weights)."""
    if args.compile and args.no_cache:
        raise UsageError("--compile compiles the cached step; it cannot be combined with --no-cache")
    prompt = load_prompt(args.prompt, args.prompt_start, args.prompt_frames, args.fit,
                         size=run_frame_size(args.checkpoint))
    genie = load_genie_run(args.checkpoint, resolve_device(args.device))
    genie.precision = args.precision or genie.precision
    if args.compile:
        genie.compile_generation()
    return sampling_options(genie.sampling, args.steps, args.temperature, args.schedule), prompt, genie


def run_frame_size(run_dir: str | Path) -> tuple[int, int]:
    """(height, width) of a run's models from its config.json; the clip default when there is none to read
    (loading the run then says what is wrong with it)."""
    try:
        cfg, _, _ = read_run_config(run_dir)
    except (OSError, ValueError, KeyError):
        return CLIP_SIZE
    return cfg.frame_size
