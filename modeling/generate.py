"""``python -m modeling generate``: rollouts of a trained Genie from a prompt and latent actions, to a file.

    python -m modeling generate --checkpoint RUN --prompt shot.png --actions 0,3,3,1 --out rollout.mp4

The prompt is anything ``modeling.prompts`` loads; each generated frame takes one latent action (0 ..
num_actions-1). ``--actions`` given k times makes k rollouts, ``--random-actions N`` N random actions per rollout,
``--batch M`` M samples per action sequence; all run as one batch with one sampler seeded by ``--seed``, so samples
differ and the same command reproduces the same bytes. By ``--out`` suffix: ``.mp4`` (deterministic H.264) or
``.gif``, the rollouts side by side in a grid (a row per action sequence when ``--batch`` > 1); ``.png``, a row
per rollout; ``.npy``, uint8 (B, T, 90, 160, 3). A sidecar ``<out>.json`` records the checkpoint, prompt, seed,
sampling options and every rollout's actions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modeling.cli_args import StrictParser, UsageError, add_model_args, load_model_args
from modeling.genie import Genie
from modeling.maskgit import SamplingConfig
from modeling.prompts import PromptError
from schemas.clip_codec import encode_clip
from schemas.clip_format import CLIP_FPS
from schemas.figures import to_uint8

OUTPUT_SUFFIXES = (".mp4", ".gif", ".png", ".npy")
GRID_PAD = 2  # pixels between tiles (even: H.264 needs even frame sizes)
PAD_VALUE = 24  # dark grey gutters


def parse_actions(text: str) -> list[int]:
    """'0,3,3,1' -> [0, 3, 3, 1] (spaces allowed)."""
    try:
        actions = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not actions:
        raise argparse.ArgumentTypeError("no actions given")
    return actions


def action_plan(action_lists: list[list[int]] | None, random_length: int | None, batch: int, num_actions: int,
                seed: int) -> torch.Tensor:
    """Actions long (B, N) of every rollout, checked against the model's ``num_actions``."""
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if random_length is not None:
        if random_length < 1:
            raise UsageError(f"--random-actions must be >= 1, got {random_length}")
        rng = np.random.default_rng(seed)
        return torch.from_numpy(rng.integers(0, num_actions, size=(batch, random_length)))
    lengths = sorted({len(a) for a in action_lists})
    if len(lengths) > 1:
        raise UsageError(f"every --actions needs the same length, got lengths {lengths}")
    for actions in action_lists:
        bad = [a for a in actions if not 0 <= a < num_actions]
        if bad:
            raise UsageError(f"action {bad[0]} is out of range: this model has {num_actions} latent actions "
                             f"(0..{num_actions - 1})")
    return torch.tensor([a for a in action_lists for _ in range(batch)], dtype=torch.long)


def rollout_frames(genie: Genie, prompt: torch.Tensor, actions: torch.Tensor, sampling: SamplingConfig,
                   seed: int = 0, use_cache: bool = True, log=None, context: str = "window") -> np.ndarray:
    """uint8 (B, T, H, W, 3) frames of ``actions.shape[0]`` rollouts from one prompt (1, P, 3, H, W).

    The same as ``Genie.rollout`` (one session, one seeded sampler), stepping here to report progress.
    """
    batch, steps = actions.shape
    session = genie.start(prompt.expand(batch, *prompt.shape[1:]), use_cache=use_cache, seed=seed, context=context)
    started = last_log = time.perf_counter()
    for i in range(steps):
        session.step(actions[:, i], sampling)
        now = time.perf_counter()
        if log is not None and (now - last_log >= 2.0 or i == steps - 1):  # progress on long rollouts
            log(f"frame {i + 1}/{steps} ({batch * (i + 1) / (now - started):.2f} frames/s)")
            last_log = now
    return to_uint8(torch.stack(session.frames, 1))


