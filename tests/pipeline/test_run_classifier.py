"""``python -m pipeline run --classifier`` end to end: a tiny model trained here on rendered clips, a corpus of
videos made from clips of the same renders (clean gameplay and junk), Beam's in-process FnApiRunner.

What only the whole run shows: the quality stage's scores reach the outcomes, the manifest and the shards'
JSON; ``low_quality`` drops say their score; stats, report and summary say which model and threshold
decided; the report draws a strip for the rare ``low_quality`` group; an unreadable catalog row is a search
failure, not a video, and the conservation law still holds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import tarfile

import pyarrow.parquet as pq
import pytest
import torch

from classifiers.artifact import read_metadata
from classifiers.train import TrainConfig, train
from pipeline import run
from pipeline.tools.demo_corpus import clips as synthetic
from schemas import Outcome, clip_codec, from_table, reasons, shard_source, shard_writer
from schemas.clip_format import SHARD_DIR, shard_name
from tests import media

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary (yt-dlp's file:// download)")
torch.set_num_threads(1)

CORPUS = ("clean00", "clean01", "static_menu00", "black_fade00")  # junk the model learnt to drop, clean it keeps


@pytest.fixture(scope="module")
def model_and_corpus(tmp_path_factory):
    """A model trained on 11 one-clip renders (as tests/pipeline/test_quality_stage.py), and a catalog of 4 videos whose
    files are 16 s encodes of 4 of those renders, plus one unreadable catalog row."""
    root = tmp_path_factory.mktemp("classified")
    videos = synthetic.demo_videos(n_clean=4, n_junk_each=1, clips_per_video=1)
    shard_writer.write_shard(str(root / SHARD_DIR / shard_name(0)),
                             [synthetic.make_clip(vid, 0, fs[0]) for vid, _, fs in videos])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("item_id", "score"))
        for vid, kind, _ in videos:
            w.writerow((vid, 5 if kind == "clean" else 1))
    model = root / "model"
    train(TrainConfig(labels=str(root / "labels.csv"), clips=str(root), out=str(model), folds=2))
    frames = {vid: fs[0] for vid, _, fs in videos}
    (root / "videos").mkdir()
    with open(root / "catalog.jsonl", "w") as f:
        for vid in CORPUS:  # 160 frames at 10 FPS, 160x90: exactly one clip, no tail
            (root / "videos" / f"{vid}.mp4").write_bytes(clip_codec.encode_clip(frames[vid]))
            f.write(json.dumps({"id": vid, "url": (root / "videos" / f"{vid}.mp4").as_uri(),
                                "title": "Celeste speedrun gameplay", "duration_s": 20}) + "\n")
        f.write(json.dumps({"id": "no-url", "title": "Celeste speedrun gameplay"}) + "\n")  # a bad row
    return model, root / "catalog.jsonl"


@pytest.fixture(scope="module")
def classified_run(model_and_corpus, tmp_path_factory):
    model, catalog = model_and_corpus
    out = tmp_path_factory.mktemp("out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run.main(["--catalog", str(catalog), "--output", str(out), "--in-process",
                         "--classifier", str(model), "--shard-size-mb", "0.05"]) == 0
    return out, printed.getvalue()


def outcomes(out) -> dict[str, Outcome]:
    return {o.item_id: o for o in from_table(pq.read_table(out / "outcomes"), Outcome)}


def test_junk_is_dropped_with_its_score_and_clean_clips_are_kept(model_and_corpus, classified_run):
    out, _ = classified_run
    threshold = float(read_metadata(model_and_corpus[0])["threshold"])
    clips = {o.video_id: o for o in outcomes(out).values() if o.item_kind == reasons.ITEM_CLIP}
    assert set(clips) == set(CORPUS)
    for vid in ("static_menu00", "black_fade00"):
        o = clips[vid]
        assert (o.stage, o.outcome, o.reason) == (reasons.STAGE_QUALITY, reasons.DROPPED, reasons.LOW_QUALITY), o
        assert o.quality_score < threshold
        assert o.detail == f"score {o.quality_score:.4f} < threshold {threshold:.4f}"
    for vid in ("clean00", "clean01"):
        o = clips[vid]
        assert (o.stage, o.outcome) == (reasons.STAGE_SHARD, reasons.KEPT), o
        assert o.quality_score >= threshold


def test_manifest_and_shard_json_carry_the_score(classified_run):
    out, _ = classified_run
    manifest = {r["clip_key"]: r for r in pq.read_table(out / "manifest").to_pylist()}
    kept = {o.item_id: o for o in outcomes(out).values() if o.item_kind == reasons.ITEM_CLIP and o.outcome == "kept"}
    assert set(manifest) == set(kept) and len(kept) == 2
    for key, row in manifest.items():
        assert row["quality_score"] is not None and row["quality_score"] == pytest.approx(kept[key].quality_score)
    in_shards = {}
    for path in shard_source.resolve(str(out)):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    in_shards[meta["clip_key"]] = meta["quality_score"]
    assert in_shards == {key: row["quality_score"] for key, row in manifest.items()}


def test_stats_report_and_summary_name_the_model_and_threshold(model_and_corpus, classified_run):
    model, _ = model_and_corpus
    out, printed = classified_run
    threshold = float(read_metadata(model)["threshold"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["conservation"]["ok"]
    assert stats["quality"] == {"classifier": str(model), "threshold": threshold, "rule": "clip", "margin": 0.0,
                                "clips_in": 4, "clips_scored": 4, "clips_unscored": 0, "clips_failed": 0,
                                "clips_dropped_low_quality": 2}
    # the bad catalog row is a search failure: one outcome, not a candidate video
    assert stats["videos"]["candidates"] == 4 and stats["search_failures"] == {"count": 1,
                                                                             "by_reason": {"bad_catalog_row": 1}}
    assert next(r for r in stats["funnel"] if r["stage"] == "search")["videos_in"] == 4
    assert (f"quality: classifier {model} (clip rule, threshold {threshold:.4f}): 4 scored, 2 dropped low_quality, "
            f"0 failed, 0 unscored") in printed
    assert "1 unreadable input(s) (search_failures)" in printed
    page = (out / "report.html").read_text()
    assert str(model) in page and "No quality classifier" not in page
    sections = {m.group(1): m.group(2) for m in re.finditer(r"<h3>(.*?)</h3>(.*?)(?=<h3>|</body>)", page, re.S)}
    assert sections["dropped: low_quality"].count("data:image/jpeg") == 2  # the rare reason has its strips
    assert sections["kept"].count("data:image/jpeg") == 2
