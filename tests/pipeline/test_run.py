"""``python -m pipeline run`` end to end on a tiny corpus encoded here: Beam's in-process FnApiRunner, real
yt-dlp on file:// URLs, real decoding, shards read back with webdataset; bad inputs next to good ones; a rerun
reproduces byte-identical outputs; the Dataflow job graph builds without submitting (``--dry_run``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import job, run, shards
from pipeline.__main__ import main as pipeline_main
from pipeline.audit import aggregates
from schemas import Outcome, clip_codec, from_table, ids, reasons, shard_source
from schemas.stats import Stats
from tests import media

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")

HOSTILE_ID = "../../etc/passwd <script>alert(1)</script>\u202e.mp4"
TITLE = "Celeste speedrun gameplay"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three good videos (one AV1, one with an actions sidecar and a hostile id), seven bad ones and a catalog row
    whose id is a lone surrogate (JSON "\\ud800": a str that no UTF-8 writer takes)."""
    root = tmp_path_factory.mktemp("corpus")
    videos = root / "videos"
    videos.mkdir()
    w = dict(width=160, height=90)
    media.write_video(videos / "good.mp4", fps=25, duration_s=33.0, **w)  # 2 clips + 1 s tail
    media.write_video(videos / "hostile.mp4", fps=30, duration_s=16.5, **w)
    media.write_video(videos / "av1.mp4", fps=10, duration_s=16.2, codec="libsvtav1", gop=60, **w)
    media.write_video(videos / "short.mp4", fps=25, duration_s=4.0, **w)
    media.write_audio_only(videos / "audio.mp4", 20.0)
    media.truncate(videos / "good.mp4", videos / "truncated.mp4", 0.5)
    (videos / "garbage.mp4").write_bytes(os.urandom(20000))
    (videos / "empty.mp4").write_bytes(b"")
    (root / "hostile.json").write_text(json.dumps({"video_id": HOSTILE_ID, "step_fps": 10, "num_steps": 165,
                                                    "actions": [i % 15 for i in range(165)]}))
    rows = [("good", "good.mp4", {}), (HOSTILE_ID, "hostile.mp4", {"actions": "hostile.json"}),
            ("av1", "av1.mp4", {}), ("short", "short.mp4", {}), ("audio", "audio.mp4", {}),
            ("truncated", "truncated.mp4", {}), ("garbage", "garbage.mp4", {}), ("missing", "nope.mp4", {}),
            ("empty", "empty.mp4", {})]
    with open(root / "catalog.jsonl", "w") as f:
        for vid, name, extra in rows:
            f.write(json.dumps({"id": vid, "url": (videos / name).as_uri(), "title": TITLE, "duration_s": 20,
                                **extra}) + "\n")
        f.write(json.dumps({"id": "cooking", "url": (videos / "good.mp4").as_uri() + "?x", "title": "cooking",
                            "duration_s": 20}) + "\n")
        f.write(json.dumps({"id": "bad\ud800", "url": (videos / "good.mp4").as_uri(), "title": TITLE}) + "\n")  # line 11
    return root


def run_once(corpus, out) -> int:
    # Tiny shards and table parts: several of each, as at scale (18 outcomes, 4 manifest rows).
    return run.main(["--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), "--in-process",
                     "--shard-size-mb", "0.05", "--table-part-rows", "4"])


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def run_log():
    """The project's log records of this module's runs, in order (--in-process: workers log right here)."""
    handler = _Records()
    logging.getLogger("pipeline").addHandler(handler)
    yield handler.records
    logging.getLogger("pipeline").removeHandler(handler)


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory, run_log):
    out = tmp_path_factory.mktemp("run")
    assert run_once(corpus, out) == 0
    run_log.append(logging.makeLogRecord({"msg": "first run done"}))
    return out


def final_outcomes(out) -> dict[str, Outcome]:
    return {o.item_id: o for o in from_table(pq.read_table(out / "outcomes"), Outcome)}


