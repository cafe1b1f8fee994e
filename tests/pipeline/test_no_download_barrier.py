"""No barrier between a video's download and its segmentation, read off the real job graph.

Dataflow batch runs a step after a shuffle (GroupByKey, Reshuffle) only once the shuffle's input is complete,
and Beam's local runner materializes a Flatten's inputs: either between the download and the segmentation would
make every source video land before the first clip is cut, and ``--delete-videos`` would not lower the peak.
So the segmentation must consume the download step's own output: the two steps fuse, and each worker thread
downloads, cuts and deletes one video at a time. The peak this gives is measured by
``benchmarks/source_peak.py``.
"""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipeline import job, run

GROUP_URNS = ("beam:transform:group_by_key:v1", "beam:transform:flatten:v1",
              "beam:transform:reshuffle:v1", "beam:transform:redistribute_arbitrarily:v1")


def _graph(argv: list[str]):
    config, _, beam_args = run.parse(argv)
    p = beam.Pipeline(runner=job.local_runner(beam_args), options=job.local_options(beam_args, None))
    job.build(p, config)
    return p.to_runner_api().components.transforms


def _leaf(transforms, prefix: str):
    found = [t for t in transforms.values() if t.unique_name.startswith(prefix) and not t.subtransforms]
    assert len(found) == 1, [t.unique_name for t in found]
    return found[0]


def _between(transforms, start, end) -> list[str]:
    """The leaf steps on any path from ``start``'s outputs to ``end``'s inputs (producer links, backwards)."""
    producer = {pc: t for t in transforms.values() if not t.subtransforms for pc in t.outputs.values()}
    seen, names, todo = set(), [], list(end.inputs.values())
    while todo:
        pc = todo.pop()
        step = producer.get(pc)
        if pc in seen or step is None or step.unique_name == start.unique_name:
            continue
        seen.add(pc)
        names.append(f"{step.unique_name} ({step.spec.urn})")
        todo.extend(step.inputs.values())
    return names


@pytest.mark.parametrize("target", ["local", "dataflow"])
@pytest.mark.parametrize("delete_videos", [False, True])
def test_segmentation_consumes_the_download_step_directly(target, delete_videos):
    argv = ["--catalog", "c.jsonl", "--output", "/tmp/out"]
    if target == "dataflow":
        pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
        argv = ["--catalog", "c.jsonl", "--output", "gs://bucket/out", "--runner", "DataflowRunner", "--project",
                "genie-worlds-test", "--region", "us-central1", "--temp_location", "gs://bucket/tmp",
                "--dry_run=True", "--no_auth"]
    transforms = _graph([*argv, *(["--delete-videos"] if delete_videos else [])])
    fetch, cut = _leaf(transforms, "Download/Fetch/"), _leaf(transforms, "Segment/Cut clips/")
    assert cut.inputs and set(cut.inputs.values()) <= set(fetch.outputs.values()), \
        f"between the download and the segmentation: {_between(transforms, fetch, cut)}"


def test_the_check_sees_a_shuffle_put_between():
    """The check can fail: with a Reshuffle between the steps, the path names it."""
    p = beam.Pipeline()
    videos = p | beam.Create([1]) | "Fetch" >> beam.Map(lambda x: x)
    _ = videos | "Reshuffle" >> beam.Reshuffle() | "Cut clips" >> beam.Map(lambda x: x)
    toy = p.to_runner_api().components.transforms
    fetch, cut = _leaf(toy, "Fetch"), _leaf(toy, "Cut clips")
    assert not set(cut.inputs.values()) <= set(fetch.outputs.values())
    assert any(urn in step for step in _between(toy, fetch, cut) for urn in GROUP_URNS), _between(toy, fetch, cut)
