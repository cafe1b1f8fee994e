"""Pruning a best-fit LAM's codebook (``lam.train_codes`` -> ``lam.num_actions`` at ``lam.prune_at``): which codes
are kept, the LAM and optimizer after pruning, and the run-level guarantees (a finished run's LAM is pruned)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from modeling.__main__ import main
from modeling.checkpoint import load_checkpoint, load_lam
from modeling.code_pruning import prune_by_fit
from modeling.configs import get_config
from modeling.lam import lam_from_state
from modeling.train import LamObjective, make_optimizer, resolve_config
from schemas.cli import UsageError
from tests.modeling.test_lam_best_fit import SMALL, moving_square
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


def test_pruning_keeps_one_code_per_kind_of_transition_as_the_best_subset_does():
    """Three kinds of transition; codes 0, 2 and 5 each serve one well, 1 and 3 are near copies of 0 and 2, 4 is
    mediocre everywhere. Keeping 3 leaves 0, 2 and 5: the subset an exhaustive search over all 20 finds."""
    gen = torch.Generator().manual_seed(0)
    kinds = torch.randint(0, 3, (300,), generator=gen)
    fit = {0: (0, 0.10), 1: (0, 0.12), 2: (1, 0.10), 3: (1, 0.13), 5: (2, 0.10)}
    errors = torch.full((300, 6), 1.0) + 0.01 * torch.rand(300, 6, generator=gen)
    for code, (kind, err) in fit.items():
        errors[kinds == kind, code] = err
    errors[:, 4] = 0.5

    def cost(subset) -> float:
        return float(errors[:, list(subset)].min(1).values.sum())

    best = min(itertools.combinations(range(6), 3), key=cost)
    assert prune_by_fit(errors, 3).tolist() == list(best) == [0, 2, 5]
    assert prune_by_fit(errors, 6).tolist() == list(range(6))
    with pytest.raises(ValueError, match="keep must be between 1 and the number of codes"):
        prune_by_fit(errors, 0)


def pruning_config(**lam):
    """The tiny preset at 32x32, its LAM best fit with 8 codes pruned to 4 at step 60."""
    overrides = {"tokenizer.frame_height": 32, "tokenizer.frame_width": 32, "tokenizer.num_frames": 4,
                 **{f"lam.{k}": v for k, v in dataclasses.asdict(SMALL).items()
                    if k not in ("frame_height", "frame_width", "num_frames")},
                 "lam.num_actions": 4, "lam.train_codes": 8, "lam.prune_at": 60,
                 "train_lam_dynamics.lr": 3e-3, "train_lam_dynamics.warmup_steps": 1}
    overrides.update({f"lam.{k}": v for k, v in lam.items()})
    return get_config("tiny", overrides)


def test_a_pruned_lam_names_the_moves_with_its_kept_codes_and_its_optimizer_follows():
    """8 codes for 4 moves of a square, trained with the run's objective and optimizer, pruned to 4 at step 60:
    from then on the LAM chooses among codes 0-3 only, and they still name the four moves (NMI near 1), so the
    pruning kept one code per move. The codebook rows and their AdamW moments are reordered together; before
    pruning, ``infer_actions`` refuses (its indices would not be the final actions); the state dict round-trips."""
    torch.manual_seed(0)
    cfg = pruning_config()
    objective = LamObjective(cfg)
    lam = objective.lam
    optimizer = make_optimizer(objective.trained(), cfg.train_lam_dynamics, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    weight = lam.vq.codebook.weight
    for step in range(1, 121):
        video, _ = moving_square(8, gen)
        uint8 = (video * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)  # (B, T, H, W, 3) as shards give
        out = objective({"video": uint8}, step)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        if step == cfg.lam.prune_at:
            assert lam.live == 8 and not lam.pruned
            with pytest.raises(ValueError, match="has not pruned its 8 codes"):
                lam.infer_actions(video)
            rows = weight.detach().clone()
            moments = optimizer.state[weight]["exp_avg"].clone()
        resets = objective.reset_dead_codes(optimizer, step)
        if step == cfg.lam.prune_at:  # the dropped codes are never chosen again: not dead codes to re-seed
            assert lam.live == 4 and lam.pruned and resets == 0
            for new in range(8):  # row i is one old row, its moments with it
                old = int((rows == weight[new].detach()).all(1).nonzero()[0])
                assert torch.equal(optimizer.state[weight]["exp_avg"][new], moments[old])
        else:
            assert lam.live == (8 if step < cfg.lam.prune_at else 4)
    video, moves = moving_square(64, torch.Generator().manual_seed(99))
    actions = lam.infer_actions(video)
    assert int(actions.max()) < 4
    assert normalized_mutual_info_score(moves.flatten().numpy(), actions.flatten().numpy()) > 0.9
    copy = lam_from_state(cfg.lam, lam.state_dict())
    assert copy.pruned and torch.equal(copy.infer_actions(video), actions)


def test_pruning_options_are_checked_before_work_starts(tmp_path):
    for bad in ({"code_choice": "encoder", "code_effect": "film"}, {"train_codes": 4}, {"prune_at": 0},
                {"train_codes": 0}):
        with pytest.raises(ValueError, match="lam.train_codes|lam.prune_at"):
            pruning_config(**bad)
    write_tiny_shards(tmp_path / "shards", n_clips=2, frames=16)
    args = ["--shards", str(tmp_path / "shards"), "--config", "tiny", "--set", "lam.code_choice=best_fit",
            "--set", "lam.num_actions=2", "--set", "lam.train_codes=4", "--set", "lam.prune_at=5"]
    assert main(["train", "lam", *args, "--out", str(tmp_path / "late"), "--set",
                 "train_lam_dynamics.max_steps=4"]) == 2
    assert not (tmp_path / "late").exists()
    with pytest.raises(UsageError, match="lam.train_codes prunes the codebook during a `train lam` run"):
        resolve_config("lam-dynamics", tmp_path / "ld", "tiny", {"lam.code_choice": "best_fit",
                       "lam.num_actions": 2, "lam.train_codes": 4, "lam.prune_at": 5}, "no-tokenizer-read", None)


def test_a_run_its_wall_budget_ends_before_prune_at_leaves_a_pruned_lam(tmp_path):
    """``--max-minutes 0`` ends the run after its first step, long before ``lam.prune_at``: the LAM it saves has
    its ``lam.num_actions`` codes, and the probe's labelling works on it."""
    write_tiny_shards(tmp_path / "shards", n_clips=2, frames=16)
    run = tmp_path / "lam"
    assert main(["train", "lam", "--shards", str(tmp_path / "shards"), "--config", "tiny", "--out", str(run),
                 "--max-minutes", "0", "--set", "lam.code_choice=best_fit", "--set", "lam.num_actions=2",
                 "--set", "lam.train_codes=4", "--set", "lam.prune_at=50"]) == 0
    lam, _ = load_lam(run)
    assert lam.pruned and lam.live == 2
    assert int(lam.infer_actions(torch.rand(1, lam.cfg.num_frames, 3, 90, 160)).max()) < 2