def test_every_video_ends_in_its_documented_outcome(first_run):
    got = {k: (o.stage, o.outcome, o.reason.split(":")[0]) for k, o in final_outcomes(first_run).items()
           if o.item_kind == "video"}
    assert got == {
        "good": ("segment", "kept", ""), HOSTILE_ID: ("segment", "kept", ""), "av1": ("segment", "kept", ""),
        "short": ("segment", "dropped", reasons.TOO_SHORT),
        "audio": ("download", "failed", reasons.NO_VIDEO_STREAM),  # the download stage's probe sees it first
        "truncated": ("segment", "failed", reasons.TRUNCATED_VIDEO),
        "garbage": ("segment", "failed", reasons.CORRUPT_VIDEO),
        "missing": ("download", "failed", reasons.UNAVAILABLE),
        "empty": ("download", "failed", reasons.EMPTY_FILE),
        "cooking": ("search", "dropped", reasons.NO_GAME_KEYWORD),
        "catalog.jsonl:line11": ("search", "failed", reasons.BAD_CATALOG_ROW),  # the lone surrogate id
    }
    assert "via pyav (av1" in final_outcomes(first_run)["av1"].detail
    for o in final_outcomes(first_run).values():
        assert o.outcome == "kept" or o.detail, o  # every drop or failure says why


def test_stats_hold_the_conservation_law_and_the_funnel(first_run):
    stats = json.loads((first_run / "stats.json").read_text())
    assert stats["conservation"]["ok"]
    assert stats["videos"]["candidates"] == 10  # the bad catalog row is a search failure, not a candidate
    assert stats["clips"] == {"cut": 7, "dropped": 3, "kept": 4}  # 2 + 1 + 1 clips, each video with a tail
    segment = next(r for r in stats["funnel"] if r["stage"] == "segment")
    assert (segment["videos_out"], segment["clips_in"], segment["clips_out"]) == (3, 7, 4)
    page = (first_run / "report.html").read_text()
    assert "Conservation law holds" in page and "short_tail" in page
    failed_at_search = [o for o in final_outcomes(first_run).values() if o.stage == "search" and o.outcome == "failed"]
    assert stats["search_failures"]["count"] == len(failed_at_search)  # unreadable inputs, not videos


def test_an_unscored_run_says_so_in_stats_report_and_summary(first_run):
    stats = json.loads((first_run / "stats.json").read_text())
    assert stats["quality"] == {"classifier": None, "threshold": None, "rule": None, "margin": None,
                                "clips_in": 4, "clips_scored": 0, "clips_unscored": 4, "clips_failed": 0,
                                "clips_dropped_low_quality": 0}
    assert "No quality classifier (run without --classifier): 4 clip(s) passed unscored" in (
        first_run / "report.html").read_text()
    assert "quality: no --classifier: 4 clip(s) passed unscored, none filtered" in run.summary(
        Stats.from_json((first_run / "stats.json").read_bytes()), 1.0, "o", 0)


def test_shards_hold_every_kept_clip_with_actions_for_the_sidecar_video(first_run):
    manifest = pq.read_table(first_run / "manifest").to_pylist()
    samples = list(shard_source.read_samples(str(first_run)))
    assert len(shards.shard_paths(str(first_run))) >= 2  # the tiny target size forces several shards
    assert sorted(s.key for s in samples) == sorted(r["clip_key"] for r in manifest)
    assert len(samples) == 4
    for sample in samples:
        assert clip_codec.decode_clip(sample.clip.mp4).shape == (160, 90, 160, 3)
        assert "." not in sample.key and "/" not in sample.key
    hostile = next(s for s in samples if s.clip.video_id == HOSTILE_ID)
    assert hostile.key == ids.clip_key(HOSTILE_ID, 0.0)
    assert hostile.clip.actions == [i % 15 for i in range(160)]
    assert all(s.clip.actions is None for s in samples if s.clip.video_id != HOSTILE_ID)


# The download stage names its per-download temporary directory in a probe failure's detail
# ("<out>/videos/.partial/dl-k2j4x9/video.mp4 has no video stream"): the one run-dependent text in the outputs.
PARTIAL_DIR = re.compile(r"/\.partial/dl-[^/]+/")


