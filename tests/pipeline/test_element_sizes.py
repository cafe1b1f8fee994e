"""Bytes by reference: every element after Segment, encoded with its PCollection's coder, stays under 4 KB.

A real run (``job.build`` on Beam's FnApiRunner, real decoding) of a tiny corpus with probes attached to every
PCollection from the segment step on: each probe encodes its elements with the coder Beam uses for that
PCollection and records the largest size. Groups (the outputs of a GroupByKey: one shard's or table part's
references) are not elements that travel one by one and are left out; so is the audit's final value.
"""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import job, run
from pipeline.io import clip_store
from schemas import Clip
from tests import media

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")
MAX_ELEMENT_BYTES = 4096
AFTER_SEGMENT = ("Segment/Cut clips", "Quality", "Shard", "Count", "Reg", "AllOutcomes", "AllBirths")


class _MaxEncodedSize(beam.DoFn):
    def __init__(self, coder, name: str):
        self.coder = coder
        self.size = beam.metrics.Metrics.distribution("element_bytes", name)
        self.stored = beam.metrics.Metrics.distribution("clip_store_bytes", name)

    def process(self, element):
        self.size.update(len(self.coder.encode(element)))
        if isinstance(element, Clip):
            self.stored.update(clip_store.size_of(element))


class _Collections(PipelineVisitor):
    def __init__(self):
        self.found = []

    def visit_transform(self, node):
        if not node.full_label.startswith(AFTER_SEGMENT) or isinstance(node.transform, beam.GroupByKey):
            return
        if "GroupBy" in node.full_label:  # the GBK's own expansion steps
            return
        for tag, pc in node.outputs.items():
            if isinstance(pc, beam.pvalue.PCollection):
                self.found.append((f"{node.full_label}[{tag}]", pc))


def test_every_element_after_segment_is_a_small_reference(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_video(videos / "long.mp4", fps=25, duration_s=33.0, width=320, height=180)  # 2 clips + tail
    media.write_video(videos / "one.mp4", fps=30, duration_s=16.5, width=160, height=90)
    (videos / "garbage.mp4").write_bytes(b"\x00" * 5000)
    with open(tmp_path / "catalog.jsonl", "w") as f:
        for name in ("long", "one", "garbage"):
            f.write(json.dumps({"id": name, "url": (videos / f"{name}.mp4").as_uri(),
                                "title": "Celeste speedrun gameplay " + "x" * 500, "duration_s": 20}) + "\n")
    config, _, beam_args = run.parse(["--catalog", str(tmp_path / "catalog.jsonl"), "--output",
                                       str(tmp_path / "out"), "--in-process"])
    p = beam.Pipeline(runner=FnApiRunner(), options=job.local_options(beam_args, None, True))
    job.build(p, config)
    visitor = _Collections()
    p.visit(visitor)
    assert len(visitor.found) > 20
    for i, (label, pc) in enumerate(visitor.found):
        coder = beam.coders.registry.get_coder(pc.element_type)
        _ = pc | f"Probe{i}" >> beam.ParDo(_MaxEncodedSize(coder, label))
    result = p.run()
    result.wait_until_finish()
    dists = result.metrics().query(MetricsFilter())["distributions"]
    sizes = {d.key.metric.name: d.committed.max for d in dists if d.key.metric.namespace == "element_bytes"}
    stored = {d.key.metric.name: d.committed for d in dists if d.key.metric.namespace == "clip_store_bytes"}
    cut_clips = "Segment/Cut clips/ParDo(_SegmentFn)[None]"  # the main output
    assert cut_clips in sizes and "Shard/Write/ParDo(_WriteShardFn)[None]" in sizes  # the probes ran
    assert max(sizes.values()) < MAX_ELEMENT_BYTES, sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    # the check can fail: the clips it saw stand for far more than 4 KB of video each
    cut = stored[cut_clips]
    assert cut.count == 3 and cut.min > MAX_ELEMENT_BYTES
