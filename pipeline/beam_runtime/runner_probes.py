"""Probes of Beam's local runner for measurement runs (``benchmarks/scale_bench.py``), never installed by a run.

They patch the FnApiRunner and the SDK worker to count what the runner drops, record the largest bundle input,
cut a stage into bundles of one input chunk, name the running stage, and (``WORKER_PATCH``, a sitecustomize
source for every process of a run) size the data plane's buffers. Checked against apache-beam ``CHECKED_BEAM``;
``missing_names()`` lists what this Beam lacks, and tests/pipeline/test_runner_probes.py fails on a Beam without
one of them.
"""

from __future__ import annotations

import importlib
import itertools

from pipeline.beam_runtime import streamed_inputs

CHECKED_BEAM = ("2.77.0", "2.78.0")
PATCHED = {  # module: the names the probes replace or read there
    "apache_beam.runners.portability.fn_api_runner.execution": ("GroupingBuffer.extend", "ListBuffer"),
    "apache_beam.runners.portability.fn_api_runner.fn_runner": (
        "BundleManager._send_input_to_worker", "ParallelBundleManager.process_bundle", "FnApiRunner._execute_bundle"),
    "apache_beam.runners.worker.bundle_processor": ("DataOutputOperation.finish",),
}


def missing_names() -> list[str]:
    """The names the probes patch that this Beam lacks ("module:Class.attr"); empty on a checked Beam."""
    missing = []
    for module_name, names in PATCHED.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = module
            for part in name.split("."):
                obj = getattr(obj, part, None)
            if obj is None:
                missing.append(f"{module_name}:{name}")
    return missing


def watch_runner_drops() -> list[int]:
    """Count what Beam's local runner throws away when it merges buffers: ``GroupingBuffer.extend`` returns
    without a word when handed a ``ListBuffer`` (fn_api_runner/execution.py). Diagnostic only: a non-empty
    count means elements bound for a GroupByKey were dropped by the runner, not by the pipeline. In this graph
    only the runner's empty padding buffers can reach it (docs/pipeline.md): the count has always been 0."""
    from apache_beam.runners.portability.fn_api_runner import execution

    dropped = [0, 0]  # (buffers, encoded chunks)
    original = execution.GroupingBuffer.extend

    def extend(self, input_buffer):
        if isinstance(input_buffer, execution.ListBuffer) and input_buffer._inputs:
            dropped[0] += 1
            dropped[1] += len(input_buffer._inputs)
        return original(self, input_buffer)

    execution.GroupingBuffer.extend = extend
    return dropped