@pytest.fixture(scope="module")
def rerun(corpus, first_run):
    """(files before, files after, segment cache untouched) for a rerun into the first run's output."""
    names = [p.relative_to(first_run) for p in sorted(first_run.glob("shards/*.tar"))]
    names += [p.relative_to(first_run) for p in sorted(first_run.glob("*/part-*.parquet"))]
    names += [Path(n) for n in ("stats.json", "report.html", "shard_index.json", "thumbnails.parquet")]
    cache = first_run / "cache" / "segment"
    marks = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    before = {n: (first_run / n).read_bytes() for n in names}
    assert run_once(corpus, first_run) == 0
    after = {n: (first_run / n).read_bytes() for n in names}
    return before, after, {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == marks


def test_rerun_reproduces_identical_outputs_without_decoding_again(rerun):
    before, after, cache_untouched = rerun
    assert cache_untouched  # nothing re-segmented
    assert len([n for n in before if n.parts[0] == "outcomes"]) >= 1 and Path("manifest") in {n.parent for n in before}
    for name in before:
        if name.suffix == ".tar" or name.parts[0] == "manifest" or name.suffix == ".json":
            assert after[name] == before[name], name
    # outcomes (sorted on every field) and the report: identical but for the download stage's temp dir
    rows = [[r for n in sorted(files) if n.parts[0] == "outcomes"
             for r in pq.read_table(pa.BufferReader(files[n])).to_pylist()] for files in (before, after)]
    assert rows[0] and len(rows[0]) == len(rows[1])
    for a, b in zip(*rows, strict=True):
        assert a == b or ({k for k in a if a[k] != b[k]} == {"detail"} and a["reason"] == reasons.NO_VIDEO_STREAM
                          and PARTIAL_DIR.sub("/", a["detail"]) == PARTIAL_DIR.sub("/", b["detail"])), (a, b)
    page = [PARTIAL_DIR.sub("/", files[Path("report.html")].decode()) for files in (before, after)]
    assert page[0] == page[1]  # the report embeds no time


def test_rerun_writes_byte_identical_outcomes_and_report(rerun):
    before, after, _ = rerun
    assert after == before  # every part of outcomes/ and manifest/, the report, stats, index and thumbnails


def test_tables_are_partitioned_datasets_that_readers_take_as_one_table(first_run):
    import pandas as pd
    import pyarrow.dataset as ds

    stats = json.loads((first_run / "stats.json").read_text())
    parts = sorted(p.name for p in (first_run / "outcomes").iterdir())
    assert stats["tables"] == {"outcomes": {"parts": 5, "rows": 18}, "manifest": {"parts": 1, "rows": 4}}
    assert parts == [f"part-{i:05d}-of-00005.parquet" for i in range(5)]  # every part, empty ones too
    frame = pd.read_parquet(first_run / "outcomes")
    table = ds.dataset(first_run / "outcomes", format="parquet").to_table()
    assert len(frame) == table.num_rows == 18 and set(frame["item_id"]) == set(final_outcomes(first_run))
    for part in (first_run / "outcomes").iterdir():  # each part sorted on every field
        rows = from_table(pq.read_table(part), Outcome)
        assert rows == sorted(rows, key=aggregates.outcome_sort_key)
    index = json.loads((first_run / "shard_index.json").read_text())["shards"]
    assert [s["name"] for s in index] == [f"shards/{p.name}" for p in sorted(first_run.glob("shards/*.tar"))]
    assert [s["sha256"] for s in index] == [hashlib.sha256((first_run / s["name"]).read_bytes()).hexdigest()
                                            for s in index]
    assert len(index) == stats["shards"] and sum(s["clips"] for s in index) == len(pd.read_parquet(first_run / "manifest"))


def test_audit_command_rerenders_the_runs_stats_and_report_from_its_tables(first_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(first_run, copy, ignore=shutil.ignore_patterns("videos", "cache"))
    (copy / "report.html").unlink()
    capsys.readouterr()
    assert pipeline_main(["audit", str(copy)]) == 0
    assert (copy / "stats.json").read_bytes() == (first_run / "stats.json").read_bytes()
    assert (copy / "report.html").read_bytes() == (first_run / "report.html").read_bytes()
    out = capsys.readouterr().out
    assert f"audit of {copy}" in out and "kept 4 clips" in out
    (copy / "stats.json").unlink()  # a job that died before its last step: the verdict is not known
    assert pipeline_main(["audit", str(copy)]) == 1
    assert "conservation verdict is unknown" in capsys.readouterr().err
    assert "Conservation not verified" in (copy / "report.html").read_text()
    assert json.loads((copy / "stats.json").read_text())["videos"]["candidates"] == 10
    assert pipeline_main(["audit", str(tmp_path / "nothing")]) == 2


def _explode(_):
    raise RuntimeError("decoder exploded")


def test_a_failing_stage_is_named_from_beams_error():
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    with pytest.raises(Exception) as info, beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([1]) | "Segment/Cut clips" >> beam.Map(_explode)
    assert job.failed_stage(info.value) == "segment"


def test_a_failing_helper_step_is_named_the_audit_stage():
    with pytest.raises(Exception) as info, beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([1]) | "RegClips" >> beam.Map(_explode)
    assert "'RegClips'" in str(info.value)  # Beam's own message names the step
    assert job.failed_stage(info.value) == "audit"


def test_a_failing_final_write_fails_the_run_naming_the_audit_stage(tmp_path, capsys):
    catalog = tmp_path / "catalog.jsonl"  # one row the search stage drops: a fast run that reaches the Audit step
    catalog.write_text(json.dumps({"id": "cooking", "url": "file:///nowhere.mp4", "title": "cooking",
                                   "duration_s": 20}) + "\n")
    out = tmp_path / "out"
    (out / "stats.json").mkdir(parents=True)  # finalize cannot write stats.json over a directory
    assert run.main(["--catalog", str(catalog), "--output", str(out), "--in-process"]) == 1
    err = capsys.readouterr().err
    assert "run FAILED in stage 'audit'" in err and "Is a directory" in err, err


def test_a_catalog_that_cannot_be_read_stops_the_run_at_launch(tmp_path, capsys):
    """A missing catalog is a usage error found before any work (exit 2, one line, nothing created); exit 66
    remains for inputs that fail while the job runs (every search query failed: test_fleet_exit_status)."""
    assert run.main(["--catalog", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "out"),
                     "--in-process"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl" in err[0] and err[0].startswith("error: --catalog"), err
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), "--shard-size-mb", "0"])
    for bad, says in ((["--quality-threshold", "1.5"], "must be a number in [0, 1]"),
                      (["--quality-threshold", "nan"], "must be a number in [0, 1]"),
                      (["--quality-threshold", "high"], "not a number"),
                      (["--in-process", "--runner", "DataflowRunner"], "cannot be combined with --runner"),
                      (["--in-process", "--workers", "4"], "runs one worker in this process")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path)] + bad)
        assert says in capsys.readouterr().err, bad
    config, _, _ = run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), "--quality-threshold", "1"])
    assert config.quality.threshold == 1.0


