"""The LAM's CPU proof (``make lam-cpu``): latent actions that carry the action, on CoinRun, in ~30 minutes.

    python benchmarks/lam_cpu.py --out runs/lam-cpu                  # make lam-cpu
    python benchmarks/lam_cpu.py --out /tmp/lam-cpu --smoke          # harness check, a few minutes
    python benchmarks/lam_cpu.py --out runs/lam-cpu-best-fit --s-per-step 0.55 \
        --lam-set lam.code_choice=best_fit --lam-set lam.code_effect=image \
        --lam-set lam.focus_weight=50 --lam-set lam.focus_sigma=4 \
        --lam-set lam.num_actions=16 --lam-set lam.effect_crop=8         # LAM options, both datasets
    python benchmarks/lam_cpu.py ... --lam-set lam.train_codes=16 --lam-set lam.num_actions=8 \
        --prune-share 0.65                                                # 16 codes pruned to 8 at 65% of the steps

Steps, through the project's own commands: ``procgen-dataset`` twice (``--policy sticky``, a departure from the
paper, and ``--policy random``, the paper's; levels 0-99 train, 10000-10009 held out); ``train lam --config
coinrun-cpu`` on each, frames only; ``benchmarks/lam_probe.py`` on each held-out split (with the supervised ceiling
on random-policy data); ``report.md`` / ``report.json`` with the targets marked. Existing outputs are kept, so a
rerun continues. Record: docs/measurements/2026-12-06-lam-cpu.md.
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

POLICIES = ("sticky", "random")
TARGETS = {"nmi": 0.3, "codes": 4, "gap_db": 0.5, "ceiling_share": 0.5}


def build_data(out: Path, policy: str, args: argparse.Namespace) -> None:
    if (out / "dataset.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "pipeline", "procgen-dataset", str(out), "--levels", args.levels,
                    "--holdout-levels", args.holdout_levels, "--steps", str(args.steps), "--policy", policy,
                    "--levels-per-shard", "25", "--in-process"], check=True)


def train_lam(shards: Path, run: Path, minutes: float, args: argparse.Namespace) -> None:
    steps = max(2, int(minutes * 60 / args.s_per_step))
    sets = {"batch_size": args.batch, "max_steps": steps, "warmup_steps": min(50, steps), "log_every": 10,
            "ckpt_every": max(steps // 4, 1), "image_every": steps}
    overrides = [a for k, v in sets.items() for a in ("--set", f"train_lam_dynamics.{k}={v}")]
    overrides += [a for kv in args.lam_set for a in ("--set", kv)]
    if args.prune_share:  # the codebook pruned at this share of the run's own steps (lam.train_codes)
        overrides += ["--set", f"lam.prune_at={max(1, int(args.prune_share * steps))}"]
    if args.smoke:
        overrides += ["--set", "lam.vq_warmup_steps=2", "--set", "lam.check_every=2"]
    if (run / "config.json").is_file():
        overrides = []  # resumed (or finished): the run keeps its own config
    subprocess.run([sys.executable, "-m", "modeling", "train", "lam", "--shards", str(shards), "--config",
                    "coinrun-cpu", "--out", str(run), "--device", "cpu", "--max-minutes", f"{minutes:.2f}",
                    *overrides], check=True)


def verdicts(results: dict) -> list[tuple[str, str, bool]]:
    sticky, rnd = results["sticky"], results["random"]
    rows = [(f"sticky: NMI (6 effects) >= {TARGETS['nmi']}", f"{sticky['lam_6']['nmi']:.3f}",
             sticky["lam_6"]["nmi"] >= TARGETS["nmi"]),
            (f"sticky: codes used >= {TARGETS['codes']}", str(sticky["lam_6"]["codes"]),
             sticky["lam_6"]["codes"] >= TARGETS["codes"]),
            (f"sticky: decoder gap (inferred - best constant code) >= {TARGETS['gap_db']} dB",
             f"{sticky['check']['gap_db']:+.2f} dB", sticky["check"]["gap_db"] >= TARGETS["gap_db"])]
    if "nmi_share_of_ceiling" in rnd:
        rows.append((f"random: NMI >= {TARGETS['ceiling_share']} x supervised ceiling",
                     f"{rnd['lam_6']['nmi']:.3f} / {rnd['ceiling']['nmi']:.3f} = {rnd['nmi_share_of_ceiling']:.2f}",
                     rnd["nmi_share_of_ceiling"] >= TARGETS["ceiling_share"]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall budget in minutes (30)")
    parser.add_argument("--levels", default="0-99")
    parser.add_argument("--holdout-levels", default="10000-10009")
    parser.add_argument("--steps", type=int, default=1000, help="frames per level (1000)")
    parser.add_argument("--batch", type=int, default=16, help="LAM batch of 8-frame windows (16)")
    parser.add_argument("--s-per-step", type=float, default=1.0,
                        help="assumed seconds per LAM step: sets max_steps so the schedule ends with the share")
    parser.add_argument("--lam-set", action="append", default=[], metavar="lam.KEY=VALUE",
                        help="a LAM option for both runs (repeatable), e.g. lam.code_choice=best_fit")
    parser.add_argument("--prune-share", type=float, default=0.0, metavar="S",
                        help="with --lam-set lam.train_codes=K: prune the codebook to lam.num_actions after this "
                             "share (0-1) of each LAM's steps (sets lam.prune_at per run)")
    parser.add_argument("--smoke", action="store_true", help="3 levels x 200 frames, LAMs of a few steps")
    args = parser.parse_args()
    bad = [kv for kv in args.lam_set if not kv.startswith("lam.") or "=" not in kv]
    if bad:
        parser.error(f"--lam-set takes lam.KEY=VALUE, got {bad[0]!r}")
    if args.prune_share and not (0 < args.prune_share < 1 and any(kv.startswith("lam.train_codes=")
                                                                   for kv in args.lam_set)):
        parser.error("--prune-share takes a share between 0 and 1 and needs --lam-set lam.train_codes=K")
    if args.smoke:
        args.levels, args.holdout_levels, args.steps, args.batch, args.budget_min = "0-2", "10000-10001", 200, 4, 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, seconds = time.perf_counter(), {}
    for policy in POLICIES:
        t = time.perf_counter()
        build_data(out / "data" / policy, policy, args)
        seconds[f"data_{policy}"] = round(time.perf_counter() - t, 1)
    # What is left: 45% sticky LAM, 30% random LAM, the rest probes and the ceiling (encoder only: ~1/3 a LAM step).
    left = args.budget_min - (time.perf_counter() - started) / 60
    shares = {"sticky": 0.45 * left, "random": 0.30 * left}
    results = {}
    for policy in POLICIES:
        data, run = out / "data" / policy, out / policy / "lam"
        t = time.perf_counter()
        train_lam(data / "train" / "shards", run, shares[policy], args)
        seconds[f"lam_{policy}"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        results[policy] = probe(str(run), str(data / "holdout"),
                                ceiling_train=str(data / "train" / "shards") if policy == "random" else None)
        seconds[f"probe_{policy}"] = round(time.perf_counter() - t, 1)
        print(table(results[policy]), flush=True)
    seconds["total"] = round(time.perf_counter() - started, 1)
    rows = verdicts(results)
    report = {"smoke": args.smoke, "args": vars(args), "seconds": seconds, "results": results,
              "targets": [{"target": n, "measured": m, "met": ok} for n, m, ok in rows]}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    lines = ["# make lam-cpu", "", f"{'SMOKE RUN: numbers mean nothing. ' if args.smoke else ''}"
             f"Total {seconds['total'] / 60:.1f} min; seconds per stage: {json.dumps(seconds)}", "",
             *([f"LAM options (off in the preset): {' '.join(args.lam_set)}", ""] if args.lam_set else []),
             "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {n} | {m} | {'yes' if ok else 'no'} |" for n, m, ok in rows]
    for policy in POLICIES:
        lines += ["", f"## {policy} policy (held-out levels {args.holdout_levels})", "", table(results[policy])]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
