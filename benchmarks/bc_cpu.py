"""Agents from latent actions (Genie Fig. 15) on CPU: expert data, a LAM, its labels, policies, evaluation.

    python benchmarks/bc_cpu.py --out runs/bc-cpu                   # make bc-cpu
    python benchmarks/bc_cpu.py --out runs/bc-cpu --lam runs/coinrun-cpu/genie   # make coinrun-cpu's LAM instead
    python benchmarks/bc_cpu.py --out /tmp/bc --smoke                # minutes: tiny data, a LAM trained a few steps

Steps, all through ``python -m modeling``, per mode (easy, hard): ``bc expert`` on training levels; ``train lam``
on the expert's videos, frames only, unless ``--lam`` (on CPU the case study's random-policy LAM carries no action:
docs/measurements/2026-12-04-coinrun-cpu.md); ``lam_probe`` (``probe-MODE.json``) and ``bc label``; ``bc evaluate``:
latent policies (k = 0, 50, 200, 1000 labelled transitions), the oracle and a random agent on 100 held-out levels
(``results.md``, ``results.json``, ``fig15.png``). ``timings.json`` records each step; existing outputs are
skipped, so a rerun continues. Record: docs/measurements/2026-12-04-bc-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lam_probe import probe, table  # noqa: E402

MODES = ("easy", "hard")


def bc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "modeling", "bc", *args], check=True)


def train_lam(expert_dir: Path, out: Path, steps: int, batch: int) -> Path:
    """The coinrun-cpu LAM trained alone on one mode's expert videos (frames only); an existing run is resumed."""
    shards = str(expert_dir / "shards")
    fast = {"max_steps": steps, "batch_size": batch, "warmup_steps": min(50, steps), "ckpt_every": max(steps // 4, 1),
            "log_every": max(steps // 50, 1), "image_every": max(steps // 2, 1)}
    sets = [a for key, value in fast.items() for a in ("--set", f"train_lam_dynamics.{key}={value}")]
    if (out / "config.json").is_file():
        sets = []  # an existing run keeps its own config (resumed, or already finished)
    subprocess.run([sys.executable, "-m", "modeling", "train", "lam", "--shards", shards, "--config", "coinrun-cpu",
                    "--out", str(out), "--device", "cpu", *sets], check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--lam", "--genie", dest="lam",
                        help="an existing run whose LAM labels the expert (e.g. make coinrun-cpu's genie/); "
                             "default: train one on the expert videos")
    parser.add_argument("--lam-steps", type=int, default=1500, help="steps of the LAM trained here (1500)")
    parser.add_argument("--lam-batch", type=int, default=16, help="its batch of 8-frame windows (16)")
    parser.add_argument("--train-levels", type=int, default=300, help="expert levels per mode (300)")
    parser.add_argument("--eval-levels", default="100000-100099", help="held-out levels (100)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ks", default="0,50,200,1000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=1000, help="steps per evaluation episode (1000)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of easy, hard (both)")
    parser.add_argument("--smoke", action="store_true",
                        help="4 expert levels, 3 held-out levels, 2 seeds, 60-step episodes, a LAM trained 3 steps")
    args = parser.parse_args()
    if args.smoke:
        args.train_levels, args.eval_levels, args.seeds, args.ks, args.epochs, args.max_steps = (
            4, "100000-100002", 2, "0,50,200", 1, 60)
        args.lam_steps, args.lam_batch = 3, 2
    if args.lam and not Path(args.lam).is_dir():
        parser.error(f"--lam {args.lam} is not a run directory")
    modes = args.modes.split(",")
    if not modes or set(modes) - set(MODES) or len(set(modes)) != len(modes):
        parser.error(f"--modes {args.modes!r}: a comma-separated list of distinct modes of {', '.join(MODES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    experts = [out / f"expert-{mode}" for mode in modes]
    for mode, expert in zip(modes, experts, strict=True):
        if (expert / "expert.json").is_file():
            print(f"bc-cpu: {expert} exists, kept")
            continue
        t = time.perf_counter()
        bc("expert", str(expert), "--mode", mode, "--levels", f"0-{args.train_levels - 1}")
        timings[f"expert_{mode}"] = time.perf_counter() - t
    lams = {}
    for mode, expert in zip(modes, experts, strict=True):
        lams[mode] = args.lam
        if args.lam is None:
            t = time.perf_counter()
            lams[mode] = str(train_lam(expert, out / f"lam-{mode}", args.lam_steps, args.lam_batch))
            timings[f"lam_{mode}"] = time.perf_counter() - t
        t = time.perf_counter()
        probed = probe(lams[mode], str(expert))
        (out / f"probe-{mode}.json").write_text(json.dumps(probed, indent=1))
        print(f"bc-cpu: the {mode} LAM on its expert videos\n{table(probed)}", flush=True)
        timings[f"probe_{mode}"] = time.perf_counter() - t
        t = time.perf_counter()
        bc("label", "--expert", str(expert), "--lam", lams[mode])
        timings[f"label_{mode}"] = time.perf_counter() - t
    t = time.perf_counter()
    bc("evaluate", *[a for mode in modes for a in ("--expert", f"{mode}={out / f'expert-{mode}'}")],
       "--out", str(out / "results"), "--eval-levels", args.eval_levels, "--seeds", str(args.seeds),
       "--ks", args.ks, "--epochs", str(args.epochs), "--max-steps", str(args.max_steps))
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    (out / "timings.json").write_text(json.dumps({"smoke": args.smoke, "lam": lams, "seconds": timings}, indent=1))
    print(json.dumps(timings, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
