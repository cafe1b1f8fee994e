"""The pieces of ``make coinrun-cpu`` (benchmarks/coinrun_cpu.py) that a test can run in seconds: the preset fits
the CoinRun data and the evaluation, and a wall budget stops training like ``--until-step`` does. The harness
itself runs end to end only in its smoke mode (minutes; see docs/modeling.md)."""

from __future__ import annotations

import json

import torch

from modeling.checkpoint import load_checkpoint
from modeling.configs import get_config
from modeling.evaluate import EvalOptions
from modeling.train import train
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


def test_coinrun_cpu_preset_takes_64x64_coinrun_and_the_delta_t_horizon():
    cfg = get_config("coinrun-cpu")
    assert cfg.frame_size == (64, 64) and cfg.lam.num_actions == 6 and cfg.precision == "fp32"
    assert cfg.tokenizer.num_frames >= EvalOptions().t + 1  # ΔtPSNR at t=4 fits in one window
    assert cfg.dynamics.token_grid == (8, 8)


def test_wall_budget_stops_after_the_step_it_runs_out_on(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", n_clips=2, frames=8, clips_per_shard=2)
    run = tmp_path / "tok"
    overrides = {"train_tokenizer.log_every": 100, "train_tokenizer.ckpt_every": 100}
    train("tokenizer", shards, run, "tiny", overrides, max_wall_s=0.0, log=lambda _: None)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1]  # the last step is logged and checkpointed as at max_steps
    assert load_checkpoint(run)["step"] == 1
    config = json.loads((run / "config.json").read_text())["genie"]
    assert config["train_tokenizer"]["max_steps"] == get_config("tiny").train_tokenizer.max_steps  # schedule kept
    train("tokenizer", shards, run, None, None, until_step=3, log=lambda _: None)  # resumes like --until-step
    assert load_checkpoint(run)["step"] == 3
