"""Training and evaluation end to end on real WebDataset shards of rendered clips (both model families)."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from classifiers import synthetic
from classifiers.__main__ import main as cli
from classifiers.artifact import FeatureVersionError, ModelDirError, load_classifier
from classifiers.features import FEATURE_VERSION
from classifiers.labels import LabelFileError
from classifiers.train import TrainConfig, group_folds, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """13 videos x 2 clips in two shards (6 clean platformer videos, one of each junk kind) + labels."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "shards").mkdir()
    videos = synthetic.demo_videos(n_clean=6, n_junk_each=1, clips_per_video=2)
    clips = [synthetic.make_clip(vid, i, frames) for vid, _, fs in videos for i, frames in enumerate(fs)]
    synthetic.write_shard(str(root / "shards" / "shard-00000.tar"), clips[:13])
    synthetic.write_shard(str(root / "shards" / "shard-00001.tar"), clips[13:])
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("item_id", "item_kind", "score", "labeller", "note"))
        for vid, kind, _ in videos:
            score = 3 if vid == "clean05" else (5 if kind == "clean" else 1)  # a 3 is left out of training
            w.writerow((vid, "video", score, "tester", kind))
    return {"root": root, "labels": labels, "videos": videos}


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One sklearn model directory shared by the tests that only need some trained model."""
    out = tmp_path_factory.mktemp("trained") / "model"
    train(TrainConfig(labels=str(corpus["labels"]), clips=str(corpus["root"]), out=str(out), folds=2))
    return out


def test_group_folds_never_split_a_video():
    rng = np.random.default_rng(0)
    groups = [f"v{int(g)}" for g in rng.integers(0, 30, size=300)]
    targets = np.array([int(g[1:]) % 3 == 0 for g in groups], dtype=int)  # label is per video
    folds = group_folds(groups, targets, 5)
    assert len(folds) == 5
    g = np.asarray(groups)
    seen_test = []
    for tr, te in folds:
        assert not set(g[tr]) & set(g[te])
        assert set(targets[te]) == {0, 1}  # stratified: both classes in every test fold
        seen_test.extend(te)
    assert sorted(seen_test) == list(range(300))
    with pytest.raises(ValueError, match="2 videos of each class"):
        group_folds(["a", "a", "b"], np.array([1, 1, 0]), 5)


def test_train_sklearn_writes_self_describing_model(corpus, tmp_path):
    out = tmp_path / "model"
    rc = cli(["train", "--labels", str(corpus["labels"]), "--clips", str(corpus["root"]), "--out", str(out),
              "--folds", "3", "--target-precision", "0.9"])
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["family"] == "sklearn" and meta["feature_version"] == FEATURE_VERSION
    assert meta["labels"]["sha256"] == hashlib.sha256(corpus["labels"].read_bytes()).hexdigest()
    assert meta["labels"]["counts"]["left_out_by_policy"] == 2  # clean05's two clips, scored 3
    assert meta["labels"]["clips_used"] == 24 and meta["labels"]["good"] == 10
    assert {"python", "numpy", "scikit-learn"} <= set(meta["versions"])
    assert 0.0 <= meta["threshold"] <= 1.0
    cv = meta["metrics"]["cv_clip"]
    assert sum(cv["confusion"].values()) == 24
    # junk kinds each appear in one video only, so a held-out fold often has a kind never trained on;
    # the features still separate clean gameplay from junk well above chance
    assert cv["roc_auc"] > 0.8, cv

    # out-of-fold predictions: every clip of a video sits in the same test fold
    with open(out / "cv_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    folds_of: dict[str, set[str]] = {}
    for r in rows:
        folds_of.setdefault(r["video_id"], set()).add(r["fold"])
    assert len(rows) == 24 and all(len(v) == 1 for v in folds_of.values())

    clf = load_classifier(out)
    frames = synthetic.gameplay(77, 160)
    s1 = clf.score_frames([frames])
    assert s1.shape == (1,) and 0 <= s1[0] <= 1

    # evaluation on a labels file: same metric names, report with embedded images
    rep_dir = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(out), "--labels", str(corpus["labels"]), "--clips",
                str(corpus["root"] / "shards" / "shard-*.tar"), "--out", str(rep_dir)]) == 0
    report = json.loads((rep_dir / "metrics.json").read_text())
    assert report["n"] == 24 and report["roc_auc"] > 0.99  # seen during the final fit
    page = (rep_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "Confusion matrix" in page
    assert (rep_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_features_command_writes_one_row_per_clip(corpus, tmp_path):
    import pandas as pd

    from classifiers.features import FEATURE_NAMES
    assert cli(["features", "--clips", str(corpus["root"]), "--out", str(tmp_path / "f.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "f.parquet")
    assert list(df.columns) == ["clip_key", "video_id", *FEATURE_NAMES] and len(df) == 26
    black = df[df.video_id == "black00"]
    assert (black["black_frac"] == 1.0).all() and (df[df.video_id == "clean00"]["black_frac"] == 0).all()


def test_feature_version_mismatch_fails_clearly(trained, tmp_path):
    import shutil
    out = tmp_path / "model"
    shutil.copytree(trained, out)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_version"] = "0-old"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FeatureVersionError) as info:
        load_classifier(out)
    assert "'0-old'" in str(info.value) and repr(FEATURE_VERSION) in str(info.value)
    with pytest.raises(ModelDirError, match="no metadata.json"):
        load_classifier(tmp_path)


def test_unknown_label_ids_fail_unless_allowed(corpus, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(corpus["labels"].read_text() + "ghost_video,video,5,tester,\n")
    cfg = TrainConfig(labels=str(labels), clips=str(corpus["root"]), out=str(tmp_path / "m"), folds=2)
    with pytest.raises(LabelFileError, match="ghost_video"):
        train(cfg)
    train(TrainConfig(**{**cfg.__dict__, "allow_unknown": True}))
    assert (tmp_path / "m" / "metadata.json").exists()


def test_cnn_family_and_video_rule(corpus, tmp_path):
    out = tmp_path / "cnn"
    rc = cli(["train", "--labels", str(corpus["labels"]), "--clips", str(corpus["root"]), "--out", str(out),
              "--family", "cnn", "--preset", "tiny", "--epochs", "2", "--folds", "2",
              "--decision", "video", "--margin", "0.05"])
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["family"] == "cnn" and meta["model_config"]["width"] == 4
    assert meta["decision"] == {"rule": "video", "margin": 0.05}
    with open(out / "cv_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    kept_by_video: dict[str, set[str]] = {}
    for r in rows:
        kept_by_video.setdefault(r["video_id"], set()).add(r["kept"])
    assert all(len(v) == 1 for v in kept_by_video.values())  # the video rule decides per video
    clf = load_classifier(out)
    frames = [synthetic.menu(3), synthetic.gameplay(78, 160)]
    scores = clf.score_frames(frames)
    again = load_classifier(out).score_frames(frames)
    np.testing.assert_allclose(scores, again)  # the saved weights are the ones used
    assert ((scores >= 0) & (scores <= 1)).all()


def test_model_dir_behind_a_url_is_copied_locally(trained, tmp_path):
    """Dataflow workers read the model from a URL (gs://...). GCS is unreachable here, so a Beam filesystem
    with its own scheme over local files stands in for it: the code under test goes through Beam's
    ``FileSystems`` exactly as it would for gs://."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.localfilesystem import LocalFileSystem

    class PrefixedLocalFileSystem(LocalFileSystem):
        PREFIX = "h4localtest://"

        @classmethod
        def scheme(cls):
            return "h4localtest"

        def _local(self, url):
            return url[len(self.PREFIX):]

        def join(self, base, *paths):
            return self.PREFIX + super().join(self._local(base), *paths)

        def exists(self, url):
            return super().exists(self._local(url))

        def open(self, url, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
            return super().open(self._local(url), mime_type, compression_type)

    out = trained
    local = load_classifier(out)
    remote = load_classifier(PrefixedLocalFileSystem.PREFIX + str(out))
    assert remote.threshold == local.threshold and remote.metadata == local.metadata
    frames = [synthetic.menu(5), synthetic.drawn_platformer(6)]
    np.testing.assert_allclose(remote.score_frames(frames), local.score_frames(frames))
    with pytest.raises(ModelDirError, match="no metadata.json"):
        load_classifier(PrefixedLocalFileSystem.PREFIX + str(tmp_path / "nothing"))
