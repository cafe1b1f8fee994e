"""The local runner's relayed worker logs reach the launcher as this project's lines: a real SDK worker process
logs (the worker plugin's INFO line, from ``pipeline/beam_runtime/data_plane_buffers.py``), Beam relays it, and
``WorkerLogFilter`` hands on the message itself. Fails when Beam renames the relay logger or changes the
relayed text's layout (``pipeline.beam_runtime.worker_logs``)."""

from __future__ import annotations

import logging

import apache_beam as beam

from pipeline import job
from pipeline.beam_runtime import worker_logs


class _Seen(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.raw = []

    def emit(self, record):
        self.raw.append(record.getMessage())


def test_this_beam_is_one_the_relay_was_checked_against():
    assert beam.__version__ in worker_logs.CHECKED_BEAM, (
        f"apache-beam {beam.__version__} is not in worker_logs.CHECKED_BEAM: check the relay against it")


def test_a_workers_line_arrives_as_its_message():
    relay = worker_logs.relay_logger()
    seen = _Seen()
    level, filters = relay.level, list(relay.filters)  # a run in this process may have put the filter there
    relay.setLevel(logging.INFO)
    relay.filters.clear()
    relay.addHandler(seen)
    try:
        options = job.local_options([], workers=1)
        with beam.Pipeline(runner=job.local_runner([], options), options=options) as p:
            _ = p | beam.Create([0]) | beam.Map(lambda x: x)
    finally:
        relay.removeHandler(seen)
        relay.setLevel(level)
        relay.filters[:] = filters
    relayed = [text for text in seen.raw if "data-plane buffers set" in text]
    assert relayed, f"no worker line relayed through {worker_logs.RELAY_LOGGER}: {seen.raw[:3]}"
    assert "log_location" in relayed[0]  # what Beam relays: the worker's log entry as text
    record = logging.LogRecord(worker_logs.RELAY_LOGGER, logging.INFO, __file__, 0, relayed[0], (), None)
    assert worker_logs.WorkerLogFilter().filter(record)
    assert record.getMessage().startswith("data-plane buffers set") and "log_location" not in record.getMessage()


def test_beams_own_chatter_is_dropped_and_errors_kept():
    chatter = 'message: "Status HTTP server running" log_location: "/x/apache_beam/runners/worker/sdk_worker.py:1"'
    record = logging.LogRecord(worker_logs.RELAY_LOGGER, logging.INFO, __file__, 0, chatter, (), None)
    assert not worker_logs.WorkerLogFilter().filter(record)
    record = logging.LogRecord(worker_logs.RELAY_LOGGER, logging.ERROR, __file__, 0, chatter, (), None)
    assert worker_logs.WorkerLogFilter().filter(record) and record.getMessage() == "Status HTTP server running"
