"""``pipeline.beam_runtime.streamed_inputs``: the local runner's bundle inputs go to worker processes in small
messages, with every element exactly once, on the Beam versions it was checked against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam import coders
from apache_beam.coders.coders import GlobalWindowCoder
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.transforms import core
from apache_beam.transforms.window import GlobalWindows

from pipeline.beam_runtime import data_plane_buffers, local_runner, streamed_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", [streamed_inputs, local_runner, data_plane_buffers],
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_this_beam_is_one_the_quarantine_was_checked_against(module):
    """Fails on a Beam upgrade: re-read what the module replaces or builds in that Beam, then add its version."""
    assert beam.__version__ in module.CHECKED_BEAM, (
        f"apache-beam {beam.__version__} is not in {module.__name__}.CHECKED_BEAM: check the module against it")


def test_the_names_streamed_inputs_replaces_are_there():
    """``fn_runner.BundleManager._send_input_to_worker`` and ``execution.GroupingBuffer.partition`` and their
    helpers, with the signatures the replacements take."""
    assert streamed_inputs.beam_names() == []


def _grouping_buffer(keys: int, values_per_key: int):
    kv = coders.WindowedValueCoder(coders.TupleCoder([coders.StrUtf8Coder(), coders.VarIntCoder()]),
                                   GlobalWindowCoder())
    grouped = coders.WindowedValueCoder(
        coders.TupleCoder([coders.StrUtf8Coder(), coders.IterableCoder(coders.VarIntCoder())]), GlobalWindowCoder())
    buffer = execution.GroupingBuffer(kv, grouped, core.Windowing(GlobalWindows()))
    windowed = kv.get_impl()
    for k in range(keys):
        for v in range(values_per_key):
            buffer.append(windowed.encode(GlobalWindows.windowed_value((f"key-{k:05d}", k * 1000 + v))))
    return buffer, grouped


def _decoded(shares, grouped) -> list[list[tuple]]:
    impl = grouped.get_impl()
    out = []
    for chunks in shares:
        share = []
        for chunk in chunks:
            share += [(wv.value[0], list(wv.value[1])) for wv in impl.decode_all(chunk)]
        out.append(share)
    return out


def test_grouped_chunks_are_beams_shares_cut_at_key_boundaries():
    """The same keys go to the same worker share with the same values as Beam's own partition; only the
    messages are smaller (each at most one (key, values) past the size)."""
    ours, grouped = _grouping_buffer(3000, 3)
    beams, _ = _grouping_buffer(3000, 3)
    chunked = streamed_inputs.grouped_chunks(ours, 2, chunk_bytes=2048)
    assert all(len(share) > 5 for share in chunked)
    assert max(len(chunk) for share in chunked for chunk in share) < 2048 + 64
    assert _decoded(chunked, grouped) == _decoded(_beams_partition(beams, 2), grouped)
    assert sum(len(s) for s in _decoded(chunked, grouped)) == 3000


def _beams_partition(buffer, n):
    """Beam's partition, whatever ``install`` did to the class in this test process."""
    import importlib.util

    spec = importlib.util.find_spec("apache_beam.runners.portability.fn_api_runner.execution")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return fresh.GroupingBuffer.partition(buffer, n)


RUN = """
import json, sys
import apache_beam as beam
import pytest
from pipeline import job, run
from pipeline.beam_runtime import data_plane_buffers, local_runner, streamed_inputs

assert streamed_inputs.install(chunk_bytes=4096)
sent = []
stream = streamed_inputs._stream
def counting(out, chunks, bundle):
    sent.append([len(c) for c in chunks])
    stream(out, chunks, bundle)
streamed_inputs._stream = counting
options = job.local_options([], 2)
with beam.Pipeline(runner=job.local_runner([], options), options=options) as p:
    (p | beam.Create(range(20))
       | "Spread" >> beam.Reshuffle()
       | beam.FlatMap(lambda c: ((f"k{c}-{i % 5000}", i) for i in range(c * 5000, c * 5000 + 5000)))
       | beam.GroupByKey()
       | beam.Map(lambda kv: (len(kv[1]), sum(kv[1])))
       | beam.combiners.ToList()
       | beam.Map(lambda rows, path: open(path, "w").write(json.dumps(
             [len(rows), sum(r[0] for r in rows), sum(r[1] for r in rows)])), sys.argv[1]))
json.dump(sent, open(sys.argv[2], "w"))
"""


def test_a_multi_process_run_gets_every_element_in_small_messages(tmp_path):
    """A real 2-worker local run with a GroupByKey of 100k values: every value arrives once, and a grouped share
    went to its worker as many small messages, not one. (Other inputs go as the blocks their producing bundles
    flushed: 1 MB with the pipeline's worker plugin.)"""
    result, sent = tmp_path / "result.json", tmp_path / "sent.json"
    done = subprocess.run([sys.executable, "-c", RUN, str(result), str(sent)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(result.read_text()) == [100_000, 100_000, sum(range(100_000))]
    grouped_share = max(json.loads(sent.read_text()), key=len)  # a GroupByKey's share: cut at key boundaries
    assert len(grouped_share) > 20
    assert max(grouped_share) < 4096 + 512
