"""benchmarks/scale_bench.py at a tiny size: its table and diagnostics run end to end on Beam's real local
runner, and its knobs of Beam's data plane really reach the processes they claim to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "scale_bench.py"


def test_flush_knob_reaches_the_output_streams(tmp_path):
    """``--flush-mb`` must change the size at which a bundle output is sent. Beam binds the threshold as a
    default argument when the class is defined, so setting the module constant alone changes nothing (an
    earlier version of the benchmark did only that and reported numbers for a knob that was not turned)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale_bench

    (tmp_path / "sitecustomize.py").write_text(scale_bench.WORKER_PATCH)
    probe = ("from apache_beam.runners.worker import data_plane as d\n"
             "s = d.ClosableOutputStream.create(None, lambda b: None, 0)\n"
             "print(s._size_flush_threshold, d._DEFAULT_SEND_QUEUE_MAX_BYTES)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SCALE_BENCH_FLUSH_MB": "1", "SCALE_BENCH_DATA_QUEUE_MB": "8"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == [str(1 << 20), str(8 << 20)]
    env = {k: v for k, v in env.items() if not k.startswith("SCALE_BENCH_")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == [str(10 << 20), str(100 << 20)]  # Beam's defaults when not asked


def test_streamed_inputs_are_cut_at_the_asked_size(monkeypatch):
    """The launcher's streamed bundle inputs come in ~1 MB messages, or ``--flush-mb``'s size, or
    ``--input-chunk-mb``'s (which wins)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale_bench

    monkeypatch.delenv("SCALE_BENCH_FLUSH_MB", raising=False)
    monkeypatch.delenv("SCALE_BENCH_INPUT_CHUNK_MB", raising=False)
    assert scale_bench.input_chunk_bytes() == scale_bench.streamed_inputs.CHUNK_BYTES == 1_000_000
    monkeypatch.setenv("SCALE_BENCH_FLUSH_MB", "2")
    assert scale_bench.input_chunk_bytes() == 2 << 20
    monkeypatch.setenv("SCALE_BENCH_INPUT_CHUNK_MB", "8")
    assert scale_bench.input_chunk_bytes() == 8 << 20


def test_tiny_run_with_every_knob_accounts_for_every_outcome():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "1500,3000", "--flush-mb", "1",
                           "--data-queue-mb", "8", "--bounded-bundles", "--malloc-stats",
                           "--release-output-streams"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in table] == [1500, 3000]
    assert [int(r[-1]) for r in table] == [0, 0]  # violations: every outcome, birth and manifest row accounted
    assert "worker peak at 3000 / at 1500" in done.stdout
    measured = [line for line in done.stderr.splitlines() if line.startswith("measured ")]
    assert len(measured) == 2 and all("'malloc': {'worker-" in line for line in measured)
    assert all("'bounded_bundles': True" in line for line in measured)


def test_default_run_measures_the_pipelines_workers():
    """Without knobs the benchmark's workers run as the pipeline's do: with its worker plugin's buffer sizes."""
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "1500"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "outputs flushed at 1 MB (the pipeline's worker plugin)" in done.stderr
    table = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(int(r[0]), int(r[-1])) for r in table] == [(1500, 0)]
