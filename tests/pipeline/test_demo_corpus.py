"""Demo corpus: plan coverage (no rendering), and a tiny real build (Procgen + x264) checked with decord."""

from __future__ import annotations

import csv
import json

import decord
import pytest

from classifiers.labels import load_labels
from pipeline.tools.demo_corpus import build, catalog, cli, games, spec
from schemas import CandidateVideo, HandLabel


def test_plan_has_every_junk_kind_and_filter_row():
    plan = spec.plan_corpus()
    kinds = {v.kind for v in plan.videos}
    assert set(spec.JUNK_KINDS) <= kinds and set(spec.MIXED_KINDS) <= kinds
    assert sum(v.kind == spec.CLEAN for v in plan.videos) >= 10
    expects = {e.expect for e in plan.entries}
    for reason in ("no_game_keyword", "no_action_word", "excluded_word:movie", "too_long", "too_short",
                   "duplicate"):
        assert spec.expect_search_drop(reason) in expects
    assert {spec.EXPECT_SEGMENT_TOO_SHORT, spec.EXPECT_SEGMENT_FAILED, spec.EXPECT_DOWNLOAD_FAILED} <= expects
    assert not {e.fault for e in spec.plan_corpus(faults=False).entries} - {""}


def kinds_by_label_set(plan: spec.CorpusPlan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"train": set(), "holdout": set()}
    for v in plan.videos:
        if v.label is not None:
            out[v.label_set].add(v.kind)
    return out


def test_full_plan_label_files_load_with_the_classifier_loader(tmp_path):
    """The label files of the default corpus, as shipped, through the classifier's own loader: every row
    valid, every id a catalog row that is expected to reach the classifier, scores as planned, train and
    holdout disjoint by video, and both sets holding clean gameplay and every junk kind."""
    plan = spec.plan_corpus()
    paths = catalog.write_labels(tmp_path, plan)
    assert {p.name for p in paths.values()} == {"labels.csv", "labels_holdout.csv"}
    reaching = {e.video_id for e in plan.entries if e.expect == spec.EXPECT_CLIPS}
    loaded = {name: load_labels(path, known_ids={"video": reaching, "clip": ()}) for name, path in paths.items()}
    ids = {name: {item_id for _, item_id in ls.items} for name, ls in loaded.items()}
    assert not ids["train"] & ids["holdout"]
    labelled = {v.video_id: v for v in plan.videos if v.label is not None}
    assert ids["train"] | ids["holdout"] == set(labelled)
    for name, label_set in loaded.items():
        assert not label_set.notes  # one labeller, one row per video: nothing to resolve
        for (kind, item_id), resolved in label_set.items.items():
            assert kind == "video" and resolved.score == labelled[item_id].label
            assert labelled[item_id].label_set == name
    kinds = {name: {labelled[i].kind for i in found} for name, found in ids.items()}
    for name in ("train", "holdout"):
        assert {spec.CLEAN, *spec.JUNK_KINDS} <= kinds[name], (name, kinds[name])
    assert set(spec.MIXED_KINDS) <= kinds["train"]
    assert len(ids["train"]) > len(ids["holdout"]) > 0  # about a third held out


@pytest.mark.parametrize("scale", [0.01, 0.3, 0.5, 1.0, 2.5])
def test_every_scale_keeps_every_kind_in_both_label_sets(scale):
    """At any scale each clean/junk kind has >= 2 videos and one in each label set (at 0.3 the every-third
    split alone left 5 junk kinds out of the holdout and 2 out of training)."""
    plan = spec.plan_corpus(scale=scale)
    kinds = kinds_by_label_set(plan)
    for name in ("train", "holdout"):
        assert set(spec.SPLIT_KINDS) <= kinds[name], (scale, name, set(spec.SPLIT_KINDS) - kinds[name])
    counts = {k: sum(v.kind == k for v in plan.videos) for k in spec.SPLIT_KINDS}
    assert counts[spec.CLEAN] == max(2, round(spec.BASE_CLEAN * scale))
    assert all(counts[k] == max(2, round(spec.BASE_PER_JUNK_KIND * scale)) for k in spec.JUNK_KINDS)
    assert len({v.video_id for v in plan.videos}) == len(plan.videos)