def watch_bundle_inputs(stream: bool, chunk_bytes: int) -> dict[str, int]:
    """Record the largest input the local runner hands one SDK worker for one bundle, per read transform
    (``{transform: bytes}``). With ``stream`` the inputs go as the product's local runs send them
    (``pipeline.beam_runtime.streamed_inputs``, messages of about ``chunk_bytes`` while the bundle runs);
    without, as Beam's FnApiRunner does: a worker's whole share of a stage's input in one message before the
    bundle starts (a GroupByKey's share is one encoded blob), which the worker holds for the whole bundle."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    if stream and not streamed_inputs.install(chunk_bytes):
        raise RuntimeError("this Beam lacks what streamed inputs replace: see pipeline/beam_runtime/streamed_inputs.py")
    largest: dict[str, int] = {}
    send = fn_runner.BundleManager._send_input_to_worker

    def send_input(self, process_bundle_id, read_transform_id, byte_streams):
        byte_streams = list(byte_streams or [])
        largest[read_transform_id] = max(largest.get(read_transform_id, 0), sum(map(len, byte_streams)))
        return send(self, process_bundle_id, read_transform_id, byte_streams)

    fn_runner.BundleManager._send_input_to_worker = send_input
    return largest


def bound_bundles() -> list[int]:
    """Run each worker's share of a stage as a series of bundles of one input chunk each (the streamed inputs' chunks:
    a ``GroupingBuffer`` share cut by ``streamed_inputs.grouped_chunks``, or the encoded blocks the producing bundles flushed),
    one after the other on that worker, instead of Beam's one bundle per worker per stage.

    Dataflow runs bundles of bounded size (a few MB of shuffle or source input each); the FnApiRunner runs
    one bundle of N / workers elements per worker per stage. This tests whether anything the SDK harness keeps
    for a bundle's life grows with N there and nowhere else: measured, it did not (docs/pipeline.md, "What
    holds a worker's peak": the 1M peak was within 4% of the one-bundle run). Returns ``[largest number of bundles a worker ran for one stage]``. Semantics are
    unchanged: every element goes to exactly one bundle; the graph has no timers and no splittable DoFn
    (docs/pipeline.md), and lifted combiners merge any number of per-bundle accumulators.
    """
    from apache_beam.metrics import monitoring_infos
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.utils import thread_pool_executor

    most = [0]
    original = fn_runner.ParallelBundleManager.process_bundle

    def process_bundle(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run=False):
        if fired_timers or dry_run or self._num_workers < 1:
            return original(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run)
        shares = [{} for _ in range(self._num_workers)]
        for name, buffer in inputs.items():
            for ix, part in enumerate(buffer.partition(self._num_workers)):
                shares[ix][name] = part
        runs = []  # per worker: its sub-bundles, chunk j of every input in sub-bundle j
        for share in shares:
            count = max([len(chunks) for chunks in share.values()] + [1])
            runs.append([{name: chunks[j:j + 1] for name, chunks in share.items()} for j in range(count)])
        most[0] = max([most[0]] + [len(r) for r in runs])

        def execute(worker_runs):
            results = []
            for part_map in worker_runs:
                manager = fn_runner.BundleManager(self.bundle_context_manager, self._progress_frequency,
                                                  cache_token_generator=self._cache_token_generator)
                results.append(manager.process_bundle(part_map, expected_outputs, {}, expected_output_timers))
            return results

        merged, splits = None, []
        with thread_pool_executor.shared_unbounded_instance() as executor:
            for worker_results in executor.map(execute, runs):
                for result, split in worker_results:
                    splits += split
                    merged = result if merged is None else beam_fn_api_pb2.InstructionResponse(
                        process_bundle=beam_fn_api_pb2.ProcessBundleResponse(
                            monitoring_infos=monitoring_infos.consolidate(itertools.chain(
                                result.process_bundle.monitoring_infos, merged.process_bundle.monitoring_infos))),
                        error=result.error or merged.error)
        return merged, splits

    fn_runner.ParallelBundleManager.process_bundle = process_bundle
    return most


def watch_stages(watcher) -> None:
    """Set ``watcher.stage`` to the name of each fused stage as the local runner starts it."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    execute = fn_runner.FnApiRunner._execute_bundle

    def _execute_bundle(self, runner_execution_context, bundle_context_manager, bundle_input):
        watcher.stage = bundle_context_manager.stage.name
        return execute(self, runner_execution_context, bundle_context_manager, bundle_input)

    fn_runner.FnApiRunner._execute_bundle = _execute_bundle


# Beam's gRPC data channel (apache_beam.runners.worker.data_plane._GrpcDataChannel) keeps a staging and a send
# queue of up to 100 MB each for a bundle's outputs, and up to 100 MB per instruction of received inputs: fixed
# bounds, not per item, but a worker whose consumer is slower than its bundle fills them, so they show up in its
# peak RSS once a bundle's output exceeds them. --data-queue-mb lowers the bounds in every process of the run.
# Each output of a bundle (one per consumer of a fused stage) also buffers up to 10 MB before it is sent
# (``data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD``): the pipeline's workers send at 1 MB
# (``pipeline.beam_runtime.data_plane_buffers``); --flush-mb sets that size in every process instead.
WORKER_PATCH = """
import os
if os.environ.get("SCALE_BENCH_RELEASE_OUTPUT_STREAMS"):
    # Beam's DataOutputOperation keeps its output stream after the bundle (close() sends the rest but keeps the
    # malloc'd buffer, up to 16 MB), and the SDK caches the bundle processor for reuse: drop it at finish.
    from apache_beam.runners.worker import bundle_processor
    _finish = bundle_processor.DataOutputOperation.finish
    def _finish_and_release(self):
        _finish(self)
        self.output_stream = None  # set again by process_bundle before the processor's next bundle
    bundle_processor.DataOutputOperation.finish = _finish_and_release
if os.environ.get("SCALE_BENCH_DATA_QUEUE_MB") or os.environ.get("SCALE_BENCH_FLUSH_MB"):
    from pipeline.beam_runtime import data_plane_buffers
    def _mb(name):
        return int(os.environ[name]) << 20 if os.environ.get(name) else None
    assert data_plane_buffers.apply(_mb("SCALE_BENCH_FLUSH_MB"), _mb("SCALE_BENCH_DATA_QUEUE_MB"))
"""
