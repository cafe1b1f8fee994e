"""Agents from latent actions (Genie Fig. 15) on CPU: expert data, LAM labels, policies, held-out evaluation.

    python benchmarks/bc_cpu.py --genie runs/coinrun-cpu/genie --out runs/bc-cpu      # make bc-cpu
    python benchmarks/bc_cpu.py --out /tmp/bc --smoke      # minutes: tiny data, a tiny LAM trained here

Steps, all through ``python -m modeling bc``:
1. ``bc expert`` per mode (easy, hard): the look-ahead planner on training levels 0..N-1; its solve share.
2. ``bc label``: the LAM of ``--genie`` (the ``make coinrun-cpu`` run, trained on random-policy hard-mode data
   only) labels every expert transition. ``--smoke`` without ``--genie`` trains a tiny 64x64 LAM for a few
   steps on the expert shards instead: its labels are noise, and the smoke numbers say nothing about Fig. 15.
3. ``bc evaluate``: per mode and seed, the latent policy (k = 0, 50, 200, 1000 labelled transitions), the oracle
   and a random agent, each played on the 100 held-out levels; ``results.md``, ``results.json``, ``fig15.png``.

The budget is not enforced: the full settings were sized from the smoke run's rates on this machine (2 shared
cores): expert ~1 s per level, policy training ~N s per epoch, evaluation ~M s per agent (see docs/modeling.md).
``timings.json`` in ``--out`` records the seconds of every step so the estimate can be checked.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = ("easy", "hard")


def bc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "modeling", "bc", *args], check=True)


def train_smoke_lam(shards: Path, out: Path, steps: int = 3) -> Path:
    """A tiny 64x64 tokenizer + LAM/dynamics trained for a few steps (smoke only: the labels are noise)."""
    fast = []
    for section in ("train_tokenizer", "train_lam_dynamics"):
        for key, value in {"max_steps": steps, "warmup_steps": 1, "ckpt_every": steps, "log_every": 1}.items():
            fast += ["--set", f"{section}.{key}={value}"]
    size = ["--set", "tokenizer.frame_height=64", "--set", "tokenizer.frame_width=64"]
    pattern = str(shards / "shards" / "shard-*.tar")
    subprocess.run([sys.executable, "-m", "modeling", "train", "tokenizer", "--shards", pattern, "--config", "tiny",
                    "--out", str(out / "tokenizer"), "--device", "cpu", *fast, *size], check=True)
    subprocess.run([sys.executable, "-m", "modeling", "train", "lam-dynamics", "--shards", pattern, "--config",
                    "tiny", "--tokenizer", str(out / "tokenizer"), "--out", str(out / "genie"), "--device", "cpu",
                    *fast, *size], check=True)
    return out / "genie"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--genie", help="lam-dynamics run whose LAM labels the expert (make coinrun-cpu's genie/)")
    parser.add_argument("--train-levels", type=int, default=300, help="expert levels per mode (300)")
    parser.add_argument("--eval-levels", default="100000-100099", help="held-out levels (100)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ks", default="0,50,200,1000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=1000, help="steps per evaluation episode (1000)")
    parser.add_argument("--smoke", action="store_true",
                        help="4 expert levels, 3 held-out levels, 2 seeds, 60-step episodes, a tiny LAM if no --genie")
    args = parser.parse_args()
    if args.smoke:
        args.train_levels, args.eval_levels, args.seeds, args.ks, args.epochs, args.max_steps = (
            4, "100000-100002", 2, "0,50,200", 1, 60)
    if args.genie and not Path(args.genie).is_dir():
        if not args.smoke:
            parser.error(f"--genie {args.genie} is not a run directory (run make coinrun-cpu first)")
        print(f"bc-cpu: smoke: no run at {args.genie}; a tiny LAM is trained instead")
        args.genie = None
    if not args.genie and not args.smoke:
        parser.error("--genie is required (a lam-dynamics run, e.g. runs/coinrun-cpu/genie from make coinrun-cpu)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for mode in MODES:
        t = time.perf_counter()
        bc("expert", str(out / f"expert-{mode}"), "--mode", mode, "--levels", f"0-{args.train_levels - 1}")
        timings[f"expert_{mode}"] = time.perf_counter() - t
    genie = args.genie
    if genie is None:
        t = time.perf_counter()
        genie = str(train_smoke_lam(out / "expert-easy", out / "smoke-lam"))
        timings["smoke_lam"] = time.perf_counter() - t
    for mode in MODES:
        t = time.perf_counter()
        bc("label", "--expert", str(out / f"expert-{mode}"), "--genie", genie)
        timings[f"label_{mode}"] = time.perf_counter() - t
    t = time.perf_counter()
    bc("evaluate", *[a for mode in MODES for a in ("--expert", f"{mode}={out / f'expert-{mode}'}")],
       "--out", str(out / "results"), "--eval-levels", args.eval_levels, "--seeds", str(args.seeds),
       "--ks", args.ks, "--epochs", str(args.epochs), "--max-steps", str(args.max_steps))
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    (out / "timings.json").write_text(json.dumps({"smoke": args.smoke, "genie": genie, "seconds": timings}, indent=1))
    print(json.dumps(timings, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
