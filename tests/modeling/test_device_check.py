"""benchmarks/device_check.sh in its CPU dry mode (tiny preset, a few steps): the GPU check runs end to end, prints
its table and writes it under $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
