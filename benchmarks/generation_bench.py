"""Generation speed: frames per second of Genie inference, cached vs uncached, and per-frame cost over a long rollout.

    python benchmarks/generation_bench.py                                       # CPU: tiny and mid, batch 1 and 8
    python benchmarks/generation_bench.py --config coinrun --device cuda --batch 1 16 --amp   # on a GPU
    python benchmarks/generation_bench.py --count-flops tiny mid coinrun        # FLOPs per frame (any machine)

A real ``Genie`` from random weights (speed does not depend on them), per ``--context`` (window, stream): frames/s
with the KV cache per batch size against the uncached path in the same run, from a full window; and, at batch 1,
frame 5 against frame 50 of one rollout (flat for ``stream``; ``window`` re-encodes the window once per frame).
A frame is one rollout's frame: ``--steps`` MaskGIT iterations plus a decoder pass. One CPU thread by default
(shared-machine timings swing with threads); ``--threads`` for more. Configs: ``modeling.configs``'s presets and
``mid``. Record: docs/measurements/2026-12-01-generation-speed.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.configs import get_config  # noqa: E402
from modeling.dynamics import DynamicsModel  # noqa: E402
from modeling.genie import Genie  # noqa: E402
from modeling.lam import LatentActionModel  # noqa: E402
from modeling.maskgit import SamplingConfig  # noqa: E402
from modeling.st_transformer import CONTEXTS  # noqa: E402
from modeling.tokenizer import VideoTokenizer  # noqa: E402

# CoinRun's layout (1024 codes, 16-frame window, 6 actions) at a size one CPU core runs in about half a second
# per frame: patch 10 (9x16 tokens per frame instead of 23x40), 4-layer d256 dynamics, a 2-layer d256 decoder.
MID = {"tokenizer.patch_size": 10, "tokenizer.enc_layers": 2, "tokenizer.enc_dim": 256, "tokenizer.enc_heads": 4,
       "tokenizer.dec_layers": 2, "tokenizer.dec_dim": 256, "tokenizer.dec_heads": 4,
       "lam.enc_layers": 2, "lam.enc_dim": 128, "lam.enc_heads": 4, "lam.dec_layers": 2, "lam.dec_dim": 128,
       "lam.dec_heads": 4, "dynamics.layers": 4, "dynamics.dim": 256, "dynamics.heads": 4}


def build_genie(name: str, device: str) -> Genie:
    cfg = get_config("coinrun", MID) if name == "mid" else get_config(name)
    torch.manual_seed(0)
    return Genie(VideoTokenizer(cfg.tokenizer), LatentActionModel(cfg.lam), DynamicsModel(cfg.dynamics), cfg, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frame_times(genie: Genie, batch: int, prompt_frames: int, frames: int, sampling: SamplingConfig,
                use_cache: bool, amp: bool, context: str = "window") -> list[float]:
    """Seconds of each of ``frames`` generation steps (each ``batch`` frames) after a random prompt."""
    h, w = genie.frame_size
    prompt = torch.rand(batch, prompt_frames, 3, h, w, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(0, genie.num_actions, (frames,), generator=torch.Generator().manual_seed(1))
    precision = torch.autocast(genie.device.type, dtype=torch.bfloat16) if amp else nullcontext()
    times = []
    with torch.no_grad(), precision:
        session = genie.start(prompt.to(genie.device), use_cache=use_cache, seed=0, context=context)
        for a in actions.tolist():
            _sync(genie.device)
            started = time.perf_counter()
            session.step(a, sampling)
            _sync(genie.device)
            times.append(time.perf_counter() - started)
    return times


def fps(genie: Genie, batch: int, frames: int, sampling: SamplingConfig, use_cache: bool, amp: bool,
        context: str = "window") -> float:
    """Frames/s in the steady state: a prompt of window - 1 frames, so every step attends to a full window."""
    times = frame_times(genie, batch, genie.window - 1, frames, sampling, use_cache, amp, context)
    return batch * len(times) / sum(times)


def flops_per_frame(genie: Genie, steps: int) -> tuple[float, float]:
    """(FLOPs of one generated frame at ``steps`` MaskGIT steps, of which per step), batch 1, full window, cache on.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` over real steps with 1 and 2 MaskGIT iterations:
    their difference is one iteration, the rest (commit, decoder) is paid once per frame.
    """
    h, w = genie.frame_size
    prompt = torch.rand(1, genie.window - 1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(genie.device)
    counts = []
    with torch.no_grad():
        for n in (1, 2):
            session = genie.start(prompt, use_cache=True, seed=0)
            counter = FlopCounterMode(display=False)
            with counter:
                session.step(0, SamplingConfig(steps=n))
            counts.append(counter.get_total_flops())
    per_step = counts[1] - counts[0]
    return counts[0] + (steps - 1) * per_step, per_step


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", nargs="+", default=["tiny", "mid"], help="tiny, mid, coinrun, platformers-small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--frames", type=int, default=4, help="timed steps, cached (default 4)")
    p.add_argument("--ref-frames", type=int, default=2, help="timed steps, uncached reference (default 2)")
    p.add_argument("--steps", type=int, default=25, help="MaskGIT steps per frame (default 25, the paper's)")
    p.add_argument("--positions", type=int, nargs=2, default=[5, 50], metavar=("EARLY", "LATE"),
                   help="frames compared for the flat-cost check (default 5 50)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (for CUDA)")
    p.add_argument("--context", nargs="+", choices=CONTEXTS, default=list(CONTEXTS),
                   help="generation contexts to time (default: window stream)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--count-flops", nargs="*", metavar="CONFIG",
                   help="only count FLOPs per generated frame of these configs (default: --config) and the "
                        "sustained TFLOP/s that 10 frames/s needs; no timing")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sampling = SamplingConfig(steps=args.steps)
    early, late = args.positions
    if args.count_flops is not None:
        print(f"{'config':<18} | {'GFLOP/frame':>11} | {'GFLOP/step':>10} | {'TFLOP/s for 10 frames/s':>23}")
        for name in args.count_flops or args.config:
            total, per_step = flops_per_frame(build_genie(name, args.device), args.steps)
            print(f"{name:<18} | {total / 1e9:>11.2f} | {per_step / 1e9:>10.2f} | {10 * total / 1e12:>23.2f}")
        return
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"Genie generation: {args.steps} MaskGIT steps per frame, random weights, {where}"
          f"{', bf16 autocast' if args.amp else ''} (torch {torch.__version__})")
    genies = {name: build_genie(name, args.device) for name in args.config}
    for genie in genies.values():  # warm up: first calls allocate and pick kernels
        frame_times(genie, 1, 1, 1, sampling, True, args.amp)

    print(f"\n{'config':<20} {'context':<7} {'batch':>5} | {'cached frames/s':>15} | "
          f"{'uncached frames/s (ref)':>23} | {'ratio':>6}")
    for name, genie in genies.items():
        label = f"{name} (T={genie.window}, {genie.dynamics.cfg.token_grid[0]}x{genie.dynamics.cfg.token_grid[1]})"
        for context in args.context:
            for batch in args.batch:
                cached = fps(genie, batch, args.frames, sampling, True, args.amp, context)
                uncached = fps(genie, batch, args.ref_frames, sampling, False, args.amp, context)
                print(f"{label:<20} {context:<7} {batch:>5} | {cached:>15.2f} | {uncached:>23.2f} | "
                      f"{cached / uncached:>5.1f}x", flush=True)

    print("\ncached, batch 1, one rollout from a 1-frame prompt (median of 3 frames from each position)")
    print(f"{'config':<20} {'context':<7} | {f'frame {early} ms':>12} | {f'frame {late} ms':>12} | "
          f"{f'{late} / {early}':>7}")
    for name, genie in genies.items():
        for context in args.context:
            times = frame_times(genie, 1, 1, late + 2, sampling, True, args.amp, context)
            t_early = statistics.median(times[early - 1:early + 2])
            t_late = statistics.median(times[late - 1:late + 2])
            print(f"{name:<20} {context:<7} | {1000 * t_early:>12.1f} | {1000 * t_late:>12.1f} | "
                  f"{t_late / t_early:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
