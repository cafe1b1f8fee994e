"""A local run cut into slices (``--slice-outcomes``): one Beam job per slice on the real local runner, and a
dataset that holds what the same run as one job holds. Corpus: ``test_run``'s ten videos, good and bad."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import run
from pipeline.__main__ import main as pipeline_main
from pipeline.local import search_plan
from schemas import shard_source
from tests import media
from tests.pipeline.test_run import PARTIAL_DIR, corpus  # noqa: F401 - the corpus fixture

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")

SHARD = re.compile(r"shards/shard-[0-9s-]+\.tar")  # which shard a clip went to differs; the clip does not
SLICED = ["--slice-outcomes", "7", "--shard-size-mb", "0.05", "--table-part-rows", "4"]


def _run(corpus, out, *extra) -> int:  # noqa: F811
    return run.main(["--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), *extra])


def _files(out: Path) -> dict[str, bytes]:
    names = [p for pattern in ("shards/*.tar", "outcomes/*.parquet", "manifest/*.parquet") for p in out.glob(pattern)]
    names += [out / n for n in ("stats.json", "report.html", "shard_index.json", "thumbnails.parquet")]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(names)}


def _text(data: bytes, out: Path) -> str:
    """A file's text without what names the output directory (a failure detail quotes a download's path)."""
    return PARTIAL_DIR.sub("/", data.decode("utf-8").replace(str(out), "OUT"))


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("slices")
    whole, sliced = root / "whole", root / "sliced"
    assert _run(corpus, whole, "--in-process", "--shard-size-mb", "0.05", "--table-part-rows", "4") == 0
    assert _run(corpus, sliced, "--in-process", *SLICED) == 0
    return whole, sliced


def test_the_run_is_cut_into_slices_named_in_its_files(runs):
    _, sliced = runs
    plan = search_plan.read_plan(str(sliced))
    assert len(plan.slices) >= 3 and plan.candidates + plan.search_outcomes == 11  # every catalog row
    for index in range(len(plan.slices)):
        assert (sliced / "slices" / f"s{index:05d}" / "stats.json").exists()
        assert not (sliced / "slices" / f"s{index:05d}" / "candidates.parquet").exists()  # in the tables now
    names = [p.name for p in (sliced / "shards").glob("*.tar")] + [p.name for p in (sliced / "outcomes").iterdir()]
    assert names and all(re.match(r"^(shard|part)-s\d{5}-", n) for n in names), names


def test_a_sliced_run_holds_what_one_job_holds(runs):
    """Same outcomes, same manifest rows (but their shard names), the same samples in the shards, and the
    same stats.json but for the tables' part counts."""
    whole, sliced = runs
    stats = [json.loads(_text((out / "stats.json").read_bytes(), out)) for out in runs]
    for s in stats:
        assert s["conservation"]["ok"]
        s["tables"] = {name: t["rows"] for name, t in s.pop("tables").items()}
    assert stats[0] == stats[1]
    rows = [sorted(SHARD.sub("SHARD", _text(json.dumps(r, sort_keys=True).encode(), out))
                   for r in pq.read_table(out / "outcomes").to_pylist()) for out in runs]
    assert rows[0] == rows[1] and len(rows[0]) == 18
    manifest = [sorted(SHARD.sub("SHARD", json.dumps(r, sort_keys=True)) for r in pq.read_table(out / "manifest").to_pylist())
                for out in runs]
    assert manifest[0] == manifest[1] and len(manifest[0]) == 4
    samples = [sorted((s.key, s.clip.mp4) for s in shard_source.read_samples(str(out))) for out in runs]
    assert samples[0] == samples[1]
    assert (sliced / "report.html").exists() and (sliced / "thumbnails.parquet").exists()


def test_a_rerun_skips_finished_slices_and_writes_the_same_bytes(runs, corpus, capsys):  # noqa: F811
    _, sliced = runs
    before = _files(sliced)
    marks = {p: p.stat().st_mtime_ns for p in (sliced / "slices").glob("s*/stats.json")}
    capsys.readouterr()
    assert _run(corpus, sliced, "--in-process", *SLICED) == 0
    assert f"{len(marks)} complete from the last run" in capsys.readouterr().err
    assert _files(sliced) == before
    assert {p: p.stat().st_mtime_ns for p in marks} == marks  # no slice ran again


def test_worker_processes_write_the_same_bytes(runs, corpus, tmp_path):  # noqa: F811
    _, sliced = runs
    out = tmp_path / "two-workers"
    assert _run(corpus, out, "--workers", "2", *SLICED) == 0
    mine, theirs = _files(out), _files(sliced)
    assert mine.keys() == theirs.keys()
    for name in mine:
        if name.endswith((".tar", ".parquet")) and not name.startswith("outcomes"):
            assert mine[name] == theirs[name], name
        elif not name.endswith(".parquet"):
            assert _text(mine[name], out) == _text(theirs[name], sliced), name
    outcomes = [sorted(_text(json.dumps(r, sort_keys=True).encode(), o) for r in pq.read_table(o / "outcomes").to_pylist())
                for o in (out, sliced)]
    assert outcomes[0] == outcomes[1]


def test_the_audit_command_reads_a_sliced_output(runs, capsys):
    _, sliced = runs
    stats = (sliced / "stats.json").read_bytes()
    assert pipeline_main(["audit", str(sliced)]) == 0
    assert (sliced / "stats.json").read_bytes() == stats
    assert "kept 4 clips" in capsys.readouterr().out
