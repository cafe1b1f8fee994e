"""A reproduction of element loss in Apache Beam's local FnApiRunner at a million elements, with Beam alone.

    python benchmarks/beam_loss_repro.py [--items 1000000] [--runs 5] [--workers 2] [--streamed]

Needs only ``apache-beam``, so it can go to Beam's maintainers as it is. Each run is a fresh process with one
``multi_processing`` FnApiRunner pipeline shaped like the end of a run: births and outcomes per item, a keyed
conservation sum, a GroupByKey into a few dozen groups, a combiner count; every item must balance. ``--streamed``
adds the project's fix (``pipeline.beam_runtime.streamed_inputs``). The table: Beam version, wall seconds, items
unbalanced, outcomes grouped, births counted. Record: docs/measurements/2026-12-04-local-runner-element-loss.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 10_000
PAD = "x" * 100  # each record ~150 bytes pickled, as this project's outcome rows


def make(chunk: int, total: int):
    import apache_beam as beam

    for n in range(chunk * CHUNK, min(total, (chunk + 1) * CHUNK)):
        key = f"item-{n:09d}"
        yield beam.pvalue.TaggedOutput("births", (key, "birth", PAD))
        yield (key, "outcome", PAD)


def unbalanced(grouped):
    key, events = grouped
    balance = sum(1 if kind == "birth" else -1 for kind, _ in events)
    if balance:
        yield key


def write_count(value: int, name: str, results_dir: str) -> None:
    Path(results_dir, name).write_text(json.dumps(value))


def run_once(items: int, workers: int, streamed: bool) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    if streamed:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from pipeline.beam_runtime import streamed_inputs

        assert streamed_inputs.install()
    results_dir = tempfile.mkdtemp(prefix="beam_loss_repro_")  # the workers write each count here
    options = PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=workers)
    started = time.monotonic()
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        made = (p
                | "Chunks" >> beam.Create(range((items + CHUNK - 1) // CHUNK))
                | "Spread" >> beam.Reshuffle()
                | "Make" >> beam.FlatMap(make, items).with_outputs("births", main="outcomes"))
        events = ((made.births, made.outcomes)
                  | "All" >> beam.Flatten()
                  | "ByItem" >> beam.Map(lambda r: (r[0], (r[1], r[2])))
                  | "Balance" >> beam.GroupByKey()
                  | "Unbalanced" >> beam.FlatMap(unbalanced))
        grouped = (made.outcomes
                   | "ByPart" >> beam.Map(lambda r: (hash(r[0]) % 50, r))
                   | "Parts" >> beam.GroupByKey()
                   | "PartSizes" >> beam.Map(lambda kv: len(list(kv[1]))))
        results = {
            "unbalanced": events | "CountUnbalanced" >> beam.combiners.Count.Globally(),
            "outcomes_grouped": grouped | "SumParts" >> beam.CombineGlobally(sum),
            "births_counted": made.births | "CountBirths" >> beam.combiners.Count.Globally(),
        }
        for name, pcoll in results.items():
            _ = pcoll | f"Keep{name}" >> beam.Map(write_count, name, results_dir)
    out = {path.name: json.loads(path.read_text()) for path in Path(results_dir).iterdir()}
    shutil.rmtree(results_dir, ignore_errors=True)
    out["wall_s"] = round(time.monotonic() - started, 1)
    out["beam"] = beam.__version__
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streamed", action="store_true", help="with this project's streamed bundle inputs")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.one:
        print(json.dumps(run_once(ns.items, ns.workers, ns.streamed)))
        return 0
    print(f"{'run':>3} {'beam':>8} {'wall s':>7} {'unbalanced':>11} {'outcomes grouped':>17} {'births counted':>15}")
    lossy = 0
    for run in range(ns.runs):
        done = subprocess.run([sys.executable, __file__, "--one", "--items", str(ns.items), "--workers",
                               str(ns.workers)] + (["--streamed"] if ns.streamed else []),
                              capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            print(f"{run:>3} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            lossy += 1
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        lost = r["unbalanced"] or r["outcomes_grouped"] != ns.items or r["births_counted"] != ns.items
        lossy += bool(lost)
        print(f"{run:>3} {r['beam']:>8} {r['wall_s']:>7} {r['unbalanced']:>11} {r['outcomes_grouped']:>17} "
              f"{r['births_counted']:>15}", flush=True)
    print(f"{lossy} of {ns.runs} runs lost elements ({ns.items} items, {ns.workers} workers, "
          f"{'streamed inputs' if ns.streamed else 'Beam as it is'})")
    return 1 if lossy else 0


if __name__ == "__main__":
    sys.exit(main())
