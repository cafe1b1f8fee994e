"""``python -m pipeline finalize OUT``: what ``run`` does after its job, for a job its launcher did not wait for.

``finish`` holds the steps after a job in one place (``run`` calls it too): read ``stats.json`` (exit 1 when the
conservation law fails), delete what an earlier run left and this one did not write, sweep killed writers'
temporaries, print the summary and return the exit status (``pipeline.audit.exit_status``); ``finalize`` then
releases the lease. A remote run writes ``job.json`` right after submitting; the job has finished when
``stats.json`` (written last) is at least as new as ``run_inputs.json`` (``job_finished``).
``finalize`` decides from the output alone and never asks the runner: while a live lease holds it, it changes
nothing and exits 69 ("again later"); a job that ended without its stats exits 1 (rerun ``run``); a finished job
is finalized. It is idempotent. A job that failed on its runner holds the output until ``lease.JOB_TTL_S`` or
``run --force-lease``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback

from apache_beam.io.filesystems import FileSystems

from pipeline.audit import aggregates, audit_stage, manifest
from pipeline.audit.exit_status import NOT_FINISHED, RUN_FAILED, exit_status
from pipeline.audit.summary import summary
from pipeline.cli import lease, run_inputs
from pipeline.io import storage
from pipeline.local import local_slices
from pipeline.local.search_plan import PLAN_FILE, Plan, slices_dir
from schemas import clip_format
from schemas.cli import StrictParser, fail
from schemas.stats import Stats

log = logging.getLogger(__name__)
PROG = "python -m pipeline finalize"
JOB_FILE = "job.json"


def command(output_dir: str) -> str:
    return f"{PROG} {output_dir}"


def job_record(output_dir: str, runner: str, job_id: str, project: str | None, region: str | None,
               allow_empty: bool, submitted_s: float | None = None) -> dict:
    """What ``job.json`` holds: the job, where it runs, and the run's settings ``finalize`` needs."""
    submitted_s = time.time() if submitted_s is None else submitted_s
    return {"runner": runner, "job_id": job_id, "project": project, "region": region,
            "submitted_s": submitted_s,
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(submitted_s)),
            "output": output_dir, "allow_empty": allow_empty, "finalize": command(output_dir)}


