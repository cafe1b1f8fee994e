"""The local runner hands each SDK worker its bundle input in ~1 MB messages while the bundle runs.

Beam's FnApiRunner writes a worker's whole share of a stage's input as one data-plane message before the
bundle starts (``BundleManager._send_input_to_worker``), and a GroupByKey's share as one encoded blob
(``GroupingBuffer.partition``): hundreds of MB per message at a million outcomes. Runs of the audit at that size
on the runner as it is lost contiguous blocks of elements (the conservation law caught each one); with the
inputs streamed in small messages no run has lost any (docs/pipeline.md, "Running locally"). A worker then
also holds about one message of its input instead of its whole share.

``install`` replaces those two methods, process-wide, for worker processes reached over gRPC (the runner's
``multi_processing`` mode). In-process workers (``in_memory``) read their input from a list without waiting
for it, so they keep Beam's way. Element boundaries are kept; every element is sent exactly once, in Beam's
order. Checked against apache-beam ``CHECKED_BEAM``; on a Beam without these names ``install`` leaves the
runner as it is and warns, and ``tests/pipeline/test_streamed_inputs.py`` fails.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading

log = logging.getLogger(__name__)

CHECKED_BEAM = ("2.77.0", "2.78.0")
# The runner side of Beam's Java portable runners (BeamFnDataOutboundAggregator.DEFAULT_BUFFER_LIMIT_BYTES).
CHUNK_BYTES = 1_000_000
EXIT_INPUT_LOST = 70  # the process ends when a worker's input cannot be sent whole (see _stream)

_installed: dict[str, int] = {}  # {"chunk_bytes": n} once installed in this process


def beam_names() -> list[str]:
    """The Beam internals ``install`` replaces or relies on that this Beam lacks (empty: all present)."""
    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
    from apache_beam.runners.worker import data_plane

    wanted = ((fn_runner.BundleManager, "_send_input_to_worker", ("self", "process_bundle_id",
                                                                   "read_transform_id", "byte_streams")),
              (execution.GroupingBuffer, "partition", ("self", "n")))
    missing = []
    for owner, name, params in wanted:
        method = getattr(owner, name, None)
        if method is None or tuple(inspect.signature(method).parameters) != params:
            missing.append(f"{owner.__name__}.{name}{params[1:]}")
    probe = _probe_grouping_buffer(execution.GroupingBuffer)
    missing += [f"GroupingBuffer.{name}" for name in ("_table", "_grouped_output", "_windowing", "_key_coder",
                                                      "_post_grouped_coder") if not hasattr(probe, name)]
    for name in ("_GrpcDataChannel", "_DEFAULT_SIZE_FLUSH_THRESHOLD"):
        if not hasattr(data_plane, name):
            missing.append(f"data_plane.{name}")
    return missing


def _probe_grouping_buffer(cls):
    from apache_beam import coders
    from apache_beam.transforms import core
    from apache_beam.transforms.window import GlobalWindows

    kv = coders.TupleCoder([coders.BytesCoder(), coders.BytesCoder()])
    grouped = coders.TupleCoder([coders.BytesCoder(), coders.IterableCoder(coders.BytesCoder())])
    return cls(kv, grouped, core.Windowing(GlobalWindows()))


def install(chunk_bytes: int = CHUNK_BYTES) -> bool:
    """Stream bundle inputs to gRPC workers in messages of about ``chunk_bytes`` in this process (idempotent).
    True when installed; False, with a warning, on a Beam without the names it replaces."""
    if _installed:
        return True
    missing = beam_names()
    if missing:
        log.warning("local runner: this Beam has no %s; bundle inputs go to workers as one message each (Beam's "
                    "way, checked against %s)", ", ".join(missing), " and ".join(CHECKED_BEAM))
        return False
    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
    from apache_beam.runners.worker import data_plane

    send, partition = fn_runner.BundleManager._send_input_to_worker, execution.GroupingBuffer.partition
    # The launcher's data channel batches queued messages into one gRPC message of up to this size (Beam: 10 MB).
    data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD = chunk_bytes

    def send_input(self, process_bundle_id, read_transform_id, byte_streams):
        if not isinstance(self._worker_handler.data_conn, data_plane._GrpcDataChannel):
            return send(self, process_bundle_id, read_transform_id, byte_streams)
        out = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
        threading.Thread(target=_stream, args=(out, list(byte_streams or []), process_bundle_id),
                         name=f"input-{process_bundle_id}", daemon=True).start()
        return None

    def partition_in_chunks(self, n):
        if self._grouped_output or not self._windowing.is_default():
            return partition(self, n)
        self._grouped_output = grouped_chunks(self, n, chunk_bytes)
        self._table.clear()
        return self._grouped_output

    fn_runner.BundleManager._send_input_to_worker = send_input
    execution.GroupingBuffer.partition = partition_in_chunks
    _installed["chunk_bytes"] = chunk_bytes
    return True


def installed_chunk_bytes() -> int | None:
    """The message size ``install`` set in this process, or None when Beam's way is in place."""
    return _installed.get("chunk_bytes")


def _stream(out, chunks: list[bytes], bundle: str) -> None:
    """Write a bundle's input while the bundle runs (the worker takes the messages as it processes them).

    A bundle whose input stops short would wait for the rest for ever, or worse end with part of it: when
    a write fails the process ends (``EXIT_INPUT_LOST``) after logging why, and the run fails instead."""
    try:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
        out.close()
    except BaseException:  # noqa: BLE001 - any failure here would lose or hang the bundle's input
        log.critical("local runner: the input of %s could not be sent to its worker; ending the job", bundle,
                     exc_info=True)
        logging.shutdown()
        os._exit(EXIT_INPUT_LOST)


def grouped_chunks(buffer, n: int, chunk_bytes: int) -> list[list[bytes]]:
    """``GroupingBuffer.partition(n)`` for the default windowing, each worker's share cut into chunks of about
    ``chunk_bytes`` at key boundaries: the same keys to the same shares, the same encoded (key, values)."""
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.transforms.window import GlobalWindow, GlobalWindows
    from apache_beam.utils import windowed_value

    window = GlobalWindows.windowed_value(
        None, timestamp=GlobalWindow().max_timestamp(),
        pane_info=windowed_value.PaneInfo(is_first=True, is_last=True, timing=windowed_value.PaneInfoTiming.ON_TIME,
                                          index=0, nonspeculative_index=0)).with_value
    coder_impl, key_coder_impl = buffer._post_grouped_coder.get_impl(), buffer._key_coder.get_impl()
    output: list[list[bytes]] = [[] for _ in range(n)]
    streams = [create_OutputStream() for _ in range(n)]
    for idx, (encoded_key, values) in enumerate(buffer._table.items()):
        out = streams[idx % n]
        coder_impl.encode_to_stream(window((key_coder_impl.decode(encoded_key), values)), out, True)
        if out.size() >= chunk_bytes:
            output[idx % n].append(out.get())
            streams[idx % n] = create_OutputStream()
    for ix, out in enumerate(streams):
        output[ix].append(out.get())
    return output