def _count_pid(x):
    beam.metrics.Metrics.counter("pid", str(os.getpid())).inc()
    return x


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "worker-processes"])
def test_local_runs_use_the_fnapi_runner_in_the_processes_asked_for(in_process):
    """No --runner: Beam's FnApiRunner (the DirectRunner would first try to download Prism from GitHub),
    in this very process with --in-process, in SDK worker processes otherwise."""
    runner = job.local_runner([])
    assert isinstance(runner, FnApiRunner)
    p = beam.Pipeline(runner=runner, options=job.local_options([], 1, in_process))
    _ = p | beam.Create([1, 2, 3]) | beam.Map(_count_pid)
    result = p.run()
    result.wait_until_finish()
    pids = {r.key.metric.name for r in result.metrics().query(MetricsFilter().with_namespace("pid"))["counters"]}
    assert len(pids) == 1
    assert (pids == {str(os.getpid())}) is in_process, pids
    assert job.local_runner(["--runner", "DirectRunner"]) is None  # an explicit --runner is Beam's to build


def test_per_video_lines_are_logged_as_the_segment_stage_works(first_run, run_log):
    """Each video's segmentation is logged as it happens (the run's log file gets these lines; the console
    shows the job's progress line instead: tests/pipeline/test_cli_contract.py)."""
    lines = [r.getMessage() for r in run_log[:next(i for i, r in enumerate(run_log) if r.msg == "first run done")]]
    assert len([m for m in lines if m.startswith("segment: ")]) == 6


