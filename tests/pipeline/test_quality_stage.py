"""The quality stage on Beam's real in-process runner (FnApiRunner) with a trained model directory."""

from __future__ import annotations

import argparse
import csv
import gc

import apache_beam as beam
import pytest
import torch
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.utils import shared

from classifiers.artifact import FeatureVersionError, load_classifier
from classifiers.metrics import DecisionRule
from classifiers.train import TrainConfig, train
from pipeline import stage
from pipeline.cli import options
from pipeline.quality import Quality, QualityConfig, _ScoreBatches
from pipeline.shards import write_shard
from pipeline.tools.demo_corpus import clips as synthetic
from schemas import Clip, Outcome, reasons
from schemas.clip_codec import decode_clip
from schemas.stats import QualitySettings

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """11 one-clip videos (4 clean, one per junk kind), their shards, labels, and a trained model."""
    root = tmp_path_factory.mktemp("quality")
    (root / "shards").mkdir()
    videos = synthetic.demo_videos(n_clean=4, n_junk_each=1, clips_per_video=1)
    clips = [synthetic.make_clip(vid, 0, fs[0]) for vid, _, fs in videos]
    write_shard(str(root / "shards" / "shard-00000.tar"), clips)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("item_id", "score"))
        for vid, kind, _ in videos:
            w.writerow((vid, 5 if kind == "clean" else 1))
    model = root / "model"
    train(TrainConfig(labels=str(labels), clips=str(root), out=str(model), folds=2))
    # a second video of clean gameplay with a broken middle clip, and a clip without bytes
    extra = [synthetic.make_clip("late", i, synthetic.gameplay(40 + i, 160)) for i in range(3)]
    extra[1] = extra[1].replace(mp4=b"\x00\x00\x00\x18ftypisom-not-a-real-mp4")
    menu = synthetic.junk_clip("static_menu", 9)
    extra.append(synthetic.make_clip("nobytes", 0, menu).replace(mp4=None, location="elsewhere.tar"))
    return {"root": root, "labels": labels, "model": model, "clips": clips + extra}


def run_stage(clips, transform, tmp_path):
    """Run the stage; its two outputs are written as JSON lines by Beam and read back."""
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create(clips, reshuffle=False) | transform
    for tag in (stage.MAIN, stage.OUTCOMES):
        (out[tag] | f"Json{tag}" >> beam.Map(lambda r: r.to_json())
         | f"Write{tag}" >> beam.io.WriteToText(str(tmp_path / tag), shard_name_template=""))
    result = p.run()
    result.wait_until_finish()
    counters = {r.key.metric.name: r.committed for r in result.metrics().query(
        MetricsFilter().with_namespace("quality"))["counters"]}
    lines = {tag: (tmp_path / tag).read_text().splitlines() for tag in (stage.MAIN, stage.OUTCOMES)}
    return ([Clip.from_json(x) for x in lines[stage.MAIN]], [Outcome.from_json(x) for x in lines[stage.OUTCOMES]],
            counters)


def test_scores_every_clip_and_drops_below_threshold(setup, tmp_path):
    clips = setup["clips"]
    clf = load_classifier(setup["model"])
    kept, outcomes, counters = run_stage(clips, Quality(str(setup["model"]), batch_size=4), tmp_path)
    # nothing is lost: every clip is either passed on or has exactly one outcome
    ids = sorted([c.clip_key for c in kept] + [o.item_id for o in outcomes])
    assert ids == sorted(c.clip_key for c in clips)
    by_key = {c.clip_key: c for c in clips}
    failed = {o.item_id: o for o in outcomes if o.outcome == reasons.FAILED}
    assert set(failed) == {clips[-3].clip_key, clips[-1].clip_key}
    assert all(o.reason == reasons.QUALITY_ERROR and o.stage == reasons.STAGE_QUALITY for o in failed.values())
    assert "no encoded bytes" in failed[clips[-1].clip_key].detail
    # scores equal the model applied directly to the decoded clip
    for c in kept:
        expected = clf.score_frames([decode_clip(by_key[c.clip_key].mp4)])[0]
        assert c.quality_score == pytest.approx(expected) and c.quality_score >= clf.threshold
    dropped = [o for o in outcomes if o.outcome == reasons.DROPPED]
    for o in dropped:
        assert o.reason == reasons.LOW_QUALITY and o.quality_score < clf.threshold
        assert f"{o.quality_score:.4f}" in o.detail and f"{clf.threshold:.4f}" in o.detail
    assert counters["scored"] == len(clips) - 2 and counters["errors"] == 2
    assert counters["kept"] == len(kept) and counters["low_quality"] == len(dropped)
    assert counters["model_loads"] == 1  # once per worker, shared by every bundle and batch
    # the junk the model was trained on is filtered; the clean videos pass
    assert {o.video_id for o in dropped} >= {f"{k}00" for k in ("static_menu", "black_fade", "letterbox")}


def test_threshold_override_and_flags(setup, tmp_path):
    parser = argparse.ArgumentParser()
    options.add_options(parser, QualityConfig)
    ns = parser.parse_args(["--classifier", str(setup["model"]), "--quality-threshold", "0"])
    kept, outcomes, _ = run_stage(setup["clips"], Quality.from_config(options.build(QualityConfig, ns)), tmp_path)
    assert len(kept) == len(setup["clips"]) - 2 and all(o.outcome == reasons.FAILED for o in outcomes)
    assert parser.parse_args([]).classifier is None
    assert Quality.from_config(options.build(QualityConfig, ns)).settings == QualitySettings(
        classifier=str(setup["model"]), threshold=0.0, rule="clip", margin=0.0)
    assert Quality(None).settings == QualitySettings()


