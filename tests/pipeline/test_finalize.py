"""``python -m pipeline finalize OUT`` does what ``run`` does after its job, idempotently, and only once the job
has finished; ``run --detach`` submits, records the job and leaves.

Real parts: Beam's local runner (in this process) on a one-video catalog, the launcher's ``main``, local
outputs and the fake object store (tests/object_store.py) for a ``gs://``-like one. Unreachable from here:
Dataflow itself. The detached run's submission is the one stand-in (``job.submit`` returns a result with a
job id instead of calling the Dataflow service); the job it would run is then run locally, in this process,
as Dataflow would run it, and finalized."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from pipeline import finalize, job, run
from pipeline.audit import audit_stage, exit_status
from pipeline.cli import lease, run_inputs
from tests import media
from tests.cli_helpers import call_main
from tests.object_store import FakeObjectStore

TITLE = "Celeste speedrun gameplay"
STALE_SHARD = "shards/shard-99999.tar"
STALE_TEMP = "shards/.shard-00000.tar.tmp-0123456789ab"
DATAFLOW = ["--runner", "DataflowRunner", "--project", "genie-worlds-test", "--region", "us-central1",
            "--temp_location", "gs://bucket/tmp"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """One 17 s video (one clip) and its catalog."""
    root = tmp_path_factory.mktemp("finalize-corpus")
    media.write_video(root / "v0.mp4", fps=10, duration_s=17.0, width=160, height=90)
    path = root / "catalog.jsonl"
    path.write_text(json.dumps({"id": "v0", "url": "v0.mp4", "title": TITLE, "duration_s": 17}) + "\n")
    return path


def run_args(catalog: Path, out: Path, *extra: str) -> list[str]:
    return ["--catalog", str(catalog), "--output", str(out), "--in-process", "--quiet", *extra]


@pytest.fixture(scope="module")
def finished(catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "out"
    assert run.main(run_args(catalog, out)) == 0
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.parts[len(out.parts)] != "logs"}


def copy_with_leftovers(finished: Path, dest: Path) -> Path:
    """A copy of a finished output (times kept) with what a killed or earlier run leaves: a stale shard and a
    writer's temporary."""
    shutil.copytree(finished, dest)
    (dest / STALE_SHARD).write_bytes(b"an earlier run's shard")
    (dest / STALE_TEMP).write_bytes(b"a killed writer's temporary")
    return dest


def finalize_cli(out: str | Path, capsys, *extra: str) -> tuple[int, str, str]:
    return call_main(finalize.main, [str(out), *extra], capsys)


def test_finalize_removes_stale_outputs_exactly_as_run_does_and_a_second_finalize_changes_nothing(
        finished, catalog, tmp_path, capsys):
    by_run = copy_with_leftovers(finished, tmp_path / "by-run")
    by_finalize = copy_with_leftovers(finished, tmp_path / "by-finalize")
    assert run.main(run_args(catalog, by_run)) == 0  # the rerun resumes, then cleans up after its job
    capsys.readouterr()
    code, out, err = finalize_cli(by_finalize, capsys)
    assert code == 0, err
    assert "removed 1 stale shard(s)" in out and "finalized local run" in out, out
    assert snapshot(by_finalize) == snapshot(by_run) == snapshot(finished)
    after_first = snapshot(by_finalize)
    code, out, err = finalize_cli(by_finalize, capsys)
    assert code == 0 and "removed" not in out, (out, err)
    assert snapshot(by_finalize) == after_first


def test_finalize_gives_the_runs_exit_status(catalog, tmp_path, capsys):
    empty = tmp_path / "cooking.jsonl"
    empty.write_text(json.dumps({"id": "c", "url": str(catalog.parent / "v0.mp4"), "title": "cooking"}) + "\n")
    out = tmp_path / "out"
    assert run.main(run_args(empty, out)) == exit_status.EMPTY
    capsys.readouterr()
    for _ in range(2):
        code, _, err = finalize_cli(out, capsys)
        assert code == exit_status.EMPTY and "the dataset is empty" in err, err
    assert finalize_cli(out, capsys, "--allow-empty")[0] == exit_status.OK


