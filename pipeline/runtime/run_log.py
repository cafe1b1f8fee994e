"""Where a run's messages go: the console gets progress, warnings and one-line errors; a log file gets
everything, tracebacks included, and its path is named whenever something failed.

The log file is ``<output>/logs/run-<UTC time>.log`` for a local output (next to what it explains), else a
file in the system's temporary directory (a ``gs://`` output is not a place to append to).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import tempfile

from pipeline.beam_runtime import worker_logs

CONSOLE_LEVELS = ("debug", "info", "warning", "error")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


FILE_ONLY = {"file_only": True}  # ``log.error(..., extra=FILE_ONLY)``: for the log file, not the console


class _ConsoleFilter(logging.Filter):
    """The console is for this project's lines: Beam's own records (an error it logs with its traceback before
    raising, start-up chatter) reach it only at ``--log-level info`` or ``debug``, and records meant for the
    file (``FILE_ONLY``) never do."""

    def __init__(self, handler: logging.Handler):
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        relayed = record.name == worker_logs.RELAY_LOGGER
        return not record.name.startswith("apache_beam") or relayed or self.handler.level < logging.WARNING


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a handler made once would keep a replaced, maybe closed, one)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class _OneLine(logging.Formatter):
    """A record as one line: a traceback belongs in the log file."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.getMessage()}"


def setup_console(level: str = "warning") -> None:
    """Console logging at ``level``; this project's INFO lines and the workers' relayed lines reach the file
    log (``open_file``) whatever the console shows."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_genie_console", False) for h in root.handlers):
        console = _Stderr()
        console._genie_console = True  # type: ignore[attr-defined]
        console.setFormatter(_OneLine())
        console.addFilter(_ConsoleFilter(console))
        root.addHandler(console)
    for handler in root.handlers:
        if getattr(handler, "_genie_console", False):
            handler.setLevel(level.upper())
    logging.getLogger("pipeline").setLevel(logging.INFO)
    relay = worker_logs.relay_logger()
    relay.setLevel(logging.INFO)
    if not any(isinstance(f, worker_logs.WorkerLogFilter) for f in relay.filters):
        relay.addFilter(worker_logs.WorkerLogFilter())


def log_path(output_dir: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if "://" in output_dir and not output_dir.startswith("file://"):
        return os.path.join(tempfile.gettempdir(), f"genie-pipeline-run-{stamp}-{os.getpid()}.log")
    return os.path.join(output_dir.removeprefix("file://"), "logs", f"run-{stamp}.log")


def open_file(path: str) -> logging.Handler:
    """Send every INFO+ record (tracebacks included) to ``path``; returns the handler (``close_file``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def close_file(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
