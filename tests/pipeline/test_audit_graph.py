"""The audit is a distributed computation: read off the real job graph (local options and the Dataflow
options), no side input is fed from a per-item PCollection and no step gathers a per-item list.

How the graph is read: every PCollection gets a size class, in the graph's topological order.
- ``item``: grows with the number of items: the stages' outputs, and whatever is derived from an item
  collection without a bounded combiner in between (a CombinePerKey keyed by item is still per item).
- ``group``: one element per shard or table part (the shard writer's index output, the part writers'
  outputs): grows with the data's bytes, a few thousand at the paper's scale.
- ``bounded``: a fixed-size value: ``Create``, and the output of a CombineGlobally whose combiner keeps a
  bounded accumulator (counts, Top-n, the audit's cell counts and n-per-group samples).
A list-collecting combiner (ToList, ToDict, ToSet) is allowed on ``group`` and ``bounded`` inputs only.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor
from apache_beam.transforms import combiners, core

from pipeline import job, run, shards
from pipeline.audit import aggregates
from pipeline.io import partitioned

STAGES = ("Search", "Download", "Segment", "Quality", "Shard")
BOUNDED_FNS = (combiners.CountCombineFn, combiners.TopCombineFn, aggregates.OutcomeStatsFn, aggregates.GroupSampleFn,
               aggregates.KeyCountsFn, aggregates.SiteUsageFn, partitioned.PartsSummaryFn)
LIST_FNS = (combiners.ToListCombineFn, combiners.ToDictCombineFn, combiners.ToSetCombineFn)
RANK = {"bounded": 0, "group": 1, "item": 2}


class _Nodes(PipelineVisitor):
    def __init__(self):
        self.nodes = []

    def enter_composite_transform(self, node):
        self.nodes.append(node)

    def visit_transform(self, node):
        self.nodes.append(node)


def size_classes(p: beam.Pipeline) -> tuple[dict, list[str]]:
    """(PCollection -> size class, problems): the analysis described in the module docstring."""
    visitor = _Nodes()
    p.visit(visitor)
    cls: dict = {}
    fixed: dict = {}
    internal: list[str] = []  # bounded combiners' own steps: their side inputs are their partial results
    problems = []

    def worst(pcolls):
        ranks = [RANK[cls.get(pc, "bounded")] for pc in pcolls]
        return max(RANK, key=RANK.get) if not ranks else next(k for k, v in RANK.items() if v == max(ranks))

    for node in visitor.nodes:
        top = node.full_label.split("/", 1)[0]
        inputs = [pc for pc in node.inputs if isinstance(pc, beam.pvalue.PCollection)]
        if node.parts:  # a composite: fix the class of what a combiner or a stage puts out
            if isinstance(node.transform, combiners.Top.Of):  # n elements, whatever the input
                internal.append(node.full_label + "/")
                for pc in node.outputs.values():
                    fixed[pc] = "bounded"
            if isinstance(node.transform, core.CombineGlobally):
                fn, source = node.transform.fn, worst(inputs)
                if isinstance(fn, LIST_FNS) and source == "item":
                    problems.append(f"{node.full_label}: {type(fn).__name__} gathers a per-item list")
                bounded = isinstance(fn, BOUNDED_FNS + LIST_FNS) or getattr(fn, "_fn", fn) in (sum, min, max)
                if bounded:
                    internal.append(node.full_label + "/")
                for pc in node.outputs.values():
                    fixed[pc] = "bounded" if bounded else source
            if node.full_label in STAGES:
                for tag, pc in node.outputs.items():
                    fixed[pc] = "group" if tag == shards.INDEX else "item"
            continue
        for side in node.side_inputs:
            if cls.get(side.pvalue) != "bounded" and not node.full_label.startswith(tuple(internal)):
                problems.append(f"{node.full_label}: side input from a {cls.get(side.pvalue)} PCollection "
                                f"({side.pvalue.producer.full_label})")
        fn = getattr(node.transform, "fn", None)
        if isinstance(fn, partitioned._WritePartFn):
            own = "group"
        elif not inputs:
            own = "bounded"  # Impulse / Create
        elif top == "Search":
            own = "item"  # the search stage fans bounded inputs (catalog files, queries) out into items
        else:
            own = worst(inputs)
        for pc in node.outputs.values():
            cls[pc] = fixed.get(pc, own)
    return cls, problems


def _built(argv: list[str]) -> beam.Pipeline:
    config, _, beam_args = run.parse(argv)
    p = beam.Pipeline(runner=job.local_runner(beam_args), options=job.local_options(beam_args, None))
    job.build(p, config)
    return p


def test_the_analysis_catches_a_per_item_side_input_and_list():
    """The check can fail: a per-item list gathered, and a side input fed from a stage's output."""
    p = _built(["--catalog", "c.jsonl", "--output", "/tmp/out"])
    nodes = _Nodes()
    p.visit(nodes)
    stage_out = next(n for n in nodes.nodes if n.full_label == "Segment").outputs["main"]
    _ = stage_out | "GatherAll" >> beam.combiners.ToList()
    _ = p | "Probe" >> beam.Create([0]) | "UseAll" >> beam.Map(lambda x, s: x, s=beam.pvalue.AsList(stage_out))
    _, problems = size_classes(p)
    assert any(m.startswith("GatherAll") and "per-item list" in m for m in problems), problems
    assert any(m.startswith("UseAll") and "side input from a item" in m for m in problems), problems


@pytest.mark.parametrize("target", ["local", "dataflow"])
def test_no_side_input_or_gathered_list_is_per_item(target):
    argv = ["--catalog", "c.jsonl", "--output", "/tmp/out"]
    if target == "dataflow":
        pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
        argv = ["--catalog", "c.jsonl", "--output", "gs://bucket/out", "--runner", "DataflowRunner", "--project",
                "genie-worlds-test", "--region", "us-central1", "--temp_location", "gs://bucket/tmp", "--dry_run=True", "--no_auth"]
    p = _built(argv)
    cls, problems = size_classes(p)
    assert problems == []
    # the analysis saw the audit's aggregates as bounded and the tables' writers as per part
    labels = {pc.producer.full_label: c for pc, c in cls.items()}
    assert labels["Audit/OutcomeStats/InjectDefault"] == "bounded" and labels["Audit/Write"] == "bounded"
    assert labels["Audit/WriteOutcomes/Write"] == "group" and labels["Audit/WriteManifest/Write"] == "group"
    assert labels["Audit/Violations"] == "item"  # grouped by item: not gathered
