"""The local runner's relayed worker logs, reduced to this project's lines.

Beam's FnApiRunner relays each SDK worker's log records to the launcher through one logger
(``RELAY_LOGGER``), each record's text being the worker's log entry as protobuf text
(``message: "..." instruction_id: ... log_location: "..."``). ``WorkerLogFilter`` reads that text: it keeps the
lines logged from this project's modules and every error, reduced to their message, and drops Beam's
per-worker start-up chatter. Both the logger's name and the text's layout are Beam's internals: checked
against apache-beam ``CHECKED_BEAM``; ``tests/pipeline/test_worker_logs.py`` runs real local workers and fails
when a worker's line no longer arrives as its message.
"""

from __future__ import annotations

import logging
import re

CHECKED_BEAM = ("2.77.0", "2.78.0")
RELAY_LOGGER = "apache_beam.runners.portability.local_job_service"


def relay_logger() -> logging.Logger:
    return logging.getLogger(RELAY_LOGGER)


class WorkerLogFilter(logging.Filter):
    """Keep this project's relayed lines and errors, reduced to their message; drop the rest."""

    _MESSAGE = re.compile(r'message: "(.*?)" (?:instruction_id|log_location|thread):', re.S)
    _LOCATION = re.compile(r'log_location: "([^"]*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        match, where = self._MESSAGE.search(text), self._LOCATION.search(text)
        if match is None:
            return record.levelno >= logging.ERROR
        message, location = match.group(1), where.group(1) if where else ""
        if "/pipeline/" not in location and record.levelno < logging.ERROR:
            return False
        record.msg, record.args = message.replace("\\'", "'"), ()
        return True
