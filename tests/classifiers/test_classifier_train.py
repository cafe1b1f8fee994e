"""Training and evaluation end to end on real WebDataset shards of rendered clips (both model families)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import precision_score

from classifiers.__main__ import main as cli
from classifiers.artifact import FeatureVersionError, ModelDirError, load_classifier
from classifiers.dataset import thumbnail
from classifiers.features import FEATURE_VERSION
from classifiers.labels import LabelFileError
from classifiers.metrics import video_mean_scores
from classifiers.train import TrainConfig, group_folds, train
from pipeline.shards import write_shard
from pipeline.tools.demo_corpus import clips as synthetic
from schemas.clip_codec import decode_clip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """13 videos x 2 clips in two shards (6 clean platformer videos, one of each junk kind) + labels."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "shards").mkdir()
    videos = synthetic.demo_videos(n_clean=6, n_junk_each=1, clips_per_video=2)
    clips = [synthetic.make_clip(vid, i, frames) for vid, _, fs in videos for i, frames in enumerate(fs)]
    write_shard(str(root / "shards" / "shard-00000.tar"), clips[:13])
    write_shard(str(root / "shards" / "shard-00001.tar"), clips[13:])
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("item_id", "item_kind", "score", "labeller", "note"))
        for vid, kind, _ in videos:
            score = 3 if vid == "clean05" else (5 if kind == "clean" else 1)  # a 3 is left out of training
            w.writerow((vid, "video", score, "tester", kind))
    return {"root": root, "labels": labels, "videos": videos, "clips": clips}


