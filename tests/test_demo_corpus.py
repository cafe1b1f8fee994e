"""Demo corpus: plan coverage (no rendering), and a tiny real build (Procgen + x264) checked with decord."""

from __future__ import annotations

import csv
import json

import decord
import pytest

from pipeline.demo_corpus import build, games, spec
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
    from pipeline.demo_corpus.catalog import catalog_rows
    from pipeline.keywords import load_rules

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
