"""The CoinRun case study (Genie, Appendix F) shrunk to a fixed wall budget on CPUs: data, training, evaluation.

    python benchmarks/coinrun_cpu.py --out runs/coinrun-cpu --budget-min 60      # make coinrun-cpu
    python benchmarks/coinrun_cpu.py --out /tmp/cr --budget-min 3 --smoke        # a few minutes, tiny data

Steps, through the project's own commands: ``python -m pipeline procgen-dataset`` (training and held-out levels);
calibration of each phase's seconds per step so ``max_steps`` (and the cosine schedule) fit its budget share, with
a wall-clock stop as a guard; tokenizer, then LAM + dynamics (``--tokenizer-share``); ``modeling.evaluate`` on the
held-out levels (PSNRs, ΔtPSNR, LAM code usage, NMI, consistency grid); ``report.json`` / ``report.md`` in
``--out``. The budget counts everything; the evaluation is sized to fit its reserve.
Record: docs/measurements/2026-12-04-coinrun-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.configs import get_config  # noqa: E402
from modeling.evaluate import EvalOptions, evaluate, interval_text  # noqa: E402
from modeling.genie import load_genie_run  # noqa: E402
from modeling.train import train  # noqa: E402

PRESET = "coinrun-cpu"
CALIBRATION_STEPS = 4  # the first step includes loader start-up; the rest time the model


def build_dataset(out: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "procgen-dataset", str(out), "--levels", args.levels,
           "--holdout-levels", args.holdout_levels, "--steps", str(args.steps), "--clip-frames",
           str(args.clip_frames), "--levels-per-shard", str(args.levels_per_shard)]
    cmd += ["--in-process"] if args.smoke else ["--workers", str(args.workers)]  # smoke: no worker start-up
    subprocess.run(cmd, check=True)
    return json.loads((out / "dataset.json").read_text())


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def seconds_per_step(shards: str, phase: str, run: Path, tokenizer: Path | None, batch: int) -> float:
    """Median seconds per training step after the first, from a short run's logged windows/s."""
    section = "train_tokenizer" if phase == "tokenizer" else "train_lam_dynamics"
    train(phase, shards, run, PRESET, {f"{section}.log_every": 1}, tokenizer_run=str(tokenizer) if tokenizer else None,
          until_step=CALIBRATION_STEPS, log=lambda _: None)
    rates = sorted(m["windows_per_s"] for m in read_metrics(run)[1:])
    return batch / rates[len(rates) // 2]


def train_phase(shards: str, phase: str, run: Path, tokenizer: Path | None, budget_s: float, s_per_step: float,
                log) -> dict:
    section = "train_tokenizer" if phase == "tokenizer" else "train_lam_dynamics"
    steps = max(2, int(budget_s / s_per_step))
    overrides = {f"{section}.max_steps": steps, f"{section}.warmup_steps": max(1, min(50, steps // 10)),
                 f"{section}.ckpt_every": steps, f"{section}.log_every": max(1, steps // 100)}
    started = time.perf_counter()
    last = train(phase, shards, run, PRESET, overrides, tokenizer_run=str(tokenizer) if tokenizer else None,
                 max_wall_s=budget_s, log=log)
    return {"planned_steps": steps, "steps": int(last.get("step", 0)), "seconds": time.perf_counter() - started,
            "budget_s": budget_s, "calibrated_s_per_step": s_per_step, "last": last}


def curves_png(runs: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4))
    for ax, (name, run) in zip(axes, runs.items(), strict=True):
        rows = read_metrics(run)
        for key in sorted({k for r in rows for k in r if "loss" in k or "psnr" in k}):
            ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r], label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("symlog")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def headline(metrics: dict) -> dict:
    agree = metrics["action_agreement"]
    return {"tokenizer_psnr_db": metrics["tokenizer"]["psnr"],
            "dynamics_psnr_db_at_t": metrics["dynamics"]["psnr_at_t"],
            "delta_t_psnr_db": metrics["delta_t_psnr"]["value"], "t": metrics["delta_t_psnr"]["t"],
            "delta_t_psnr_interval_95": metrics["delta_t_psnr"].get("interval_95"),
            "lam_codes_used": metrics["lam_usage"]["codes_used"], "lam_perplexity": metrics["lam_usage"]["perplexity"],
            "nmi": agree.get("nmi"), "many_to_one_accuracy": agree.get("many_to_one_accuracy"),
            "majority_baseline": agree.get("majority_baseline")}


def write_markdown(report: dict, path: Path) -> None:
    h, t = report["headline"], report["timings_s"]
    interval = interval_text(h.get("delta_t_psnr_interval_95"))
    lines = [f"# CoinRun on CPU ({report['preset']}, budget {report['budget_min']:g} min)", "",
             f"Held-out levels {report['dataset']['holdout']['levels']}, {report['eval_clips']} clips; "
             f"trained on levels {report['dataset']['train']['levels']} ({report['dataset']['train']['clips']} clips).",
             "", "| metric | value |", "|---|---|",
             f"| tokenizer PSNR | {h['tokenizer_psnr_db']:.2f} dB |",
             f"| dynamics PSNR at t={h['t']} | {h['dynamics_psnr_db_at_t']:.2f} dB |",
             f"| Δ{h['t']}PSNR (95% interval over clips) | {h['delta_t_psnr_db']:+.3f} dB{interval} |",
             f"| LAM codes used / perplexity | {h['lam_codes_used']} / {h['lam_perplexity']:.2f} |"]
    if h["nmi"] is not None:
        lines += [f"| NMI latent vs true actions | {h['nmi']:.3f} |",
                  f"| many-to-one accuracy (majority baseline) | {h['many_to_one_accuracy']:.3f} "
                  f"({h['majority_baseline']:.3f}) |"]
    lines += ["", "| stage | seconds | steps |", "|---|---|---|",
              f"| dataset | {t['dataset']:.0f} | |", f"| calibration | {t['calibration']:.0f} | |",
              f"| tokenizer | {t['tokenizer']:.0f} | {report['phases']['tokenizer']['steps']} |",
              f"| lam-dynamics | {t['lam_dynamics']:.0f} | {report['phases']['lam_dynamics']['steps']} |",
              f"| evaluation | {t['evaluation']:.0f} | |", f"| total | {t['total']:.0f} | |", "",
              "![training curves](training_curves.png)", "", "Consistency grid (rows: held-out start frames, "
              "columns: latent actions): ![grid](eval/consistency_grid.png)", "",
              "Full evaluation: [eval/report.html](eval/report.html), [eval/metrics.json](eval/metrics.json)."]
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (data, runs, report)")
    p.add_argument("--budget-min", type=float, default=60.0, help="wall budget of the whole run (default 60)")
    p.add_argument("--smoke", action="store_true", help="tiny data and evaluation (checks the harness only)")
    p.add_argument("--levels", default="0-199", help="training levels (default 0-199)")
    p.add_argument("--holdout-levels", default="10000-10019", help="held-out levels (default 10000-10019)")
    p.add_argument("--steps", type=int, default=1000, help="steps per level (default 1000, as the paper)")
    p.add_argument("--clip-frames", type=int, default=160)
    p.add_argument("--levels-per-shard", type=int, default=25)
    p.add_argument("--workers", type=int, default=2, help="Beam worker processes for the dataset")
    p.add_argument("--eval-clips", type=int, default=64, help="held-out clips evaluated (default 64)")
    p.add_argument("--tokenizer-share", type=float, default=0.4, help="tokenizer's share of the training time")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    if args.smoke:  # a handful of short levels: the harness end to end in a few minutes
        args.levels, args.holdout_levels, args.steps, args.clip_frames = "0-3", "10000-10001", 60, 30
        args.levels_per_shard, args.eval_clips = 2, 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total_s, started = args.budget_min * 60, time.perf_counter()
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    dataset = build_dataset(out / "data", args)
    timings["dataset"] = time.perf_counter() - t0
    shards, holdout = str(out / "data" / "train" / "shards"), str(out / "data" / "holdout" / "shards")

    t0 = time.perf_counter()
    batch = get_config(PRESET).train_tokenizer.batch_size
    tok_step = seconds_per_step(shards, "tokenizer", out / "calibration" / "tokenizer", None, batch)
    dyn_step = seconds_per_step(shards, "lam-dynamics", out / "calibration" / "genie",
                                out / "calibration" / "tokenizer", batch)
    timings["calibration"] = time.perf_counter() - t0
    reserve_s = max(30.0 if args.smoke else 120.0, 0.08 * total_s)  # evaluation and report
    left = total_s - (time.perf_counter() - started) - reserve_s
    if left <= 0:
        raise SystemExit(f"error: the budget of {args.budget_min} min is spent before training "
                         f"({time.perf_counter() - started:.0f} s on data and calibration)")
    log(f"coinrun-cpu: {left:.0f} s for training; s/step tokenizer {tok_step:.3f}, lam-dynamics {dyn_step:.3f}")

    runs = {"tokenizer": out / "tokenizer", "lam_dynamics": out / "genie"}
    phases = {"tokenizer": train_phase(shards, "tokenizer", runs["tokenizer"], None, left * args.tokenizer_share,
                                       tok_step, log)}
    timings["tokenizer"] = phases["tokenizer"]["seconds"]
    left = total_s - (time.perf_counter() - started) - reserve_s
    phases["lam_dynamics"] = train_phase(shards, "lam-dynamics", runs["lam_dynamics"], runs["tokenizer"],
                                         max(left, 1.0), dyn_step, log)
    timings["lam_dynamics"] = phases["lam_dynamics"]["seconds"]

    t0 = time.perf_counter()
    genie = load_genie_run(runs["lam_dynamics"])
    metrics = evaluate(genie, holdout, EvalOptions(num_clips=args.eval_clips, batch_size=8, t=4), out / "eval",
                       run_dir=runs["lam_dynamics"], log=log)
    timings["evaluation"] = time.perf_counter() - t0
    curves_png(runs, out / "training_curves.png")
    timings["total"] = time.perf_counter() - started
    report = {"preset": PRESET, "budget_min": args.budget_min, "smoke": args.smoke, "threads": args.threads,
              "dataset": dataset["splits"] | {"settings": dataset["settings"]}, "eval_clips": metrics["num_clips"],
              "headline": headline(metrics), "phases": phases, "timings_s": timings,
              "config": get_config(PRESET).to_dict()}
    for split in ("train", "holdout"):
        report["dataset"][split] = {k: v for k, v in report["dataset"][split].items() if k != "shards"}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "report.md")
    print(f"coinrun-cpu: {json.dumps(report['headline'])} in {timings['total']:.0f} s -> {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
