"""Ctrl-C and SIGTERM end a run quietly: the launcher stops the job, exits 130 (SIGINT) or 143 (SIGTERM)
within seconds with one line that says how to continue, and prints no traceback.

A terminal's Ctrl-C goes to every process of the foreground job: each Beam SDK worker would print its own
KeyboardInterrupt traceback while the launcher tears down gRPC channels. So a local job runs in a process
session of its own (``pipeline.job_process``), which the terminal's signal does not reach; only the launcher
gets it, as ``Interrupted`` raised in its main thread, and it kills the job's session.

What a rerun finds: downloads, segmented videos and shards are committed by rename, so an interrupted run
leaves only temporaries that the next run into the same ``--output`` sweeps, and resumes from what was done.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt: no ``except Exception`` eats it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _raise(signum, _frame):
    raise Interrupted(signum)


def raise_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise ``Interrupted`` in the main thread."""
    for signum in SIGNALS:
        signal.signal(signum, _raise)
