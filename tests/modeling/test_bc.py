"""``python -m modeling bc``: the Fig. 15 experiment end to end on a few CoinRun levels, through the real CLI.

Real parts throughout: the planner plays real Procgen, its episodes go through the pipeline's shard writer and
are read back with webdataset, a tiny LAM (trained here, 64x64) labels them, the policies train with torch and
play real Procgen. References are independent: the expert's solves are checked by replaying its stored actions
in a fresh environment, and ``play_levels``' verdicts against the same replays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.__main__ import main
from modeling.bc.evaluate import play_levels
from modeling.bc.expert import level_stream, read_expert_json
from modeling.bc.mapping import fit_mapping
from modeling.bc.policy import NUM_REAL_ACTIONS, PolicyConfig, train_policy
from modeling.bc.transitions import read_episodes, stack_transitions
from modeling.checkpoint import load_lam
from schemas.procgen import level_video_id, make_env

LEVELS = (0, 2)
EVAL_LEVELS = "1000-1002"


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bc") / "expert"
    assert main(["bc", "expert", str(out), "--mode", "easy", "--levels", f"{LEVELS[0]}-{LEVELS[1]}",
                 "--max-steps", "300", "--levels-per-shard", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def lam_run(expert_dir, tmp_path_factory) -> Path:
    """A tiny LAM trained alone on the expert's frames (``train lam``, as make bc-cpu does), a few steps."""
    run = tmp_path_factory.mktemp("lam") / "lam"
    fast = [a for key, value in {"max_steps": 2, "warmup_steps": 1, "ckpt_every": 2, "log_every": 1,
                                 "batch_size": 2}.items() for a in ("--set", f"train_lam_dynamics.{key}={value}")]
    assert main(["train", "lam", "--shards", str(expert_dir / "shards"), "--config", "tiny", "--out", str(run),
                 "--set", "tokenizer.frame_height=64", "--set", "tokenizer.frame_width=64", *fast]) == 0
    return run


def _replay(level: int, actions: np.ndarray) -> tuple[np.ndarray, bool | None]:
    """Procgen's frames of ``level`` under ``actions`` and how the episode ended (None: it did not end)."""
    env = make_env(level_stream("easy"), level)
    frames, ended = [], None
    for k, action in enumerate(actions):
        frames.append(env.observe()[1]["rgb"][0].copy())
        env.act(np.array([action]))
        reward, _, first = env.observe()
        if first[0]:
            assert k == len(actions) - 1, "the episode ended before its last stored action"
            ended = bool(reward[0] > 0)
    return np.stack(frames), ended


def test_expert_shards_replay_to_the_recorded_outcome(expert_dir):
    summary = read_expert_json(expert_dir)
    episodes = read_episodes(expert_dir)
    assert [e.video_id for e in episodes] == [level_video_id("coinrun", lv) for lv in range(3)]
    for level, episode in zip(range(LEVELS[0], LEVELS[1] + 1), episodes, strict=True):
        frames, ended = _replay(level, episode.actions)
        assert np.array_equal(frames, episode.frames)  # lossless clips of exactly the frames played
        record = summary["per_level"][str(level)]
        assert record["steps"] == len(episode.actions)
        assert (ended is True) == record["solved"] and (ended is False) == record["died"]
    assert summary["solved_share"] == np.mean([summary["per_level"][str(lv)]["solved"] for lv in range(3)])
    # The planner is better than chance on these levels: uniformly random play, judged by the same verdicts.
    random_solved = play_levels(lambda f: np.random.default_rng(0).integers(15, size=len(f)), "easy", LEVELS, 0, 300)
    assert summary["solved_share"] > random_solved.mean()


def test_play_levels_judges_solves_like_the_environment(expert_dir):
    """Replaying the expert's own actions through ``play_levels`` solves exactly the levels the expert solved."""
    summary = read_expert_json(expert_dir)
    for level, episode in zip(range(LEVELS[0], LEVELS[1] + 1), read_episodes(expert_dir), strict=True):
        step = iter(episode.actions)
        solved = play_levels(lambda f, step=step: np.array([next(step)]), "easy", (level, level), 0,
                             len(episode.actions))
        assert bool(solved[0]) == summary["per_level"][str(level)]["solved"]


def test_mapping_recovers_a_relabelling_and_k0_is_identity():
    rng = np.random.default_rng(0)
    actions = rng.choice([1, 4, 7, 8], size=200)
    code_of = {1: 3, 4: 0, 7: 5, 8: 2}
    latents = np.array([code_of[a] for a in actions])
    mapping = fit_mapping(latents, actions, 6)
    assert np.array_equal(mapping[latents], actions)
    majority = np.bincount(actions).argmax()
    assert mapping[1] == majority and mapping[4] == majority  # codes never seen map to the majority action
    assert np.array_equal(fit_mapping(latents[:0], actions[:0], 6), np.arange(6))


def test_oracle_policy_fits_the_expert_actions(expert_dir):
    data = stack_transitions(read_episodes(expert_dir))
    policy = train_policy(data, PolicyConfig(target="action", epochs=25, batch_size=32), NUM_REAL_ACTIONS,
                          log=lambda _: None)
    with torch.no_grad():
        accuracy = (policy(torch.from_numpy(data.frames)).argmax(1).numpy() == data.actions).mean()
    majority = np.bincount(data.actions).max() / len(data.actions)
    assert accuracy > majority + 0.05, (accuracy, majority)


def test_label_train_evaluate_end_to_end(expert_dir, lam_run, tmp_path):
    assert main(["bc", "train", "--expert", str(expert_dir), "--out", str(tmp_path / "p")]) == 2  # not labelled
    assert main(["bc", "label", "--expert", str(expert_dir), "--lam", str(lam_run)]) == 0
    labels = json.loads((expert_dir / "labels.json").read_text())
    lam, cfg = load_lam(lam_run)
    window = cfg.lam.num_frames
    for episode in read_episodes(expert_dir):
        got = labels["labels"][episode.video_id]
        assert len(got) == len(episode.frames) - 1
        assert all(0 <= z < labels["num_latents"] for z in got)
        first = torch.from_numpy(episode.frames[:window]).permute(0, 3, 1, 2).float().div(255)[None]
        assert got[:window - 1] == lam.infer_actions(first)[0].tolist()  # the LAM's own labels

    assert main(["bc", "train", "--expert", str(expert_dir), "--out", str(tmp_path / "p"), "--epochs", "1"]) == 0
    assert (tmp_path / "p" / "policy.pt").exists()

    out = tmp_path / "results"
    assert main(["bc", "evaluate", "--expert", f"easy={expert_dir}", "--out", str(out), "--eval-levels",
                 EVAL_LEVELS, "--seeds", "2", "--ks", "0,20", "--max-steps", "40", "--epochs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    keys = [(s["agent"], s["k"], s["seeds"]) for s in results["summary"]]
    assert sorted(keys, key=str) == sorted([("lam", 0, 2), ("lam", 20, 2), ("oracle", None, 2),
                                            ("random", None, 2)], key=str)
    for run in results["runs"]:  # 3 levels: every share is a whole number of levels
        assert round(run["solved_pct"] * 3 / 100, 6) in (0, 1, 2, 3)
    assert (out / "fig15.png").stat().st_size > 0
    assert "| easy | oracle (true actions) |" in (out / "results.md").read_text()
    # The evaluation refuses levels the expert played.
    assert main(["bc", "evaluate", "--expert", f"easy={expert_dir}", "--out", str(out), "--eval-levels", "1-3",
                 "--seeds", "1", "--ks", "0"]) == 2


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bc", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("expert", "label", "train", "evaluate"))