def grid_video(videos: np.ndarray, cols: int) -> np.ndarray:
    """(B, T, H, W, 3) -> (T, rows*H + gutters, cols*W + gutters, 3): rollout i at row i // cols, col i % cols."""
    batch, frames, h, w, _ = videos.shape
    rows = math.ceil(batch / cols)
    out = np.full((frames, rows * h + (rows - 1) * GRID_PAD, cols * w + (cols - 1) * GRID_PAD, 3), PAD_VALUE,
                  np.uint8)
    for i, video in enumerate(videos):
        y, x = (i // cols) * (h + GRID_PAD), (i % cols) * (w + GRID_PAD)
        out[:, y:y + h, x:x + w] = video
    return out


def strip_image(videos: np.ndarray) -> np.ndarray:
    """(B, T, H, W, 3) -> one image, one row per rollout and one column per frame."""
    return grid_video(videos.reshape(-1, 1, *videos.shape[2:]), videos.shape[1])[0]


def default_cols(num_sequences: int, batch: int) -> int:
    if num_sequences > 1 and batch > 1:
        return batch  # one row per action sequence, its samples side by side
    return math.ceil(math.sqrt(num_sequences * batch))


def write_output(path: Path, videos: np.ndarray, cols: int, fps: int = CLIP_FPS, scale: int = 1) -> None:
    """Write ``videos`` (B, T, H, W, 3) uint8 in the format ``path``'s suffix names (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, videos)
        return
    if scale > 1:  # nearest-neighbour: 160x90 frames are small on a screen
        videos = videos.repeat(scale, axis=2).repeat(scale, axis=3)
    if suffix == ".png":
        Image.fromarray(strip_image(videos)).save(path)
        return
    grid = grid_video(videos, cols)
    if suffix == ".mp4":
        path.write_bytes(encode_clip(grid, fps=fps))
    elif suffix == ".gif":
        images = [Image.fromarray(frame) for frame in grid]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    else:
        raise UsageError(f"--out must end in one of {', '.join(OUTPUT_SUFFIXES)}, got {path.name!r}")


def _parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="python -m modeling generate",
                     description="Roll a trained Genie out from a prompt and latent actions, to a file.",
                     epilog="Outputs: .mp4/.gif (rollouts side by side in a grid), .png (a strip: one row per "
                            "rollout, one column per frame), .npy (uint8 B x T x 90 x 160 x 3). See "
                            "docs/generation.md.")
    add_model_args(p)
    acts = p.add_mutually_exclusive_group(required=True)
    acts.add_argument("--actions", action="append", type=parse_actions, metavar="A,B,C,...",
                      help="latent actions, one per generated frame (repeat for several rollouts)")
    acts.add_argument("--random-actions", type=int, metavar="N", help="N random actions per rollout")
    p.add_argument("--batch", type=int, default=1, help="rollouts per action sequence (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling (and random-action) seed (default 0)")
    p.add_argument("--out", required=True, help="output file: .mp4, .gif, .png or .npy")
    p.add_argument("--cols", type=int, help="grid columns (default: one row per action sequence when several are "
                   "sampled --batch > 1 times each, else a near-square grid)")
    p.add_argument("--fps", type=int, default=CLIP_FPS, help=f"output frame rate (default {CLIP_FPS})")
    p.add_argument("--scale", type=int, default=1, help="integer upscale of .mp4/.gif/.png outputs (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    out = Path(args.out)
    try:
        if out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UsageError(f"--out must end in one of {', '.join(OUTPUT_SUFFIXES)}, got {out.name!r}")
        if not out.parent.is_dir():
            raise UsageError(f"--out: directory {out.parent} does not exist")
        if args.scale < 1 or args.fps < 1 or (args.cols is not None and args.cols < 1):
            raise UsageError("--scale, --fps and --cols must be >= 1")
        sampling, prompt, genie = load_model_args(args)
        actions = action_plan(args.actions, args.random_actions, args.batch, genie.num_actions, args.seed)
        kept = min(prompt.shape[1], genie.window - 1)
        if kept < prompt.shape[1]:
            log(f"note: the model's window is {genie.window} frames; using the last {kept} of "
                f"{prompt.shape[1]} prompt frames")
        started = time.perf_counter()
        videos = rollout_frames(genie, prompt, actions, sampling, args.seed, not args.no_cache, log, args.context)
        elapsed = time.perf_counter() - started
        num_sequences = 1 if args.actions is None else len(args.actions)
        cols = args.cols or default_cols(num_sequences, args.batch)
        write_output(out, videos, cols, args.fps, args.scale)
    except (FileNotFoundError, PromptError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record = {"checkpoint": str(args.checkpoint), "prompt": str(args.prompt), "prompt_start": args.prompt_start,
              "prompt_frames": kept, "seed": args.seed, "sampling": asdict(sampling), "use_cache": not args.no_cache,
              "context": args.context, "compiled": args.compile, "precision": genie.precision,
              "grid_cols": cols, "actions": [",".join(map(str, a)) for a in actions.tolist()], "frames": int(videos.shape[1])}
    out.with_name(out.name + ".json").write_text(json.dumps(record, indent=1) + "\n")
    batch, steps = actions.shape
    print(f"wrote {out} ({batch} rollout(s) x {videos.shape[1]} frames: {kept} prompt + {steps} generated; "
          f"{batch * steps / elapsed:.2f} frames/s on {genie.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