def strict_json(path):
    """Parse a JSON file refusing NaN/Infinity (not JSON; Python's json module accepts them by default)."""
    def refuse(name):
        raise ValueError(f"{path}: invalid JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def write_labels(path, rows) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("item_id", "item_kind", "score", "labeller", "note"))
        w.writerows(rows)
    return str(path)


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
    black = df[df.video_id == "black_fade00"]
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
    frames = [synthetic.junk_clip("static_menu", 3), synthetic.gameplay(78, 160)]
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
    frames = [synthetic.junk_clip("static_menu", 5), synthetic.drawn_platformer(6)]
    np.testing.assert_allclose(remote.score_frames(frames), local.score_frames(frames))
    with pytest.raises(ModelDirError, match="no metadata.json"):
        load_classifier(PrefixedLocalFileSystem.PREFIX + str(tmp_path / "nothing"))


def test_video_rule_threshold_is_picked_on_video_mean_scores(corpus, tmp_path):
    """With --decision video the reported precision is that of the video rule, and the cut it makes
    (threshold + margin) is the lowest video-mean score reaching the target: checked by brute force."""
    out, target, margin = tmp_path / "model", 0.9, 0.05
    assert cli(["train", "--labels", str(corpus["labels"]), "--clips", str(corpus["root"]), "--out", str(out),
                "--folds", "3", "--decision", "video", "--margin", str(margin),
                "--target-precision", str(target)]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    cv, threshold = meta["metrics"]["cv_clip"], meta["threshold"]
    assert cv["decision"] == {"rule": "video", "margin": margin} and 0 <= threshold <= 1
    with open(out / "cv_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    y = np.array([int(r["target"]) for r in rows])
    kept = np.array([r["kept"] == "1" for r in rows])
    means = video_mean_scores(np.array([float(r["cv_score"]) for r in rows]), [r["video_id"] for r in rows])
    np.testing.assert_array_equal(kept, means >= threshold + margin - 1e-5)  # the rule, on 6-decimal scores
    assert cv["precision"] == pytest.approx(precision_score(y, kept))
    # every cut the rule can make (a video mean >= the margin), and those reaching the target
    reaching = [m for m in np.unique(means) if m >= margin and precision_score(y, means >= m) >= target]
    assert cv["target_precision_reached"] == bool(reaching)
    if reaching:
        assert threshold + margin == pytest.approx(reaching[0], abs=1e-5) and cv["precision"] >= target


def test_evaluate_shows_worst_mistakes_and_every_hand_score(corpus, trained, tmp_path):
    """Labels that contradict the model on two videos: their clips must appear as mistakes with thumbnails.
    Every hand score present gets a histogram, the 3s too; the binary metrics use the 5s and 1s only."""
    flip = {"clean00": 1, "black_fade00": 5}  # the model (trained on the true labels) keeps clean00, drops black_fade00
    rows = [(vid, "video", flip.get(vid, 3 if vid == "clean05" else 5 if kind == "clean" else 1), "t", "")
            for vid, kind, _ in corpus["videos"]]
    labels = write_labels(tmp_path / "contradicting.csv", rows)
    rep_dir = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(trained), "--labels", labels, "--clips", str(corpus["root"]),
                "--out", str(rep_dir)]) == 0
    report = strict_json(rep_dir / "metrics.json")
    assert report["n"] == 24 and report["counts"]["left_out_by_policy"] == 2  # binary metrics as before
    page = (rep_dir / "report.html").read_text()
    by_video = {}
    for clip in corpus["clips"]:
        by_video.setdefault(clip.video_id, []).append(clip)
    for vid, kind in (("clean00", "kept but labelled bad"), ("black_fade00", "dropped but labelled good")):
        for clip in by_video[vid]:
            tag = f'<img alt="{clip.clip_key}" src="data:image/png;base64,'
            assert tag in page, (vid, clip.clip_key)
            png = base64.b64decode(page.split(tag, 1)[1].split('"', 1)[0])
            strip = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            np.testing.assert_array_equal(strip, thumbnail(decode_clip(clip.mp4)))  # the clip's own frames
        assert kind in page
    assert report["confusion"]["fp"] >= 2 and report["confusion"]["fn"] >= 2

    hist = report["by_hand_score"]
    assert set(hist) == {"1", "3", "5"}
    assert {h: (v["n"], v["target"]) for h, v in hist.items()} == {
        "1": (14, "bad"), "3": (2, "left out"), "5": (10, "good")}
    assert all(sum(v["histogram"]) == v["n"] for v in hist.values())
    clf = load_classifier(trained)
    threes = clf.score_frames([decode_clip(c.mp4) for c in by_video["clean05"]])
    assert hist["3"]["mean_score"] == pytest.approx(float(threes.mean()), abs=1e-6)
    assert hist["3"]["at_or_above_threshold"] == pytest.approx(float(np.mean(threes >= clf.threshold)))
    assert "<td>3</td><td>left out</td><td>2</td>" in page and "score histograms by hand score" in page


def test_metrics_files_are_strict_json_when_a_metric_is_undefined(corpus, trained, tmp_path):
    """Held-out labels of one class only: ROC-AUC and PR-AUC are undefined, written as null (not NaN)."""
    labels = write_labels(tmp_path / "good_only.csv", [(v, "video", 5, "t", "") for v, kind, _ in corpus["videos"]
                                                      if kind == "clean" and v != "clean05"])
    out = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(trained), "--labels", labels, "--clips", str(corpus["root"]),
                "--out", str(out)]) == 0
    report = strict_json(out / "metrics.json")
    assert report["n"] == report["n_good"] == 10
    assert report["roc_auc"] is None and report["pr_auc"] is None
    assert isinstance(report["recall"], float) and not math.isnan(report["recall"])
    strict_json(trained / "metrics.json")
    strict_json(trained / "metadata.json")


def test_out_of_range_thresholds_fail_at_load(trained, tmp_path):
    import shutil
    out = tmp_path / "model"
    shutil.copytree(trained, out)
    meta = json.loads((out / "metadata.json").read_text())
    for bad in (1.5, -0.1, "high", None):
        (out / "metadata.json").write_text(json.dumps({**meta, "threshold": bad}))
        with pytest.raises(ModelDirError, match=r"metadata.json: threshold must be a number in \[0, 1\]"):
            load_classifier(out)
    (out / "metadata.json").write_text(json.dumps(meta))
    for bad in (1.01, -1.0, float("nan")):
        with pytest.raises(ModelDirError, match=r"threshold override must be a number in \[0, 1\]"):
            load_classifier(out, bad)
    assert load_classifier(out, 1.0).threshold == 1.0


