"""benchmarks/device_check.sh in its CPU dry mode (tiny preset, a few steps): the GPU check runs end to end, prints
its table and writes it under $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.modeling_helpers import write_tiny_shards

ROOT = Path(__file__).resolve().parents[2]


def test_device_check_dry_mode_prints_and_writes_its_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry", "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    for row in ("tokenizer training", "lam-dynamics training", "generation", "loader", "convergence"):
        assert row in done.stdout
    results = json.loads((tmp_path / "device_check.json").read_text())
    assert results["config"] == "tiny" and results["generation_fps"]["window"] > 0
    assert results["tokenizer"]["mfu"] is None  # no known peak on a CPU: not made up
    assert (tmp_path / "device_check.txt").read_text().strip() == done.stdout.strip()


def test_the_lam_row_trains_and_probes_the_presets_lam_on_data_with_actions(tmp_path):
    data = tmp_path / "coinrun"
    write_tiny_shards(data / "train" / "shards", n_clips=2, frames=16)
    write_tiny_shards(data / "holdout" / "shards", n_clips=1, frames=16)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry", "--device", "cpu",
                           "--only", "lam", "--lam-data", str(data), "--lam-set", "lam.focus_weight=50",
                           "--lam-set", "lam.focus_sigma=3"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "LAM alone on coinrun, 3 steps x 2, lam.focus_weight=50.0, lam.focus_sigma=3.0" in done.stdout
    assert "NMI" in done.stdout
    lam = json.loads((tmp_path / "out" / "device_check.json").read_text())["lam_coinrun"]
    assert lam["steps"] == 3 and 1 <= lam["codes"] <= 4 and 0 <= lam["nmi"] <= 1
    assert lam["true_gap_db"] is not None  # the shards carry actions: the oracle gap is measured
    assert lam["sets"] == {"lam.focus_weight": 50.0, "lam.focus_sigma": 3.0}  # as the trained run saved them


def test_lam_data_without_a_procgen_layout_is_refused_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--dry", "--device", "cpu",
                           "--lam-data", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is not a directory (a procgen-dataset output)" in done.stderr
    assert "device check" not in done.stdout


def test_a_bad_lam_override_is_refused_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--dry", "--device", "cpu",
                           "--only", "lam", "--lam-set", "lam.focus_wieght=50"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "lam.focus_wieght" in done.stderr, done.stderr
    assert "device check" not in done.stdout