def launched_again(out: Path) -> None:
    """As a new launch leaves an output: run_inputs.json rewritten after the last stats.json."""
    later = os.path.getmtime(out / audit_stage.STATS_FILE) + 5
    os.utime(out / run_inputs.INPUTS_FILE, (later, later))


def job_lease(job_id: str = "2026-01-02_03_04_05-123", expires_in_s: float = 3600.0) -> lease.Lease:
    held = lease.for_launcher("DataflowRunner")
    detached = lease.for_job(held, "DataflowRunner", job_id, detached=True)
    return dataclasses.replace(detached, expires_s=time.time() + expires_in_s)


def test_finalize_waits_for_a_job_that_has_not_written_its_stats_and_changes_nothing(finished, tmp_path, capsys):
    out = copy_with_leftovers(finished, tmp_path / "out")
    launched_again(out)
    finalize.write_job(str(out), finalize.job_record(str(out), "DataflowRunner", "job-1", "p", "r", False))
    held = job_lease("job-1")
    (out / lease.LEASE_FILE).write_bytes(held.to_json())
    before = snapshot(out)
    for _ in range(2):
        code, stdout, err = finalize_cli(out, capsys)
        assert code == exit_status.NOT_FINISHED, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "DataflowRunner job job-1" in lines[0] and "run finalize again later" in lines[0]
        assert "--force-lease" in lines[0] and stdout == ""
    assert snapshot(out) == before  # nothing deleted, the lease kept
    now = time.time() + 10  # the job's audit writes stats.json: it has finished
    os.utime(out / audit_stage.STATS_FILE, (now, now))
    code, stdout, err = finalize_cli(out, capsys)
    assert code == 0 and "finalized DataflowRunner job job-1" in stdout and "removed 1 stale shard(s)" in stdout, err
    assert not (out / lease.LEASE_FILE).exists() and not (out / STALE_SHARD).exists()
    assert not (out / STALE_TEMP).exists()


def test_a_job_that_ended_without_its_stats_is_exit_1_and_nothing_is_changed(finished, tmp_path, capsys):
    out = copy_with_leftovers(finished, tmp_path / "out")
    launched_again(out)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a launcher that was killed: its pid no longer runs
    dead = dataclasses.replace(lease.for_launcher(), pid=gone.pid, pid_started=None)
    (out / lease.LEASE_FILE).write_bytes(dead.to_json())
    before = snapshot(out)
    code, _, err = finalize_cli(out, capsys)
    assert code == exit_status.RUN_FAILED and "rerun the same run command" in err, err
    assert len(err.strip().splitlines()) == 1 and snapshot(out) == before


def test_finalize_leaves_an_output_to_its_live_launcher(finished, tmp_path, capsys):
    out = copy_with_leftovers(finished, tmp_path / "out")
    (out / lease.LEASE_FILE).write_bytes(lease.for_launcher().to_json())  # this process: alive
    before = snapshot(out)
    code, _, err = finalize_cli(out, capsys)
    assert code == exit_status.NOT_FINISHED and f"launcher pid {os.getpid()}" in err, err
    assert snapshot(out) == before


def test_finalize_refuses_what_is_not_a_run(tmp_path, capsys):
    code, _, err = finalize_cli(tmp_path / "nothing", capsys)
    assert code == exit_status.USAGE and err.startswith("error: ") and "holds no run" in err


def test_finalize_works_on_an_object_store(finished, capsys):
    """A gs://-like output (no directories, no rename, no file times): the same steps through FileSystems."""
    FakeObjectStore.reset()
    base = "fakeobj://bucket/out"
    for name, data in snapshot(finished).items():
        FakeObjectStore.objects[f"{base}/{name}"] = data
    FakeObjectStore.objects[f"{base}/{STALE_SHARD}"] = b"stale"
    FakeObjectStore.objects[f"{base}/{STALE_TEMP}"] = b"temporary"
    finalize.write_job(base, finalize.job_record(base, "DataflowRunner", "job-2", "p", "r", False))
    lease.acquire(base, job_lease("job-2"), job_finished=False)
    code, stdout, err = finalize_cli(base, capsys)
    assert code == 0 and "removed 1 stale shard(s)" in stdout, err
    expected = {f"{base}/{name}" for name in snapshot(finished)} | {f"{base}/{finalize.JOB_FILE}"}
    assert set(FakeObjectStore.objects) == expected  # stale shard, temporary and lease gone
    objects = dict(FakeObjectStore.objects)
    assert finalize_cli(base, capsys)[0] == 0 and FakeObjectStore.objects == objects
    FakeObjectStore.reset()