def test_a_threshold_outside_the_score_range_is_refused_at_launch(setup, capsys):
    parser = argparse.ArgumentParser()
    options.add_options(parser, QualityConfig)
    for bad in ("-0.1", "1.01", "nan", "inf"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--classifier", str(setup["model"]), "--quality-threshold", bad])
        err = capsys.readouterr().err
        assert "--quality-threshold" in err and "must be a number in [0, 1]" in err, err
    with pytest.raises(SystemExit):
        parser.parse_args(["--quality-batch-size", "0"])
    assert "--quality-batch-size: must be >= 1" in capsys.readouterr().err
    for model in (str(setup["model"]), None):  # built in code rather than from flags, with a model or without
        with pytest.raises(ValueError, match=r"threshold override must be a number in \[0, 1\]"):
            Quality(model, threshold=2.0)


def test_the_shared_model_stays_loaded_while_a_dofn_holds_it(setup):
    """setup keeps the object Shared returned: another Shared taking the process-wide keep-alive slot and a
    garbage collection must not make the next DoFn instance load the model again."""
    handle = shared.Shared()
    first = _ScoreBatches(str(setup["model"]), None, handle)
    first.setup()
    assert first._loaded_here
    shared.Shared().acquire(lambda: type("Other", (), {})())  # any other Shared acquire takes the slot over
    gc.collect()
    second = _ScoreBatches(str(setup["model"]), None, handle)
    second.setup()
    assert not second._loaded_here and second._classifier is first._classifier


def test_without_model_clips_pass_unscored(setup, tmp_path):
    clips = setup["clips"]
    kept, outcomes, counters = run_stage(clips, Quality(None), tmp_path)
    assert sorted(c.clip_key for c in kept) == sorted(c.clip_key for c in clips)
    assert all(c.quality_score is None for c in kept) and not outcomes
    assert counters["unscored"] == len(clips)


def test_video_rule_decides_per_video(setup, tmp_path):
    model = tmp_path / "video_rule"
    train(TrainConfig(labels=str(setup["labels"]), clips=str(setup["root"]), out=str(model), folds=2,
                      decision=DecisionRule("video", 0.0)))
    late = [c for c in setup["clips"] if c.video_id == "late" and c.clip_index != 1]
    junk = synthetic.make_clip("menu_video", 0, synthetic.junk_clip("static_menu", 11))
    kept, outcomes, _ = run_stage(late + [junk], Quality(str(model)), tmp_path)
    fate = {c.clip_key: "kept" for c in kept} | {o.item_id: o.outcome for o in outcomes}
    assert len({fate[c.clip_key] for c in late}) == 1  # both clips of the video share its decision
    assert fate[junk.clip_key] == reasons.DROPPED
    assert "video mean score" in next(o.detail for o in outcomes if o.item_id == junk.clip_key)


def test_incompatible_model_fails_at_construction(setup, tmp_path):
    import json
    import shutil
    bad = tmp_path / "old"
    shutil.copytree(setup["model"], bad)
    meta = json.loads((bad / "metadata.json").read_text())
    meta["feature_version"] = "999"
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(FeatureVersionError):
        Quality(str(bad))


def test_a_clip_of_another_frame_rate_fails_alone_before_it_is_decoded(setup):
    """The stage scores through the model's own checks: a clip recorded at another rate (its frames look the
    same size) fails with a message naming both geometries; the rest of the batch is scored."""
    from pipeline.quality import score_clips

    classifier = load_classifier(str(setup["model"]))
    good = setup["clips"][0]
    other_rate = setup["clips"][1].replace(fps=5.0)
    (scored, none), (missing, failed) = sorted(score_clips(classifier, [good, other_rate]),
                                               key=lambda pair: pair[0] is None)
    assert none is None and 0.0 <= scored.quality_score <= 1.0
    assert missing is None and failed.reason == reasons.QUALITY_ERROR and failed.outcome == reasons.FAILED
    assert "@ 5 FPS" in failed.detail and "trained on 160x90 @ 10 FPS" in failed.detail


def test_a_clip_the_store_keeps_refusing_fails_as_storage_error_and_a_hiccup_is_retried(setup, monkeypatch):
    """Clips by reference on the fake object store (GCS cannot be reached from the tests): a read failing twice
    is retried and scored; one failing for good ends ``failed: storage_error`` alone."""
    from pipeline.io import clip_store, storage
    from pipeline.quality import score_clips
    from tests.object_store import FakeObjectStore, ServiceUnavailable

    FakeObjectStore.reset()
    monkeypatch.setattr(storage, "RETRY", storage.RetryPolicy(attempts=3, base_s=0.0))
    try:
        refs = []
        for i, clip in enumerate(setup["clips"][:3]):
            path = f"fakeobj://bucket/cache/v{i}{clip_store.PACK_SUFFIX}"
            FakeObjectStore.objects[path] = clip.mp4
            refs.append(clip.replace(mp4=None, location=clip_store.reference(path, 0, len(clip.mp4))))
        FakeObjectStore.inject("get", "/v0.clips.bin", ServiceUnavailable("503"), times=2)
        FakeObjectStore.inject("get", "/v1.clips.bin", ServiceUnavailable("503"), times=10**6)
        ended = {c.clip_key if c else o.item_id: (c, o) for c, o in
                 score_clips(load_classifier(str(setup["model"])), refs)}
        assert ended[refs[0].clip_key][0] is not None and ended[refs[2].clip_key][0] is not None
        failed = ended[refs[1].clip_key][1]
        assert (failed.outcome, failed.reason) == (reasons.FAILED, reasons.STORAGE_ERROR)
        assert "still failing after 3 attempts" in failed.detail
    finally:
        FakeObjectStore.reset()