def write_job(output_dir: str, record: dict) -> None:
    storage.write_bytes(FileSystems.join(output_dir, JOB_FILE),
                        (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_job(output_dir: str) -> dict | None:
    """The remote job the last run submitted, or None (a local run, or none)."""
    path = FileSystems.join(output_dir, JOB_FILE)
    return json.loads(storage.read_bytes(path)) if FileSystems.exists(path) else None


def clear_job(output_dir: str) -> None:
    """A new launch: the record of an earlier run's job no longer describes the output."""
    storage.delete_quietly(FileSystems.join(output_dir, JOB_FILE))


def _modified_s(path: str) -> float | None:
    """The file's modification time as its store reports it (0.0: the store reports none), None if absent."""
    if storage.is_local(path):
        try:
            return os.path.getmtime(storage.local_path(path))
        except OSError:
            return None
    try:
        found = FileSystems.match([path])[0].metadata_list
    except Exception:  # noqa: BLE001 - nothing there to match
        return None
    return found[0].last_updated_in_seconds if found else None


def job_finished(output_dir: str) -> bool:
    """True when the output's ``stats.json`` was written since the last launch (``run_inputs.json``)."""
    stats = _modified_s(FileSystems.join(output_dir, audit_stage.STATS_FILE))
    if stats is None:
        return False
    launched = _modified_s(FileSystems.join(output_dir, run_inputs.INPUTS_FILE))
    return launched is None or not (stats and launched) or stats >= launched


def local_plan(output_dir: str) -> Plan | None:
    """A local run's search plan (its slices), as the run used it; None for a run without one."""
    path = FileSystems.join(slices_dir(output_dir), PLAN_FILE)
    return Plan.from_json(storage.read_bytes(path)) if FileSystems.exists(path) else None


def finish(output_dir: str, plan: Plan | None, elapsed_s: float | None, allow_empty: bool,
           notes: tuple[str, ...] = (), headline: str | None = None) -> int:
    """The steps after a finished job (the module's docstring); returns the run's exit status. ``plan``: a
    local run's slices (None: one job wrote the output); ``notes``: lines for stderr after the summary."""
    stats = Stats.from_json(storage.read_bytes(FileSystems.join(output_dir, audit_stage.STATS_FILE)))
    if not stats.conservation.ok:
        print(aggregates.failure_message(stats), file=sys.stderr)
        return RUN_FAILED
    stale = (local_slices.remove_stale_outputs(output_dir, plan, stats) if plan is not None
             else audit_stage.remove_stale_outputs(output_dir, stats))
    for name in (clip_format.SHARD_DIR, audit_stage.OUTCOMES_DIR, manifest.MANIFEST_DIR, ""):  # killed writers' leftovers
        storage.sweep_temporaries(FileSystems.join(output_dir, name) if name else output_dir)
    print(summary(stats, elapsed_s, output_dir, stale, headline))
    for note in notes:
        print(note, file=sys.stderr)
    code, message = exit_status(stats, allow_empty)
    if message:
        print(message, file=sys.stderr)
    return code


def finalize(output_dir: str, allow_empty: bool = False) -> int:
    """Finalize the output's last run if its job has finished (see the module's docstring); the exit status."""
    job = read_job(output_dir)
    finished = job_finished(output_dir)
    current = lease.read(output_dir)
    if current is not None:
        live, why = lease.liveness(current, finished)
        if live:
            hint = (f"; if it failed or was cancelled on {current.runner}, rerun run with --force-lease"
                    if current.job_id and not finished else "")
            print(f"{PROG}: not finished: {current.holder()} holds {output_dir} ({why}); nothing was changed, "
                  f"run finalize again later{hint}", file=sys.stderr)
            return NOT_FINISHED
    if not finished:
        what = f"{job['runner']} job {job['job_id']}" if job else "the last run's job"
        print(f"{PROG}: {what} ended without writing {output_dir}/{audit_stage.STATS_FILE} (failed, cancelled or "
              "stopped); nothing was changed: rerun the same run command to resume", file=sys.stderr)
        return RUN_FAILED
    stats_s = _modified_s(FileSystems.join(output_dir, audit_stage.STATS_FILE))
    started_s = job["submitted_s"] if job else _modified_s(FileSystems.join(output_dir, run_inputs.INPUTS_FILE))
    elapsed_s = stats_s - started_s if stats_s and started_s and stats_s >= started_s else None
    who = f"{job['runner']} job {job['job_id']}" if job else "local run"
    took = f" in {elapsed_s:.1f} s" if elapsed_s is not None else ""
    code = finish(output_dir, None if job else local_plan(output_dir), elapsed_s,
                  allow_empty or bool(job and job.get("allow_empty")),
                  headline=f"finalized {who}, done{took} -> {output_dir}")
    if lease.release(output_dir):
        log.info("released the lease of %s", output_dir)
    return code


def build_parser() -> StrictParser:
    parser = StrictParser(
        prog=PROG,
        description="Finish a run whose launcher did not wait for its job (run --detach): check the job's stats, "
                    "remove stale outputs, print the summary and release the output's lease.",
        epilog="Safe to repeat: a finalized output is left as it is. Exit codes: the run's (0 done, 1 failed or "
               "the job ended without its stats, 65 no clip kept, 66 no input readable, 75 items deferred or refused by the storage: rerun), 2 "
               "usage error, 69 the job has not finished: run finalize again later (docs/pipeline.md).")
    parser.add_argument("output", help="the run's --output (a local directory or gs:// prefix)")
    parser.add_argument("--allow-empty", action="store_true", default=False,
                        help="exit 0 when the run kept no clip (default: what the run was given, else exit 65)")
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    output = ns.output.rstrip("/")
    if "://" not in output:
        output = os.path.abspath(output)
    if not any(FileSystems.exists(FileSystems.join(output, name))
               for name in (run_inputs.INPUTS_FILE, audit_stage.STATS_FILE, lease.LEASE_FILE)):
        return fail(PROG, f"{output} holds no run ({run_inputs.INPUTS_FILE}, {audit_stage.STATS_FILE} and "
                          f"{lease.LEASE_FILE} are missing): name a run's --output")
    try:
        return finalize(output, ns.allow_empty)
    except Exception as exc:  # noqa: BLE001 - one line on the console, the traceback in a file
        with tempfile.NamedTemporaryFile("w", prefix="genie-finalize-", suffix=".log", delete=False) as f:
            traceback.print_exc(file=f)
        print(f"{PROG} FAILED: {type(exc).__name__}: {exc} (traceback in {f.name})", file=sys.stderr)
        return RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