def run_cli(capsys, argv):
    rc = cli(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # progress lines (``train: ...``) come before the checks' verdict; the verdict's lines are what is tested
    return rc, "\n".join(line for line in captured.err.splitlines() if not line.startswith(("train: ", "labels: ")))


def test_cli_user_errors_exit_2_with_one_line_per_problem(corpus, trained, tmp_path, capsys):
    broken = write_labels(tmp_path / "broken.csv", [("clean00", "video", 5, "a", ""), ("clean01", "video", 9, "a", ""),
                                                    ("clean02", "film", 5, "a", "")])
    # the label file's own problems come first, even with a --clips path that does not exist
    rc, err = run_cli(capsys, ["train", "--labels", broken, "--clips", str(tmp_path / "nowhere"),
                               "--out", str(tmp_path / "m")])
    lines = err.strip().splitlines()
    assert rc == 2 and lines[0].startswith("python -m classifiers train: error: ") and "2 problem(s)" in lines[0]
    assert lines[1].startswith("  line 3: ") and "out of range" in lines[1]
    assert lines[2].startswith("  line 4: ") and "item_kind" in lines[2] and len(lines) == 3
    # a clip label naming a video id: reported with its line, against the real clips
    wrong_kind = write_labels(tmp_path / "kind.csv", [("clean00", "clip", 5, "a", "")])
    rc, err = run_cli(capsys, ["train", "--labels", wrong_kind, "--clips", str(corpus["root"]),
                               "--out", str(tmp_path / "m")])
    assert rc == 2 and "line 2: clip label names 'clean00', which is a video id" in err
    # a valid label file and a --clips path without shards
    rc, err = run_cli(capsys, ["train", "--labels", str(corpus["labels"]), "--clips", str(tmp_path / "nowhere"),
                               "--out", str(tmp_path / "m")])
    assert rc == 2 and "--clips" in err and "nowhere" in err and len(err.strip().splitlines()) == 1
    # evaluate: not a model directory; a threshold override out of range
    rc, err = run_cli(capsys, ["evaluate", "--model", str(tmp_path), "--labels", str(corpus["labels"]),
                               "--clips", str(corpus["root"])])
    assert rc == 2 and "not a classifier model directory" in err
    rc, err = run_cli(capsys, ["evaluate", "--model", str(trained), "--labels", str(corpus["labels"]),
                               "--clips", str(corpus["root"]), "--threshold", "1.5"])
    assert rc == 2 and "threshold override must be a number in [0, 1], got 1.5" in err
    for command in (["label-sheet", "--out", str(tmp_path / "s.html")], ["features", "--out", str(tmp_path / "f.csv")]):
        rc, err = run_cli(capsys, [*command, "--clips", str(tmp_path / "none-*.tar")])
        assert rc == 2 and f"python -m classifiers {command[0]}: error: --clips" in err
    rc, err = run_cli(capsys, ["label-sheet", "--clips", str(corpus["root"]), "--out", str(tmp_path / "s.html"),
                               "--model", str(tmp_path)])
    assert rc == 2 and "not a classifier model directory" in err
    with pytest.raises(SystemExit) as info:  # option values out of range: argparse's own usage error
        cli(["train", "--labels", str(corpus["labels"]), "--clips", str(corpus["root"]), "--out", "x",
             "--margin", "1.5"])
    assert info.value.code == 2 and "margin must be in [0, 1)" in capsys.readouterr().err


def test_cli_error_from_a_real_process(tmp_path):
    """The same through ``python -m classifiers``: exit status 2 and no traceback on stderr."""
    labels = tmp_path / "broken.jsonl"
    labels.write_text('{"item_id": "v", "score": 0}\nnot json\n')
    result = subprocess.run([sys.executable, "-m", "classifiers", "train", "--labels", str(labels), "--clips",
                             str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "line 1: item 'v': score 0 is out of range 1..5" in result.stderr and "line 2: not valid JSON" in result.stderr


def test_evaluate_min_roc_auc_gates_on_the_measured_value(corpus, trained, tmp_path, capsys):
    """``--min-roc-auc`` (the demo's 0.9 gate): the report is always written; the exit status is 0 when the
    held-out ROC-AUC reaches the minimum, 1 with the measured value in the message when it does not, and 1
    when it is undefined (one class only)."""
    flip = {"clean00": 1, "black_fade00": 5}  # two contradicted videos: the ROC-AUC is measurably below 1
    labels = write_labels(tmp_path / "contradicting.csv", [
        (vid, "video", flip.get(vid, 3 if vid == "clean05" else 5 if kind == "clean" else 1), "t", "")
        for vid, kind, _ in corpus["videos"]])
    base = ["evaluate", "--model", str(trained), "--labels", labels, "--clips", str(corpus["root"])]
    rc, err = run_cli(capsys, [*base, "--out", str(tmp_path / "pass"), "--min-roc-auc", "0.5"])
    auc = strict_json(tmp_path / "pass" / "metrics.json")["roc_auc"]
    assert rc == 0 and 0.5 <= auc < 1.0, (auc, err)
    assert f"held-out ROC-AUC {auc:.4f} >= 0.5" in err
    rc, err = run_cli(capsys, [*base, "--out", str(tmp_path / "at"), "--min-roc-auc", repr(auc)])
    assert rc == 0, err  # the minimum itself passes

    above = round(min(1.0, auc + 0.01), 4)
    rc, err = run_cli(capsys, [*base, "--out", str(tmp_path / "fail"), "--min-roc-auc", str(above)])
    assert rc == 1
    assert (f"python -m classifiers evaluate: error: held-out ROC-AUC {auc:.4f} is below the required {above}"
            in err)
    assert (tmp_path / "fail" / "report.html").is_file()  # written before the gate fails, for the post-mortem

    good_only = write_labels(tmp_path / "good_only.csv", [(v, "video", 5, "t", "") for v, kind, _ in corpus["videos"]
                                                          if kind == "clean" and v != "clean05"])
    rc, err = run_cli(capsys, ["evaluate", "--model", str(trained), "--labels", good_only, "--clips",
                               str(corpus["root"]), "--out", str(tmp_path / "undef"), "--min-roc-auc", "0.9"])
    assert rc == 1 and "held-out ROC-AUC is undefined (10 good and 0 bad clips" in err
    with pytest.raises(SystemExit) as info:
        cli([*base, "--min-roc-auc", "1.5"])
    assert info.value.code == 2 and "--min-roc-auc must be in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cnn_inputs():
    """8 short clips (gameplay and menus) prepared for the tiny CNN, with 0/1 targets."""
    from classifiers.models import make_model
    frames = [synthetic.gameplay(i, 40) if i % 2 else synthetic.junk_clip("static_menu", i, 40) for i in range(8)]
    model = make_model("cnn", "tiny", {"epochs": 1, "device": "cpu"})
    return np.stack([model.prepare(f) for f in frames]), np.array([i % 2 for i in range(8)])


def test_cnn_training_is_deterministic_and_leaves_torch_global_rng_alone(cnn_inputs):
    """Two trainings give identical predictions, whatever the global RNG holds, and neither moves it: the
    model draws from its own seeded generators, so it does not reseed other code's randomness."""
    from classifiers.models import make_model
    x, y = cnn_inputs
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    first = make_model("cnn", "tiny", {"epochs": 1, "device": "cpu"})
    first.fit(x, y)
    assert torch.equal(torch.random.get_rng_state(), before)  # neither building nor training touched it
    torch.rand(5)  # a different global state: the second model must not care
    second = make_model("cnn", "tiny", {"epochs": 1, "device": "cpu"})
    second.fit(x, y)
    np.testing.assert_array_equal(first.predict_proba(x), second.predict_proba(x))
    other_seed = make_model("cnn", "tiny", {"epochs": 1, "device": "cpu", "seed": 1})
    other_seed.fit(x, y)
    assert not np.array_equal(first.predict_proba(x), other_seed.predict_proba(x))  # the seed is what decides


def test_cnn_device_option_and_cpu_loading(cnn_inputs, tmp_path):
    """``device`` is validated; a model whose metadata says it was trained on "cuda" loads on this machine's
    default device (the CPU here) with the same predictions."""
    from classifiers.models.cnn_model import CNNClipModel, CNNConfig, default_device
    x, y = cnn_inputs
    assert CNNConfig().device == default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"CNN device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        CNNConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            CNNClipModel(CNNConfig(device="cuda"))
    model = CNNClipModel.from_config({**CNNClipModel(CNNConfig()).config_dict(), "width": 4,
                                      "blocks": [1, 1, 1, 1], "epochs": 1, "device": "cpu"})
    model.fit(x, y)
    model.save(tmp_path)
    assert all(t.device.type == "cpu" for t in torch.load(tmp_path / "model.pt", weights_only=True).values())
    loaded = CNNClipModel.load(tmp_path, {**model.config_dict(), "device": "cuda"})
    assert loaded.config.device == default_device()
    assert next(loaded.net.parameters()).device.type == default_device()
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), rtol=1e-5)


def test_cnn_only_flags_are_usage_errors_for_the_sklearn_family(capsys):
    from classifiers.train import main as train_main

    with pytest.raises(SystemExit) as stop:
        train_main(["--labels", "l.csv", "--clips", "c", "--out", "o", "--device", "cpu", "--epochs", "2"])
    assert stop.value.code == 2
    assert "--epochs, --device apply to --family cnn only" in capsys.readouterr().err


def test_classifier_refuses_clips_of_another_geometry(corpus, trained, tmp_path):
    from classifiers.dataset import LabelCoverageError
    from classifiers.geometry import GeometryError
    from pipeline.quality import score_clips

    loaded = load_classifier(trained)
    assert strict_json(trained / "metadata.json")["clip_geometry"] == {"width": 160, "height": 90, "fps": 10.0}
    clip = corpus["clips"][0]
    loaded.check_clip(clip)  # the training geometry passes
    with pytest.raises(GeometryError, match=r"is 160x90 @ 30 FPS; .* trained on 160x90 @ 10 FPS clips"):
        loaded.check_clip(clip.replace(fps=30.0))
    # 64x64 clips (the CoinRun case study): decoded frames of another size are refused by prepare, and the
    # pipeline's quality stage fails such a clip from its record, before decoding it
    small = [synthetic.make_clip(vid, i, frames[:, :64, :64]) for vid, _, fs in corpus["videos"]
             for i, frames in enumerate(fs)]
    with pytest.raises(GeometryError, match="frames are 64x64; the quality classifier was trained on 160x90"):
        loaded.score_frames([decode_clip(small[0].mp4)])
    [(scored, outcome)] = list(score_clips(loaded, small[:1]))
    assert scored is None and "GeometryError: clip" in outcome.detail and "is 64x64 @ 10 FPS" in outcome.detail

    # a model trained on 64x64 clips records it, accepts them and refuses the 160x90 ones
    (tmp_path / "small" / "shards").mkdir(parents=True)
    write_shard(str(tmp_path / "small" / "shards" / "shard-00000.tar"), small)
    train(TrainConfig(labels=str(corpus["labels"]), clips=str(tmp_path / "small"), out=str(tmp_path / "m64"),
                      folds=2))
    small_model = load_classifier(tmp_path / "m64")
    assert (small_model.geometry.width, small_model.geometry.height) == (64, 64)
    assert small_model.score_frames([decode_clip(small[0].mp4)]).shape == (1,)
    with pytest.raises(GeometryError, match="frames are 160x90; .* trained on 64x64"):
        small_model.score_frames([decode_clip(clip.mp4)])

    # directories written before the field existed mean the pipeline's default clips
    meta = json.loads((tmp_path / "m64" / "metadata.json").read_text())
    del meta["clip_geometry"]
    (tmp_path / "m64" / "metadata.json").write_text(json.dumps(meta))
    assert load_classifier(tmp_path / "m64").geometry.describe() == "160x90 @ 10 FPS"

    # one model learns one geometry: mixed training clips are refused
    write_shard(str(tmp_path / "small" / "shards" / "shard-00001.tar"), corpus["clips"][:2])
    with pytest.raises(LabelCoverageError, match="several geometries in .*: 160x90 @ 10 FPS, 64x64 @ 10 FPS"):
        train(TrainConfig(labels=str(corpus["labels"]), clips=str(tmp_path / "small"),
                          out=str(tmp_path / "mixed"), folds=2))