# ---- run --detach -----------------------------------------------------------------------------------------------
def test_detach_is_refused_for_a_local_run(catalog, tmp_path, capsys):
    for runner in ([], ["--runner", "DirectRunner"]):
        code, _, err = call_main(run.main, ["--catalog", str(catalog), "--output", str(tmp_path / "o"), "--detach",
                                            *runner], capsys)
        lines = err.strip().splitlines()
        assert code == exit_status.USAGE and len(lines) == 1 and "--detach needs a remote runner" in lines[0], err
    assert not (tmp_path / "o").exists()


def test_detach_with_a_dataflow_dry_run_checks_and_builds_and_writes_nothing(catalog, tmp_path, capsys):
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    code, out, err = call_main(run.main, ["--catalog", str(catalog), "--output", str(tmp_path / "o"), *DATAFLOW,
                                          "--dry_run=True", "--no_auth", "--detach"], capsys)
    assert code == 0 and "not submitted" in out and "--detach" in out, err
    assert not (tmp_path / "o").exists()


class SubmittedJob:
    """What Beam's DataflowRunner returns for a submitted job, standing in for the service: its id; waiting for
    it is what ``--detach`` must not do."""

    def __init__(self, config):
        self.config = config

    def job_id(self) -> str:
        return "2026-01-02_03_04_05-4242"

    def wait_until_finish(self, duration=None):
        raise AssertionError("a detached launcher waited for its job")


def test_detach_submits_records_the_job_and_leaves_then_finalize_finishes_it(catalog, tmp_path, capsys,
                                                                               monkeypatch):
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    submitted = []
    monkeypatch.setattr(job, "submit", lambda config, options, runner=None: submitted.append(config)
                        or SubmittedJob(config))
    out = tmp_path / "out"
    code, stdout, err = call_main(run.main, ["--catalog", str(catalog), "--output", str(out), *DATAFLOW, "--no_auth",
                                             "--detach", "--quiet"], capsys)
    assert code == 0, err
    assert "job 2026-01-02_03_04_05-4242" in stdout and f"python -m pipeline finalize {out}" in stdout
    record = json.loads((out / finalize.JOB_FILE).read_text())
    assert (record["runner"], record["job_id"], record["project"], record["region"], record["allow_empty"]) == (
        "DataflowRunner", "2026-01-02_03_04_05-4242", "genie-worlds-test", "us-central1", False)
    held = lease.read(str(out))
    assert held.job_id == record["job_id"] and held.pid is None  # the job holds the output, the launcher left

    # The job runs on: a second run into the output is refused, finalize says "later", nothing changes.
    before = snapshot(out)
    code, _, err = call_main(run.main, run_args(catalog, out), capsys)
    assert code == exit_status.LEASE_HELD and "DataflowRunner job 2026-01-02_03_04_05-4242" in err, err
    code, _, err = finalize_cli(out, capsys)
    assert code == exit_status.NOT_FINISHED, err
    assert snapshot(out) == before

    # The job, as Dataflow would run it (here: Beam's local runner in this process), then finalize.
    (out / STALE_SHARD).parent.mkdir(parents=True, exist_ok=True)
    (out / STALE_SHARD).write_bytes(b"an earlier run's shard")
    monkeypatch.undo()
    options = job.local_options([], None, in_process=True)
    job.run_pipeline(submitted[0], options, job.local_runner([], options))
    code, stdout, err = finalize_cli(out, capsys)
    assert code == 0 and "finalized DataflowRunner job 2026-01-02_03_04_05-4242" in stdout, err
    assert "kept 1 clips" in stdout and "removed 1 stale shard(s)" in stdout
    assert not (out / lease.LEASE_FILE).exists() and not (out / STALE_SHARD).exists()
    files = snapshot(out)
    assert finalize_cli(out, capsys)[0] == 0 and snapshot(out) == files
    assert FileSystems.exists(str(out / audit_stage.SHARD_INDEX_FILE))