def test_make_lam_cpu_refuses_a_prune_share_without_codes_to_prune(tmp_path):
    """``benchmarks/lam_cpu.py --prune-share`` sets each run's lam.prune_at; without lam.train_codes (or outside
    0-1) it is refused before any data is built."""
    root = Path(__file__).resolve().parents[2]
    for args in (["--prune-share", "0.5"], ["--lam-set", "lam.train_codes=16", "--prune-share", "1.5"]):
        done = subprocess.run([sys.executable, str(root / "benchmarks" / "lam_cpu.py"), "--out", str(tmp_path / "x"),
                               *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "--prune-share takes a share" in done.stderr
        assert not (tmp_path / "x").exists()


def test_a_run_resumed_before_its_pruning_step_prunes_as_the_uninterrupted_run(tmp_path):
    """Stopped at step 3 and resumed, a run prunes at step 4 from the errors its checkpoint kept, and every logged
    metric after matches the uninterrupted run bit for bit (the codes kept, hence the losses)."""
    write_tiny_shards(tmp_path / "shards", n_clips=4, frames=16)
    args = ["--shards", str(tmp_path / "shards"), "--config", "tiny", "--set", "lam.code_choice=best_fit",
            "--set", "lam.num_actions=2", "--set", "lam.train_codes=4", "--set", "lam.prune_at=4",
            "--set", "train_lam_dynamics.max_steps=7", "--set", "train_lam_dynamics.log_every=1"]
    assert main(["train", "lam", *args, "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", "lam", *args, "--out", str(tmp_path / "resumed"), "--until-step", "3"]) == 0
    lam, cfg = load_lam(tmp_path / "resumed")
    assert not lam.pruned  # and its checkpoint holds the errors of every transition so far, to prune by
    per_step = cfg.train_lam_dynamics.batch_size * (cfg.lam.num_frames - 1)
    assert int(load_checkpoint(tmp_path / "resumed")["models"]["lam"]["fits_seen"]) == 3 * per_step
    assert main(["train", "lam", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "resumed")]) == 0

    def metrics(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: {k: v for k, v in r.items() if k != "windows_per_s"} for r in rows}

    whole = metrics(tmp_path / "whole")
    assert metrics(tmp_path / "resumed") == whole and sorted(whole) == list(range(1, 8))
    for run in ("whole", "resumed"):
        assert load_lam(tmp_path / run)[0].pruned
