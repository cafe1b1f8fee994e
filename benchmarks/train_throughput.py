"""Training throughput and MFU of one phase of a config, on whatever device this runs on.

Measures steps/s, windows/s and tokens/s of full training steps (forward, backward, AdamW; bf16 autocast on
CUDA) on synthetic video, so the number is the model's, not the loader's (see loader_bench.py for that).
FLOPs per step are COUNTED, not estimated by hand: ``torch.utils.flop_counter.FlopCounterMode`` over one
forward+backward on the meta device (no memory, no time; counts matmuls and attention).

MFU = achieved FLOP/s / peak. The peak is ``--peak-tflops`` when given (e.g. 989 for H100 SXM bf16 dense);
in the same run the script also measures the device's own large-matmul throughput as a reference, and reports
the ratio against it (on CPU that is the only meaningful peak).

    python benchmarks/train_throughput.py --config tiny --phase tokenizer --batch-size 4 --steps 10
    python benchmarks/train_throughput.py --config coinrun --phase tokenizer --peak-tflops 989   # on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.configs import get_config  # noqa: E402
from modeling.data import to_float_video  # noqa: E402
from modeling.tokenizer import VideoTokenizer  # noqa: E402
from modeling.train import LamDynamicsObjective, TokenizerObjective  # noqa: E402


def build(phase: str, cfg, device) -> torch.nn.Module:
    if phase == "tokenizer":
        return TokenizerObjective(cfg).to(device)
    tokenizer = VideoTokenizer(cfg.tokenizer).to(device)
    return LamDynamicsObjective(cfg, tokenizer, seed=0, rank=0).to(device)


def count_flops(phase: str, cfg, batch: int) -> int:
    """FLOPs of one training step's forward+backward (optimizer ignored), counted on the meta device."""
    with torch.device("meta"):
        model = build(phase, cfg, "meta")
        video = synthetic_video(cfg, batch, "meta")
    counter = FlopCounterMode(display=False)
    with counter:
        if phase == "tokenizer":
            out = model({"video": video}, 0)
        else:
            out = _meta_lam_dynamics(model, to_float_video(video))
        out["loss"].backward()
    return counter.get_total_flops()


def _meta_lam_dynamics(model, video):
    # Generators do not exist on the meta device: count the LAM and the dynamics loss with a fixed mask.
    lam_out = model.lam(video)
    tokens = torch.zeros(video.shape[0], video.shape[1], *model.dynamics.cfg.token_grid, dtype=torch.long,
                         device="meta")
    with torch.no_grad():
        model.tokenizer[0]._latents(video)  # the frozen tokenizer's encoder runs every step too
    mask = torch.zeros(tokens.shape, dtype=torch.bool, device="meta")
    logits = model.dynamics(tokens, lam_out["actions"], mask)
    loss = lam_out["loss"] + logits.float().logsumexp(-1).mean()
    return {"loss": loss}


def synthetic_video(cfg, batch: int, device) -> torch.Tensor:
    """A loader-shaped batch: uint8 (B, T, H, W, 3)."""
    shape = (batch, cfg.tokenizer.num_frames, cfg.tokenizer.frame_height, cfg.tokenizer.frame_width, 3)
    if str(device) == "meta":
        return torch.empty(shape, dtype=torch.uint8, device="meta")
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--phase", choices=["tokenizer", "lam-dynamics"], default="tokenizer")
    parser.add_argument("--batch-size", type=int, help="windows per step (default: the config's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, help="device peak for MFU (e.g. 989 for H100 bf16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    parser.add_argument("--count-only", action="store_true", help="print the counted FLOPs per step and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = get_config(args.config)
    tcfg = cfg.train_tokenizer if args.phase == "tokenizer" else cfg.train_lam_dynamics
    batch = args.batch_size or tcfg.batch_size
    flops = count_flops(args.phase, cfg, batch)
    if args.count_only:
        print(f"config {args.config}, phase {args.phase}, batch {batch}: {flops / 1e12:.2f} TFLOP per training step "
              f"(forward+backward); at 40% MFU of a 989 TFLOP/s H100: {flops / (0.4 * 989e12):.3f} s/step")
        return

    torch.manual_seed(0)
    model = build(args.phase, cfg, device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4, fused=device.type == "cuda")
    inputs = {"video": synthetic_video(cfg, batch, device)}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(device)
            start = time.perf_counter()
        with autocast:
            loss = model(inputs, i)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    achieved = flops / seconds
    h, w = cfg.tokenizer.token_grid
    tokens = batch * cfg.tokenizer.num_frames * h * w
    peak_measured = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    params = sum(p.numel() for p in trained)
    print(f"config {args.config}, phase {args.phase}, device {device}, batch {batch} x {cfg.tokenizer.num_frames} "
          f"frames, {params / 1e6:.2f}M trained params, threads {args.threads}")
    print(f"{'steps/s':>8} | {'windows/s':>9} | {'tokens/s':>10} | {'GFLOP/step':>10} | {'TFLOP/s':>8} | "
          f"{'matmul TFLOP/s (ref)':>20} | ratio to ref | MFU (peak flag)")
    mfu = f"{achieved / (args.peak_tflops * 1e12):.1%}" if args.peak_tflops else "n/a"
    print(f"{1 / seconds:>8.2f} | {batch / seconds:>9.1f} | {tokens / seconds:>10.0f} | {flops / 1e9:>10.2f} | "
          f"{achieved / 1e12:>8.4f} | {peak_measured / 1e12:>20.4f} | {achieved / peak_measured:>12.1%} | {mfu}")


if __name__ == "__main__":
    main()
