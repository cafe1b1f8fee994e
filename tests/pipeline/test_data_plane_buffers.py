"""The SDK workers send each bundle output at ``data_plane_buffers.FLUSH_BYTES`` (not Beam's 10 MB) and cap their
data-plane queues at ``QUEUE_BYTES`` (not 100 MB): set in the worker processes of a real local run through Beam's
``--beam_plugins``, and asked for on Dataflow jobs."""

import os
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.runners.worker import data_plane

from pipeline import job, run
from pipeline.beam_runtime import data_plane_buffers

BEAM_DEFAULT = 10 << 20  # Beam's output flush size
BEAM_QUEUE = 100 << 20  # Beam's cap per data-plane queue


def test_apply_sets_the_threshold_that_new_output_streams_flush_at():
    """In a fresh process (this one's Beam stays as it is): a stream made as the SDK harness makes them sends
    once it holds more than FLUSH_BYTES, and not before."""
    code = """
from apache_beam.runners.worker import data_plane
from pipeline.beam_runtime import data_plane_buffers
assert data_plane_buffers.flush_bytes() == 10 << 20
assert data_plane_buffers.apply()
sent = []
for time_limit_ms in (0, 60_000):  # size-based, and the time-based stream some runners ask for
    stream = data_plane.ClosableOutputStream.create(None, sent.append, time_limit_ms)
    for _ in range(9):
        stream.write(b"x" * 100_000)
        stream.maybe_flush()
    assert not sent, "sent before the threshold"
    stream.write(b"x" * 200_000)
    stream.maybe_flush()
    assert [len(m) for m in sent] == [1_100_000], sent
    sent.clear()
    stream.close()
print(data_plane_buffers.flush_bytes(), data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD)
print(data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(data_plane_buffers.FLUSH_BYTES)] * 2 + [str(data_plane_buffers.QUEUE_BYTES)]


class _BuffersInWorker(beam.DoFn):
    """Writes the worker's pid, output flush size and queue cap (read when its data channel was created)."""

    def __init__(self, path):
        self.path = path

    def process(self, _):
        with open(self.path, "w") as f:
            f.write(f"{os.getpid()} {data_plane_buffers.flush_bytes()} {data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES}")
        yield 0


def _worker_buffers(tmp_path, options) -> tuple[int, int]:
    path = tmp_path / "worker.txt"
    with beam.Pipeline(runner=job.local_runner([], options), options=options) as p:
        _ = p | beam.Create([0]) | beam.ParDo(_BuffersInWorker(str(path)))
    pid, flush, queue = map(int, path.read_text().split())
    assert pid != os.getpid(), "ran in the launcher, not in an SDK worker process"
    return flush, queue


def test_local_runs_workers_use_the_pipelines_sizes(tmp_path):
    assert _worker_buffers(tmp_path, job.local_options([], workers=1)) == (
        data_plane_buffers.FLUSH_BYTES, data_plane_buffers.QUEUE_BYTES)
    assert data_plane_buffers.flush_bytes() == BEAM_DEFAULT, "the launcher's own Beam was changed"
    assert data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES == BEAM_QUEUE


def test_without_the_plugin_workers_keep_beams_sizes(tmp_path):
    options = data_plane_buffers.without_worker_plugin(job.local_options([], workers=1))
    assert _worker_buffers(tmp_path, options) == (BEAM_DEFAULT, BEAM_QUEUE)


@pytest.mark.parametrize("user_plugins", [[], ["--beam_plugins", "my.plugin"]])
def test_dataflow_jobs_ask_their_workers_for_the_plugin(user_plugins):
    args = ["--runner", "DataflowRunner", "--project", "p", "--region", "r", *user_plugins]
    options = job.local_options(args, workers=None)
    plugins = options.view_as(SetupOptions).beam_plugins
    assert plugins.count(data_plane_buffers.WORKER_PLUGIN) == 1
    assert set(plugins) == {data_plane_buffers.WORKER_PLUGIN, *user_plugins[1:]}
    assert data_plane_buffers.with_worker_plugin(options).view_as(SetupOptions).beam_plugins == plugins


def test_a_beam_without_these_names_keeps_its_defaults_and_says_so(monkeypatch, caplog):
    monkeypatch.delattr(data_plane, "TimeBasedBufferingClosableOutputStream")
    # the channel's batch size in this process may be the local runner's (streamed_inputs sets it): unchanged
    channel_batch = data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD
    assert data_plane_buffers.apply() is False
    assert data_plane_buffers.flush_bytes() == BEAM_DEFAULT
    assert channel_batch == data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD
    assert data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES == BEAM_QUEUE
    assert "TimeBasedBufferingClosableOutputStream" in caplog.text


def test_the_plugin_logs_one_info_line_with_the_values_it_set():
    """In a fresh process, as a worker imports it: the plugin's import applies the sizes and says so."""
    code = """
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
import pipeline.runtime.worker_start
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "pipeline.beam_runtime.data_plane_buffers" in line]
    assert lines == [f"INFO pipeline.beam_runtime.data_plane_buffers data-plane buffers set (pipeline.beam_runtime.data_plane_buffers, Beam "
                     f"{beam.__version__}): outputs sent at 1 MB (Beam's: 10 MB), queues capped at 8 MB (Beam's: "
                     "100 MB)"], done.stderr


def test_a_beam_without_the_names_logs_a_warning_naming_them(monkeypatch, caplog):
    monkeypatch.delattr(data_plane, "_DEFAULT_SEND_QUEUE_MAX_BYTES")
    assert data_plane_buffers.apply() is False
    [record] = [r for r in caplog.records if r.name == "pipeline.beam_runtime.data_plane_buffers"]
    assert record.levelname == "WARNING" and "NOT set" in record.getMessage()
    assert "_DEFAULT_SEND_QUEUE_MAX_BYTES" in record.getMessage()


@pytest.mark.parametrize("runner", [[], ["--runner", "DataflowRunner", "--project", "p", "--region", "r"]])
def test_no_worker_plugin_leaves_the_plugin_out_of_the_job(tmp_path, runner):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "a", "url": "a.mp4"}\n')
    base = ["--catalog", str(catalog), "--output", str(tmp_path / "out"), *runner]
    _, launch, beam_args = run.parse(base)
    assert launch.worker_plugin
    with_plugin = job.local_options(beam_args, workers=1).view_as(SetupOptions).beam_plugins
    assert with_plugin == [data_plane_buffers.WORKER_PLUGIN]
    _, launch, beam_args = run.parse([*base, "--no-worker-plugin"])
    assert not launch.worker_plugin
    options = job.local_options(beam_args, workers=1)  # as the launcher and a local job's own process build them
    assert not options.view_as(SetupOptions).beam_plugins
    assert data_plane_buffers.plugin_turned_off(options)
    if not runner:  # and a local runner hands its workers no plugin
        assert _worker_buffers(tmp_path, options) == (BEAM_DEFAULT, BEAM_QUEUE)