def test_scale_multiplies_videos_and_is_validated():
    assert cli.parse_args(["out", "--scale", "0.3"]).scale == 0.3
    with pytest.raises(SystemExit):
        cli.parse_args(["out", "--scale", "0"])
    with pytest.raises(ValueError, match="scale must be > 0"):
        spec.plan_corpus(scale=-1)
    one, two = spec.plan_corpus(scale=1), spec.plan_corpus(scale=2)
    labelled = [sum(v.label is not None for v in p.videos) for p in (one, two)]
    assert labelled == [12 + 7 * 3 + 3 * 2, 24 + 7 * 6 + 3 * 4]
    assert kinds_by_label_set(two)["holdout"] >= set(spec.MIXED_KINDS)  # enough mixed videos to hold some out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    plan = spec.plan_corpus()
    ids = [plan.videos[0].video_id, next(v.video_id for v in plan.videos if v.kind == "black_fade")]
    sub = plan.subset(ids, max_duration_s=3.0)
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    build.build_corpus(sub, a, jobs=1)
    build.build_corpus(sub, b, jobs=2)
    return sub, a, b


def test_build_is_byte_identical(tiny):
    _, a, b = tiny
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_sidecar_matches_decoded_frames(tiny):
    sub, a, _ = tiny
    for v in sub.videos:
        manifest = next(m for m in json.loads((a / "corpus.json").read_text())["videos"] if m["id"] == v.video_id)
        side = json.loads((a / manifest["actions"]).read_text())
        reader = decord.VideoReader(str(a / manifest["file"]))
        assert side["num_steps"] * side["frames_per_step"] == len(reader)
        assert len(side["actions"]) == side["num_steps"] == v.num_steps
        assert all(-1 <= x < side["num_actions"] for x in side["actions"])
        assert reader[0].shape == (spec.HEIGHT, spec.WIDTH, 3) and reader.get_avg_fps() == spec.VIDEO_FPS
        if v.kind == "black_fade":  # black steps have no game action
            assert -1 in side["actions"]


def test_catalog_and_labels_parse(tiny):
    _, a, _ = tiny
    rows = [json.loads(line) for line in (a / "catalog.jsonl").read_text().splitlines()]
    ids = {r["id"] for r in rows}
    for r in rows:
        CandidateVideo(video_id=r["id"], source="catalog", url=r["url"], title=r["title"],
                       duration_s=r.get("duration_s"))
        assert not r["url"].startswith("/")
    for name in ("labels.csv", "labels_holdout.csv"):
        for row in csv.DictReader((a / name).open()):
            label = HandLabel.from_row({**row, "score": int(row["score"])})
            assert label.item_id in ids


def test_action_names_match_procgen():
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=1, env_name="coinrun")
    assert tuple("+".join(c) or "NOOP" for c in env.combos) == games.ACTION_NAMES


def test_catalog_titles_trip_exactly_the_planned_keyword_rules():
    """The real keyword rules (pipeline/data/platformers.yaml) read the titles and descriptions the corpus
    writes: each row planned to be dropped by a rule is dropped by that rule, and every other row passes."""
    from pipeline.keywords import load_rules
    from pipeline.tools.demo_corpus.catalog import catalog_rows

    rules, plan = load_rules(), spec.plan_corpus()
    seen = set()
    for entry, row in zip(plan.entries, catalog_rows(plan), strict=True):
        candidate = CandidateVideo(video_id=row["id"], source="catalog", url=row["url"], title=row["title"],
                                   description=row["description"], duration_s=row.get("duration_s"))
        verdict = rules.check(candidate)
        planned = next((r for r in ("no_game_keyword", "no_action_word", "excluded_word:movie", "too_long",
                                    "too_short") if entry.expect == spec.expect_search_drop(r)), None)
        assert (verdict and verdict[0]) == planned, (row["title"], verdict)
        seen.add(planned)
    assert len(seen) == 6  # five rules and None (the rows that pass)