def test_dataflow_job_graph_builds_without_submitting(corpus):
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    config, _, beam_args = run.parse(["--catalog", str(corpus / "catalog.jsonl"), "--output", "gs://bucket/out",
                                       "--runner", "DataflowRunner", "--project", "genie-worlds-test", "--region", "us-central1",
                                       "--temp_location", "gs://bucket/tmp", "--dry_run=True", "--no_auth"])
    result = job.run_pipeline(config, job.local_options(beam_args, None))
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    for stage in ("Search", "Download", "Segment", "Quality", "Shard", "Audit"):
        assert stage in names
    assert config.segment.cache_dir == "gs://bucket/out/cache/segment"
    assert config.download.download_dir == "gs://bucket/out/videos"


# The launch recipe of docs/pipeline.md ("Running on Dataflow"), its placeholders filled in.
RECIPE_IMAGE = (f"us-central1-docker.pkg.dev/genie-worlds-test/genie/pipeline:beam{beam.__version__}-py"
                f"{sys.version_info[0]}.{sys.version_info[1]}@sha256:" + "0" * 64)
RECIPE = ["--youtube", "--keywords", "pipeline/data/platformers.yaml", "--output", "gs://bucket/datasets/v1",
          "--delete-videos", "--runner", "DataflowRunner", "--project", "genie-worlds-test", "--region", "us-central1",
          "--temp_location", "gs://bucket/tmp", "--staging_location", "gs://bucket/staging",
          "--service_account_email", "genie-worker@genie-worlds-test.iam.gserviceaccount.com",
          "--sdk_container_image", RECIPE_IMAGE, "--experiments=use_runner_v2",
          "--experiments=no_use_multiple_sdk_containers", "--machine_type", "n2-highcpu-8",
          "--number_of_worker_harness_threads", "8", "--disk_size_gb", "100", "--max_num_workers", "4"]


def test_the_recipes_dataflow_job_builds_with_its_image_and_options():
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    from apache_beam.options.pipeline_options import DebugOptions, SetupOptions, WorkerOptions

    from pipeline.beam_runtime import data_plane_buffers
    from pipeline.site import request_budget

    docs = Path(__file__).resolve().parents[2].joinpath("docs", "pipeline.md").read_text()
    recipe = docs.split("<!-- recipe -->")[1]
    for flag in [a.split("=")[0] for a in RECIPE if a.startswith("--")]:
        assert flag in recipe, f"the docs' recipe has no {flag}"
    config, launch, beam_args = run.parse([*RECIPE, "--dry_run=True", "--no_auth"])
    assert [c.status for c in run.job_checks(beam_args, config.search.youtube)][0] == "ok"  # the image
    options = job.local_options(beam_args, launch.workers)
    worker = options.view_as(WorkerOptions)
    assert worker.sdk_container_image == RECIPE_IMAGE and worker.disk_size_gb == 100
    assert worker.machine_type == "n2-highcpu-8" and worker.max_num_workers == 4
    debug = options.view_as(DebugOptions)
    assert debug.number_of_worker_harness_threads == 8 and "no_use_multiple_sdk_containers" in debug.experiments
    assert options.view_as(SetupOptions).beam_plugins == [data_plane_buffers.WORKER_PLUGIN]
    # one SDK process per worker, its 8 threads sharing its share of each site's budget
    assert request_budget.job_processes(beam_args, None, False, 2) == 4
    result = job.run_pipeline(config, options)
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    assert {"Search", "Download", "Segment", "Quality", "Shard", "Audit"} <= names
