"""``python -m pipeline procgen-dataset``: a tiny CoinRun case-study set through the real command (Beam's local
runner, real Procgen, real encoding), read back with webdataset and checked against Procgen replayed
independently with the stored actions."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.audit import manifest
from pipeline.tools import procgen_dataset
from schemas import shard_source
from schemas.clip_codec import decode_clip
from schemas.procgen import level_seed, level_video_id

STEPS, CLIP_FRAMES = 40, 16  # 40 steps -> clips of 16, 16 and the last 8 (dropped: under 16 frames)
ARGS = ["--levels", "3-4", "--holdout-levels", "9-9", "--steps", str(STEPS), "--clip-frames", str(CLIP_FRAMES),
        "--levels-per-shard", "1", "--in-process"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("procgen")
    for name in ("a", "b"):
        assert pipeline_main(["procgen-dataset", str(root / name), *ARGS]) == 0
    return root / "a", root / "b"


def _samples(out: Path, split: str) -> list:
    return list(shard_source.read_samples(str(out / split)))


def _replay(level: int, actions: list[int]) -> np.ndarray:
    """Procgen's 64x64 observations of ``level`` when playing ``actions``: the independent reference."""
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=1, env_name="coinrun", distribution_mode="hard", start_level=level, num_levels=1,
                         rand_seed=level_seed(0, level))
    frames = []
    for action in actions:
        frames.append(env.observe()[1]["rgb"][0].copy())
        env.act(np.array([action]))
    return np.stack(frames)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_clips_hold_the_levels_frames_and_true_actions(runs):
    out, _ = runs
    train = _samples(out, "train")
    assert sorted((s.clip.video_id, s.clip.clip_index) for s in train) == [
        (level_video_id("coinrun", level), i) for level in (3, 4) for i in (0, 1)]
    for level in (3, 4):
        clips = sorted((s.clip for s in train if s.clip.video_id.endswith(f"{level:06d}")),
                       key=lambda c: c.clip_index)
        actions = [a for c in clips for a in c.actions]
        stored = np.concatenate([decode_clip(c.mp4) for c in clips])
        assert all((c.width, c.height, c.fps, c.num_frames) == (64, 64, 10.0, CLIP_FRAMES) for c in clips)
        assert clips[1].start_s == pytest.approx(CLIP_FRAMES / 10)
        # replaying the stored actions in a fresh environment renders the stored frames: the actions are the
        # ones taken, frame by frame, and storage is lossless (PSNR infinite, every pixel equal)
        reference = _replay(level, actions)
        assert _psnr(stored, reference) == float("inf")
        np.testing.assert_array_equal(stored, reference)


def test_policy_is_uniform_random_without_repeats(runs):
    out, _ = runs
    actions = np.array([a for s in _samples(out, "train") + _samples(out, "holdout") for a in s.clip.actions])
    assert actions.min() >= 0 and actions.max() <= 14
    assert len(set(actions.tolist())) >= 12  # 96 uniform draws from 15 miss more than 3 with p < 1e-3
    # a new action every step: consecutive repeats happen by chance only (1/15); held actions would be most
    assert np.mean(actions[1:] == actions[:-1]) < 0.25


def test_holdout_split_and_manifest(runs):
    out, _ = runs
    holdout = _samples(out, "holdout")
    assert {s.clip.video_id for s in holdout} == {level_video_id("coinrun", 9)}
    for split in ("train", "holdout"):
        rows = sorted(manifest.read_manifest(str(out / split)), key=lambda c: c.clip_key)
        stored = sorted(_samples(out, split), key=lambda s: s.key)
        assert [r.clip_key for r in rows] == [s.key for s in stored]
        assert all(r.mp4 is None and r.location.startswith("shards/shard-") for r in rows)
        assert [r.actions for r in rows] == [s.clip.actions for s in stored]
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["settings"]["distribution_mode"] == "hard" and doc["settings"]["policy"] == "random"
    assert doc["splits"]["train"]["clips"] == 4 and doc["splits"]["holdout"]["clips"] == 2
    assert doc["splits"]["train"]["frames"] == 4 * CLIP_FRAMES


def test_two_runs_write_identical_files(runs):
    a, b = runs
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".tar"]) == 3
    for rel in files:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_model_loader_reads_the_shards(runs):
    from modeling.data import LoaderConfig, clip_windows, shard_geometry

    out, _ = runs
    urls = str(out / "train")  # the run directory itself: the loader finds its shards/*.tar
    assert shard_geometry(urls) == (64, 64, 10.0)
    batch = next(iter(clip_windows(urls, LoaderConfig(window=16, batch_size=2, shuffle=False), frame_size=(64, 64))))
    assert tuple(batch["video"].shape) == (2, 16, 64, 64, 3)
    assert (batch["actions"] >= 0).all()


def test_bad_flags_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        procgen_dataset.parse([str(tmp_path), "--levels", "0-9", "--holdout-levels", "5-20"])
    assert "overlap" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        procgen_dataset.parse([str(tmp_path), "--game", "pong"])
    assert procgen_dataset.parse([str(tmp_path), "--levels", "7"])[0].levels == (7, 7)
