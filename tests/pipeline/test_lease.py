"""An output holds a lease naming the job writing it: a second run into it is refused while the lease is live,
a lease whose holder is gone is taken over, taking it is exclusive.

Real parts: the launcher as a subprocess and in this process, Beam's local runner, processes whose pids are
alive or gone, local files and the fake object store (tests/object_store.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import run
from pipeline.audit import exit_status
from pipeline.cli import lease
from tests import media
from tests.cli_helpers import call_main
from tests.object_store import FakeObjectStore

ROOT = Path(__file__).resolve().parents[2]
TITLE = "Celeste speedrun gameplay"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """Two 17 s videos (one clip each) and their catalog."""
    root = tmp_path_factory.mktemp("lease-corpus")
    rows = []
    for n in range(2):
        media.write_video(root / f"v{n}.mp4", fps=10, duration_s=17.0, width=160, height=90)
        rows.append(json.dumps({"id": f"v{n}", "url": f"v{n}.mp4", "title": TITLE, "duration_s": 17}))
    (root / "catalog.jsonl").write_text("\n".join(rows) + "\n")
    return root / "catalog.jsonl"


def run_args(catalog: Path, out: Path, *extra: str) -> list[str]:
    return ["--catalog", str(catalog), "--output", str(out), "--in-process", "--quiet", *extra]


def gone_pid() -> int:
    """The pid of a process that has ended (a killed launcher's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_run_is_refused_while_the_first_holds_the_output(catalog, tmp_path, capsys):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--catalog", str(catalog), "--output", str(out),
                              "--workers", "1", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 60
        while lease.read(str(out)) is None:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        assert lease.read(str(out)).pid == first.pid
        code, stdout, err = call_main(run.main, run_args(catalog, out), capsys)
        lines = err.strip().splitlines()
        assert code == exit_status.LEASE_HELD and len(lines) == 1, err
        assert lines[0].startswith("error: ") and f"launcher pid {first.pid}" in lines[0] and "--force-lease" in lines[0]
        assert stdout == ""
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert not (out / lease.LEASE_FILE).exists()  # released when the run ended


def test_a_lease_whose_launcher_is_gone_is_taken_over_with_a_warning(catalog, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    assert run.main(run_args(catalog, out)) == 0
    capsys.readouterr()
    dead = dataclasses.replace(lease.for_launcher(), pid=gone_pid(), pid_started=None)  # a rerun, killed
    (out / lease.LEASE_FILE).write_bytes(dead.to_json())
    with caplog.at_level(logging.WARNING, logger="pipeline.cli.lease"):
        assert run.main(run_args(catalog, out)) == 0
    taken = [r.getMessage() for r in caplog.records if r.name == "pipeline.cli.lease"]
    assert len(taken) == 1 and f"launcher pid {dead.pid}" in taken[0] and "is gone" in taken[0], taken
    assert "kept 2 clips" in capsys.readouterr().out
    assert not (out / lease.LEASE_FILE).exists()


def test_a_run_refused_by_a_live_lease_writes_nothing(catalog, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = lease.acquire(str(out), lease.for_launcher(), job_finished=False)  # this process: alive
    code, _, err = call_main(run.main, run_args(catalog, out), capsys)
    assert code == exit_status.LEASE_HELD and f"launcher pid {mine.pid}" in err, err
    assert sorted(p.name for p in out.iterdir()) == [lease.LEASE_FILE] and lease.read(str(out)) == mine


def test_force_lease_takes_over_a_live_lease(tmp_path, caplog):
    out = str(tmp_path)
    lease.acquire(out, lease.for_launcher(), job_finished=False)
    with pytest.raises(lease.LeaseHeld):
        lease.acquire(out, lease.for_launcher(), job_finished=False)
    theirs = lease.for_launcher()
    with caplog.at_level(logging.WARNING, logger="pipeline.cli.lease"):
        assert lease.acquire(out, theirs, job_finished=False, force=True) == theirs
    assert "--force-lease" in caplog.text and lease.read(out) == theirs


def test_liveness_follows_the_holder():
    now = time.time()
    mine = lease.for_launcher()
    assert lease.liveness(mine, job_finished=True)[0]  # this process runs
    assert not lease.liveness(dataclasses.replace(mine, pid=gone_pid()), job_finished=True)[0]
    reused = dataclasses.replace(mine, pid_started="1")  # this pid, but not the process that took the lease
    assert not lease.liveness(reused, job_finished=True)[0] or lease._process_start(mine.pid) is None
    elsewhere = dataclasses.replace(mine, host="another-host", heartbeat_s=now - 30)
    assert lease.liveness(elsewhere, job_finished=True, now=now)[0]
    assert not lease.liveness(elsewhere, job_finished=True, now=now + lease.LAUNCHER_TTL_S)[0]
    job = lease.for_job(mine, "DataflowRunner", "job-1", detached=True)
    assert job.pid is None and job.expires_s == pytest.approx(now + lease.JOB_TTL_S, abs=60)
    assert lease.liveness(job, job_finished=False)[0]
    assert not lease.liveness(job, job_finished=True)[0]  # its stats are written: finished
    assert not lease.liveness(job, job_finished=False, now=job.expires_s + 1)[0]
    watched = lease.for_job(mine, "DataflowRunner", "job-1", detached=False)
    assert lease.liveness(watched, job_finished=True)[0]  # its launcher still finalizes it


def _take(output: str) -> bool:
    try:
        lease.acquire(output, lease.for_launcher(), job_finished=False)
    except lease.LeaseHeld:
        return False
    return True


def test_of_launchers_racing_for_a_new_output_exactly_one_takes_it(tmp_path):
    out = str(tmp_path / "out")
    with multiprocessing.get_context("fork").Pool(4) as pool:  # the workers stay alive: every lease stays live
        won = pool.map(_take, [out] * 8, chunksize=1)
    assert sum(won) == 1, won


def test_release_and_renewal_touch_only_their_own_lease(tmp_path):
    out = str(tmp_path)
    mine = lease.acquire(out, lease.for_launcher(), job_finished=False)
    assert not lease.release(out, token="someone-else") and lease.read(out) == mine
    beat = lease.Heartbeat(out, mine, every_s=0.02).start()
    deadline = time.monotonic() + 10
    while lease.read(out).heartbeat_s == mine.heartbeat_s:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    theirs = lease.acquire(out, lease.for_launcher(), job_finished=False, force=True)
    time.sleep(0.2)
    beat.stop()
    assert lease.read(out) == theirs  # a taken-over lease is not renewed back
    assert lease.release(out, mine.token) is False and lease.release(out, theirs.token) is True
    assert lease.read(out) is None


def test_an_object_store_lease_is_taken_and_refused_the_same_way():
    FakeObjectStore.reset()
    out = "fakeobj://bucket/out"
    mine = lease.acquire(out, lease.for_launcher(), job_finished=False)
    with pytest.raises(lease.LeaseHeld, match=f"launcher pid {mine.pid}"):
        lease.acquire(out, lease.for_launcher(), job_finished=False)
    assert lease.release(out, mine.token) and set(FakeObjectStore.objects) == set()
    FakeObjectStore.reset()
