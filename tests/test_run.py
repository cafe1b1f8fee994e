"""``python -m pipeline run`` end to end on a tiny corpus encoded here: Beam's in-process FnApiRunner, real
yt-dlp on file:// URLs, real decoding, shards read back with webdataset; bad inputs next to good ones; a rerun
reproduces byte-identical outputs; the Dataflow job graph builds without submitting (``--dry_run``)."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline import clip_codec, run, shards
from schemas import Outcome, from_table, ids, reasons
from tests import media

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")

HOSTILE_ID = "../../etc/passwd <script>alert(1)</script>\u202e.mp4"
TITLE = "Celeste speedrun gameplay"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three good videos (one AV1, one with an actions sidecar and a hostile id) and six bad ones."""
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
    (root / "hostile.json").write_text(json.dumps({"video_id": HOSTILE_ID, "step_fps": 10, "num_steps": 165,
                                                    "actions": [i % 15 for i in range(165)]}))
    rows = [("good", "good.mp4", {}), (HOSTILE_ID, "hostile.mp4", {"actions": "hostile.json"}),
            ("av1", "av1.mp4", {}), ("short", "short.mp4", {}), ("audio", "audio.mp4", {}),
            ("truncated", "truncated.mp4", {}), ("garbage", "garbage.mp4", {}), ("missing", "nope.mp4", {})]
    with open(root / "catalog.jsonl", "w") as f:
        for vid, name, extra in rows:
            f.write(json.dumps({"id": vid, "url": (videos / name).as_uri(), "title": TITLE, "duration_s": 20,
                                **extra}) + "\n")
        f.write(json.dumps({"id": "cooking", "url": (videos / "good.mp4").as_uri() + "?x", "title": "cooking",
                            "duration_s": 20}) + "\n")
    return root


def run_once(corpus, out) -> int:
    return run.main(["--catalog", str(corpus / "catalog.jsonl"), "--output", str(out), "--in-process",
                     "--shard-size-mb", "0.05"])


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert run_once(corpus, out) == 0
    return out


def final_outcomes(out) -> dict[str, Outcome]:
    return {o.item_id: o for o in from_table(pq.read_table(out / "outcomes.parquet"), Outcome)}


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
        "cooking": ("search", "dropped", reasons.NO_GAME_KEYWORD),
    }
    assert "via pyav (av1" in final_outcomes(first_run)["av1"].detail
    for o in final_outcomes(first_run).values():
        assert o.outcome == "kept" or o.detail, o  # every drop or failure says why


def test_stats_hold_the_conservation_law_and_the_funnel(first_run):
    stats = json.loads((first_run / "stats.json").read_text())
    assert stats["conservation"]["ok"]
    assert stats["videos"]["candidates"] == 9
    assert stats["clips"] == {"cut": 7, "dropped": 3, "kept": 4}  # 2 + 1 + 1 clips, each video with a tail
    segment = next(r for r in stats["funnel"] if r["stage"] == "segment")
    assert (segment["videos_out"], segment["clips_in"], segment["clips_out"]) == (3, 7, 4)
    page = (first_run / "report.html").read_text()
    assert "Conservation law holds" in page and "short_tail" in page


def test_shards_hold_every_kept_clip_with_actions_for_the_sidecar_video(first_run):
    manifest = pq.read_table(first_run / "manifest.parquet").to_pylist()
    samples = list(shards.read_samples(shards.shard_paths(str(first_run))))
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


def test_rerun_reproduces_identical_outputs_without_decoding_again(corpus, first_run, tmp_path):
    cache = first_run / "cache" / "segment"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    snapshot = {p: p.read_bytes() for p in sorted(first_run.glob("shards/*.tar"))}
    snapshot[first_run / "manifest.parquet"] = (first_run / "manifest.parquet").read_bytes()
    snapshot[first_run / "stats.json"] = (first_run / "stats.json").read_bytes()
    assert run_once(corpus, first_run) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before  # nothing re-segmented
    for path, data in snapshot.items():
        assert path.read_bytes() == data, path


def _explode(_):
    raise RuntimeError("decoder exploded")


def test_a_failing_stage_is_named_from_beams_error():
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    with pytest.raises(Exception) as info, beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([1]) | "Segment/Cut clips" >> beam.Map(_explode)
    assert run.failed_stage(info.value) == "segment"


def test_bad_options_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit):
        run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), "--shard-size-mb", "0"])


def test_dataflow_job_graph_builds_without_submitting(corpus):
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    config, ns, beam_args = run.parse(["--catalog", str(corpus / "catalog.jsonl"), "--output", "gs://bucket/out",
                                       "--runner", "DataflowRunner", "--project", "genie-worlds-test", "--region", "us-central1",
                                       "--temp_location", "gs://bucket/tmp", "--dry_run=True", "--no_auth"])
    result = run.run_pipeline(config, run.quality_from_args(ns), run.local_options(beam_args, None))
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    for stage in ("Search", "Download", "Segment", "Quality", "Shard", "Audit"):
        assert stage in names
    assert config.segment.cache_dir == "gs://bucket/out/cache/segment"
    assert config.download.download_dir == "gs://bucket/out/videos"
