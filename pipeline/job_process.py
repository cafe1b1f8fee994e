"""A local job in a process session of its own, so that the launcher alone answers Ctrl-C.

``python -m pipeline run`` runs a local job (Beam's FnApiRunner and its SDK worker processes) in a child
process started with ``start_new_session``: a terminal's SIGINT reaches the launcher only, which kills the
child's whole session (workers and their decoder children) and exits quietly (``pipeline.runtime.interrupts``). The
child's stdout and stderr go to the run's log file, so Beam's own chatter and any traceback land there, and
the child hands its verdict back in a small JSON file: ``{"ok": true}`` or the failed stage, the exception's
type and its root cause. The child exits by itself if the launcher dies (it watches its parent).

Cost: one more Python process start (about two seconds) per run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline import job
from pipeline.beam_runtime import worker_logs
from pipeline.runtime import run_log

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """The job raised: ``stage`` it came from and the root cause's one line."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def run(config, beam_args: list[str], workers: int | None, in_process: bool, log_file: str) -> None:
    """Run ``config`` (a ``pipeline.job.RunConfig``) in a child session; raises ``JobFailed`` when it fails.
    An ``Interrupted`` (or any exception) while waiting kills the child's session before it propagates."""
    with tempfile.TemporaryDirectory(prefix="genie-job-") as tmp:
        spec, verdict = Path(tmp, "spec.pkl"), Path(tmp, "verdict.json")
        spec.write_bytes(pickle.dumps((config, beam_args, workers, in_process)))
        with open(log_file, "ab") as log_stream:
            child = subprocess.Popen([sys.executable, "-m", "pipeline.job_process", str(spec), str(verdict)],
                                     stdin=subprocess.DEVNULL, stdout=log_stream, stderr=log_stream,
                                     start_new_session=True)
        try:
            code = child.wait()
        except BaseException:
            _kill_session(child)
            raise
        _kill_session(child)  # anything the job left behind (a worker that outlived it)
        try:
            result = json.loads(verdict.read_text())
        except (OSError, ValueError):
            result = {"ok": False, "stage": "unknown",
                      "error": f"the job process ended with exit code {code} and no verdict"}
        if not result.get("ok"):
            raise JobFailed(result.get("stage", "unknown"), result.get("error", ""))


def _kill_session(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the session is gone already
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _watch_parent(parent: int) -> None:
    """End this session when the launcher is gone (killed with SIGKILL: it could not stop the job itself)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def _main(spec_path: str, verdict_path: str) -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(level=logging.INFO, format=run_log.FILE_FORMAT)
    worker_logs.relay_logger().addFilter(worker_logs.WorkerLogFilter())  # the workers' lines, not gRPC blobs
    config, beam_args, workers, in_process = pickle.loads(Path(spec_path).read_bytes())
    options = job.local_options(beam_args, workers, in_process)
    try:
        job.run_pipeline(config, options, job.local_runner(beam_args, options))
    except Exception as exc:
        log.exception("the job failed")
        stage, error = job.root_cause(exc)
        verdict = {"ok": False, "stage": stage, "error": error}
        Path(verdict_path).write_text(json.dumps(verdict))
        return 1
    Path(verdict_path).write_text(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
