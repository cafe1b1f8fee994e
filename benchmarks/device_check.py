"""One GPU check of the whole model stack, as a table (``benchmarks/device_check.sh`` runs it).

Rows: bf16 MFU of tokenizer and LAM+dynamics training steps at a preset (default ``coinrun``, Appendix F's
64x64 setting; FLOPs counted on the meta device by ``train_throughput.count_flops``), generation frames/s
(batch 1, the preset's MaskGIT steps, KV cache, both contexts; eager, then with the compiled step, which is CUDA
graphs on a GPU, and their ratio), loader windows/s on freshly written shards of the preset's frame size, and a
short convergence check (LAM+dynamics on those shards: the dynamics loss must fall
below half its first value). With ``--lam-data`` (CoinRun shards with true actions, ``procgen-dataset``), also
the preset's LAM trained alone on them and probed on their held-out videos: NMI with the action and the oracle
gap (``lam_on_coinrun``). Results also go to ``$OUT/device_check.{txt,json}`` when ``OUT`` is set.

``--dry``: the tiny preset, a few steps, seconds on a CPU (tests/modeling/test_device_check.py runs it): it proves the
script works, not the numbers.

    bash benchmarks/device_check.sh                 # on one H100/H200, <= 8 minutes
    python benchmarks/device_check.py --dry --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import build, count_flops, sync, synthetic_video  # noqa: E402

from modeling.configs import get_config, parse_overrides  # noqa: E402
from modeling.data import LoaderConfig, clip_windows  # noqa: E402
from modeling.dynamics import DynamicsModel  # noqa: E402
from modeling.genie import Genie  # noqa: E402
from modeling.lam import LatentActionModel  # noqa: E402
from modeling.precision import autocast  # noqa: E402
from modeling.st_transformer import CONTEXTS  # noqa: E402
from modeling.tokenizer import VideoTokenizer  # noqa: E402
from modeling.train import make_optimizer, set_activation_checkpointing  # noqa: E402
from schemas.cli import UsageError  # noqa: E402
from tests.modeling_helpers import write_tiny_shards  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, SXM


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def train_mfu(phase: str, cfg, batch: int, steps: int, device: torch.device, compiled: bool = False) -> dict:
    """Timed full training steps (forward, backward, AdamW) on synthetic video under the run's precision;
    ``compiled``: through ``torch.compile`` as ``TrainConfig.compile`` runs it (two untimed steps compile)."""
    objective = build(phase, cfg, device).train()
    tcfg = cfg.train_tokenizer if phase == "tokenizer" else cfg.train_lam_dynamics
    set_activation_checkpointing(objective, tcfg.activation_checkpointing)  # as the trainer runs this preset
    optimizer = make_optimizer(objective.trained(), tcfg, device)
    model = torch.compile(objective) if compiled else objective
    video = synthetic_video(cfg, batch, device)

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(cfg.precision, device):
            loss = model({"video": video}, i)["loss"]
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup = 2 if compiled else 1
    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    flops = count_flops(phase, cfg, batch)
    peak = peak_tflops(device)
    return {"batch": batch, "s_per_step": seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / (peak * 1e12) if peak else None,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def generation_fps(cfg, frames: int, device: torch.device, profile: bool = False) -> dict:
    """Frames/s at batch 1 in both contexts, eager and then compiled (``Genie.compile_generation``: CUDA graphs
    on a GPU), from a prompt that fills the window: the steady state of a long rollout, and one graph to compile
    per context. ``compile_s`` is the first step of each compiled context (compile and capture)."""
    torch.manual_seed(0)
    genie = Genie(VideoTokenizer(cfg.tokenizer), LatentActionModel(cfg.lam), DynamicsModel(cfg.dynamics), cfg,
                  device)
    prompt = torch.rand(1, genie.window - 1, 3, *cfg.frame_size)
    out: dict = {"compile_s": {}}

    def rate(context: str):
        session = genie.start(prompt, context=context)
        sync(device)
        start = time.perf_counter()
        session.step(0)  # warm-up: compiling, when compiled
        sync(device)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(frames):
            session.step(i % genie.num_actions)
        sync(device)
        return frames / (time.perf_counter() - start), first, session

    for context in CONTEXTS:
        out[context], _, session = rate(context)
    if profile:  # where a generated frame's time goes: a few eager stream steps under torch.profiler
        from torch.profiler import ProfilerActivity
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as prof:
            for i in range(2):
                session.step(i % genie.num_actions)
            sync(device)
        key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        out["profile"] = "\n".join([prof.key_averages().table(sort_by="cpu_time_total", row_limit=15),
                                    prof.key_averages().table(sort_by=key, row_limit=15)])
    genie.compile_generation()
    for context in CONTEXTS:
        out[f"compiled_{context}"], out["compile_s"][context], _ = rate(context)
    return out


def lam_on_coinrun(cfg_name: str, data: Path, steps: int, minutes: float, device: torch.device,
                   dry: bool, overrides: tuple[str, ...] = ()) -> dict:
    """The preset's LAM trained alone on CoinRun shards with true actions (a ``procgen-dataset`` directory:
    ``train/shards`` and ``holdout``), then ``benchmarks/lam_probe.py`` on up to 4 held-out videos: codes used,
    NMI against CoinRun's 6 effects, and the decoder's gap of the inferred code and of the true action over the
    best constant code (the oracle gap). The LR schedule ends at ``steps``; ``minutes`` caps the wall time.
    ``overrides`` (``KEY=VALUE``, e.g. ``lam.focus_weight=50``) go to ``train lam`` as ``--set``; the LAM fields
    they set are returned as the run's config.json holds them."""
    from lam_probe import lam_budget, probe

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "lam"
        sets = {"train_lam_dynamics.max_steps": steps, "train_lam_dynamics.warmup_steps": max(1, min(200, steps // 10)),
                "train_lam_dynamics.log_every": max(1, steps // 10), "train_lam_dynamics.ckpt_every": steps,
                "train_lam_dynamics.image_every": steps}
        if dry:
            sets.update({"lam.vq_warmup_steps": 1, "lam.check_every": 1, "train_lam_dynamics.batch_size": 2})
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modeling", "train", "lam", "--shards", str(data / "train" / "shards"),
                        "--config", cfg_name, "--out", str(run), "--device", str(device), "--max-minutes",
                        f"{minutes:g}", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")),
                        *(a for o in overrides for a in ("--set", o))],
                       check=True, stdout=subprocess.DEVNULL)
        trained = time.perf_counter() - started
        saved = json.loads((run / "config.json").read_text())["genie"]
        applied = {key: saved[section][field] for key in parse_overrides(list(overrides))
                   for section, field in [key.split(".", 1)]}
        result = probe(str(run), str(data / "holdout"), max_videos=4, log=lambda _: None, device=str(device))
        done, batch = lam_budget(str(run))
    check = result["check"]
    return {"steps": done, "batch": batch, "train_s": round(trained, 1), "codes": result["lam_6"]["codes"],
            "nmi": result["lam_6"]["nmi"], "gap_db": check["gap_db"], "true_gap_db": check.get("true_gap_db"),
            "nmi_code_dy": result["motion"]["nmi_code_dy"], "sets": applied}


def loader_rate(shards: str, cfg, batch: int, batches: int, workers: int) -> float:
    loader = clip_windows(shards, LoaderConfig(window=cfg.tokenizer.num_frames, batch_size=batch, resampled=True,
                                               num_workers=workers), cfg.frame_size)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def convergence(shards: str, cfg, steps: int, batch: int, device: torch.device) -> dict:
    """LAM+dynamics on real (rendered, known-action) shards: the dynamics loss must halve."""
    torch.manual_seed(0)
    model = build("lam-dynamics", cfg, device).train()
    optimizer = make_optimizer(model.trained(), cfg.train_lam_dynamics, device)
    for group in optimizer.param_groups:
        group["lr"] = 1e-3
    loader = iter(clip_windows(shards, LoaderConfig(window=cfg.tokenizer.num_frames, batch_size=batch,
                                                    resampled=True), cfg.frame_size))
    losses = []
    for i in range(steps):
        video = next(loader)["video"].to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(cfg.precision, device):
            out = model({"video": video}, i)
        out["loss"].backward()
        optimizer.step()
        model.reset_dead_codes(optimizer)
        losses.append(float(out["dynamics_loss"]))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    return {"steps": steps, "first": first, "last": last, "ok": last < 0.5 * first}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="coinrun")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dry", action="store_true", help="tiny preset, a few steps: seconds on a CPU")
    p.add_argument("--compile", action="store_true", help="training rows through torch.compile")
    p.add_argument("--only", default="training,generation,loader,convergence,lam",
                   help="comma-separated rows to run (default: all; lam runs with --lam-data)")
    p.add_argument("--gen-frames", type=int, default=48, help="frames generated per context (default 48)")
    p.add_argument("--profile-generation", action="store_true",
                   help="also profile two generated frames (tables printed, and in $OUT/generation_profile.txt)")
    p.add_argument("--lam-data", type=Path,
                   help="a procgen-dataset directory (train/shards, holdout): adds the row of the preset's LAM "
                        "trained on it, with its NMI against the true actions and its oracle gap")
    p.add_argument("--lam-steps", type=int, default=1500, help="that LAM's steps (default 1500)")
    p.add_argument("--lam-minutes", type=float, default=3.0, help="its wall-time cap (default 3)")
    p.add_argument("--lam-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for that LAM (repeatable), e.g. lam.focus_weight=50 lam.focus_sigma=4")
    args = p.parse_args(argv)
    try:
        parse_overrides(args.lam_set)
    except UsageError as e:
        p.error(str(e).replace("--set ", "--lam-set ", 1))
    only = set(args.only.split(","))
    if args.lam_data is not None:
        missing = [d for d in (args.lam_data / "train" / "shards", args.lam_data / "holdout") if not d.is_dir()]
        if missing:
            p.error(f"--lam-data {args.lam_data}: {missing[0]} is not a directory (a procgen-dataset output)")
    device = torch.device(args.device)
    dry = args.dry
    cfg = get_config("tiny" if dry else args.config)
    small = get_config("tiny", {"tokenizer.frame_height": cfg.frame_size[0],
                                "tokenizer.frame_width": cfg.frame_size[1]})
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows, results = [], {"config": cfg.name, "device": str(device), "precision": cfg.precision,
                         "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    started = time.perf_counter()

    def add(label: str, text: str) -> None:  # on stderr as it comes: a run cut short still shows its rows
        rows.append((label, text))
        print(f"{label}: {text}", file=sys.stderr, flush=True)

    for phase, tcfg in (("tokenizer", cfg.train_tokenizer), ("lam-dynamics", cfg.train_lam_dynamics)):
        if "training" not in only:
            break
        batch = 2 if dry else tcfg.batch_size  # the preset's global batch on one GPU
        label = (f"{phase} training, batch {batch}{', act. ckpt' if tcfg.activation_checkpointing else ''}"
                 f"{', compiled' if args.compile else ''}")
        try:
            r = results[phase] = train_mfu(phase, cfg, batch, 2 if dry else 10, device, args.compile)
        except torch.OutOfMemoryError as e:  # one row's failure must not cost the rest of the lease
            results[phase] = {"batch": batch, "error": str(e).splitlines()[0]}
            add(label, "out of memory")
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (no known peak)"
            mem = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
            add(label, f"{r['s_per_step']:.3f} s/step, {r['tflops']:.1f} TFLOP/s, MFU {mfu}{mem}")
        torch.cuda.empty_cache() if device.type == "cuda" else None
    if "generation" in only:
        gen = results["generation_fps"] = generation_fps(cfg, 2 if dry else args.gen_frames, device, args.profile_generation)
        add(f"generation, batch 1, {cfg.sampling.steps} MaskGIT steps",
                f"window {gen['window']:.2f} frames/s, stream {gen['stream']:.2f} frames/s")
        add("generation, compiled step (CUDA graphs on a GPU)",
            ", ".join(f"{c} {gen[f'compiled_{c}']:.2f} frames/s ({gen[f'compiled_{c}'] / gen[c]:.1f}x, compile "
                      f"{gen['compile_s'][c]:.0f} s)" for c in CONTEXTS))
        if "profile" in gen:
            print(gen["profile"], file=sys.stderr)
    if args.lam_data is not None and "lam" in only:
        lam = results["lam_coinrun"] = lam_on_coinrun(cfg.name, args.lam_data, 3 if dry else args.lam_steps,
                                                      args.lam_minutes, device, dry, tuple(args.lam_set))
        true = f", true action {lam['true_gap_db']:+.2f} dB" if lam["true_gap_db"] is not None else ""
        sets = "".join(f", {k}={v}" for k, v in lam["sets"].items())
        add(f"LAM alone on {args.lam_data.name}, {lam['steps']} steps x {lam['batch']}{sets}",
            f"{lam['codes']} codes used, NMI {lam['nmi']:.3f} (6 effects; with the vertical scroll "
            f"{lam['nmi_code_dy']:.3f}), gap over the best constant code: inferred {lam['gap_db']:+.2f} dB{true} "
            f"({lam['train_s']:.0f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        h, w = cfg.frame_size
        write_tiny_shards(tmp, n_clips=8 if dry else 32, frames=32, clips_per_shard=4, height=h, width=w)
        shards = str(Path(tmp) / "shard-*.tar")
        if "loader" in only:
            rate = results["loader_windows_per_s"] = loader_rate(shards, cfg, 4 if dry else 36, 2 if dry else 20,
                                                                 0 if dry else min(8, os.cpu_count() or 1))
            add("loader", f"{rate:.1f} windows/s ({cfg.tokenizer.num_frames}-frame, {w}x{h})")
        if "convergence" in only:
            conv = results["convergence"] = convergence(shards, small, 6 if dry else 300, 4 if dry else 16, device)
            add(f"convergence (tiny models, {w}x{h} shards)",
                f"dynamics loss {conv['first']:.3f} -> {conv['last']:.3f} in {conv['steps']} steps: "
                f"{'ok' if conv['ok'] else 'NOT halved'}")
    results["seconds"] = time.perf_counter() - started
    width = max((len(r[0]) for r in rows), default=0)
    table = "\n".join([f"device check: {cfg.name} on {results['gpu'] or device} ({cfg.precision}), "
                       f"{results['seconds']:.0f} s", *(f"{a:<{width}}  {b}" for a, b in rows)])
    print(table)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "device_check.txt").write_text(table + "\n")
        profile = results.get("generation_fps", {}).pop("profile", None)
        if profile:
            (Path(out) / "generation_profile.txt").write_text(profile + "\n")
        (Path(out) / "device_check.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
