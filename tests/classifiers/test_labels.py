"""Label files: every problem reported at once with its line number; the documented conflict rule."""

from __future__ import annotations

import re

import pytest

from classifiers.labels import LabelFileError, LabelPolicy, load_labels, parse_labels, write_labels_csv
from schemas import HandLabel

KNOWN = {"vidA", "vidB", "vidC", "vidD", "vidE", "vidF", "vidA_s000000000"}


def problems_by_line(err: LabelFileError) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for line, msg in err.problems:
        out.setdefault(line, []).append(msg)
    return out


def test_valid_csv_resolves_disagreement_to_lower_median(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "item_id,item_kind,score,labeller,note\n"
        "vidA,video,5,ann,clean\n"
        "vidA,video,4,bob,\n"  # two labellers 4 and 5: median 4.5 rounds down to 4
        "vidB,video,1,ann,\"face cam, menus\"\n"
        "vidC,video,5,ann,\n"
        "vidC,video,5,bob,\n"
        "vidC,video,4,cat,\n"  # 4,5,5: median 5
        "vidA_s000000000,clip,1,ann,black\n")
    labels = load_labels(path, KNOWN)
    assert labels.score_for("video", "vidA") == 4
    assert labels.score_for("video", "vidB") == 1
    assert labels.score_for("video", "vidC") == 5
    assert labels.items[("video", "vidB")].labels[0].note == "face cam, menus"
    # a clip's own label wins over its video's
    assert labels.clip_score("vidA_s000000000", "vidA") == 1
    assert labels.clip_score("vidA_s000016000", "vidA") == 4
    assert any("lower median" in n for n in labels.notes)
    assert len(labels.sha256) == 64


def test_broken_csv_lists_every_problem_with_line_numbers(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(
        "item_id,item_kind,score,labeller,note\n"  # 1
        "vidA,video,5,ann,\n"  # 2 ok
        "vidB,video,six,ann,\n"  # 3 score not a number
        "vidC,video,7,ann,\n"  # 4 out of range
        "vidD,video,2.5,ann,\n"  # 5 not an integer
        "nosuchvideo,video,5,ann,\n"  # 6 unknown id
        "vidE,video,5,ann,\n"  # 7
        "vidE,video,1,ann,\n"  # 8 same labeller, different score: conflict
        "vidF,video,5,ann,\n"  # 9
        "vidF,video,5,ann,\n"  # 10 duplicate row
        "vidA,video,1,bob,\n"  # 11 ann 5 vs bob 1: more than 2 apart -> conflict (reported at line 2)
        "vidB,video,5,ann,too,many\n"  # 12 wrong number of fields
        "vidC,film,5,ann,\n"  # 13 bad item kind
        "vidD,video,\x00,ann,\n")  # 14 unreadable CSV line (NUL)
    with pytest.raises(LabelFileError) as info:
        load_labels(path, KNOWN)
    err = info.value
    by_line = problems_by_line(err)
    assert set(by_line) == {2, 3, 4, 5, 6, 8, 10, 12, 13, 14}, err
    assert "six" in by_line[3][0]
    assert "out of range" in by_line[4][0]
    assert "2.5" in by_line[5][0]
    assert "unknown" in by_line[6][0] and "nosuchvideo" in by_line[6][0]
    assert "conflicting" in by_line[8][0] and "line 7" in by_line[8][0]
    assert "duplicate" in by_line[10][0] and "line 9" in by_line[10][0]
    assert "conflicting" in by_line[2][0] and "line 11" in by_line[2][0]
    assert "expected 5 fields" in by_line[12][0]
    assert "item_kind" in by_line[13][0]
    # one message names them all, each with its line number
    text = str(err)
    assert len(re.findall(r"^  line \d+: ", text, flags=re.M)) == len(err.problems) == 10


def test_wrong_columns_is_one_clear_problem(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("video,rating,who\nvidA,5,ann\n")
    with pytest.raises(LabelFileError) as info:
        load_labels(path)
    (line, msg), = info.value.problems
    assert line == 1
    assert "missing column(s) ['item_id', 'score']" in msg and "unknown column(s)" in msg


def test_jsonl_problems_and_unknown_ids_allowed(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"item_id": "vidA", "score": 5}\n'
                    "not json\n"
                    '["a list"]\n'
                    '{"item_id": "vidB", "score": 1, "colour": "red"}\n'
                    '{"item_id": "vidC", "score": true}\n')
    with pytest.raises(LabelFileError) as info:
        load_labels(path, KNOWN)
    assert sorted(line for line, _ in info.value.problems) == [2, 3, 4, 5]
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"item_id": "vidA", "score": 5}\n{"item_id": "gone", "score": 1}\n')
    labels = load_labels(ok, KNOWN, allow_unknown=True)
    assert labels.score_for("video", "vidA") == 5 and len(labels) == 1
    assert any("gone" in n for n in labels.notes)


def test_policy_maps_scores_to_targets():
    paper = LabelPolicy()
    assert [paper.target(s) for s in range(1, 6)] == [0, None, None, None, 1]
    loose = LabelPolicy.parse("4,5", "1,2")
    assert [loose.target(s) for s in range(1, 6)] == [0, 0, None, 1, 1]
    with pytest.raises(ValueError):
        LabelPolicy.parse("3,5", "3")
    strict = LabelPolicy(max_disagreement=0)
    with pytest.raises(LabelFileError):
        parse_labels("item_id,score,labeller\nvidA,5,ann\nvidA,4,bob\n", policy=strict)


def test_write_then_load_round_trip(tmp_path):
    rows = [HandLabel("vidA", 5, "video", "ann", 'note, with "quotes"'), HandLabel("vidA_s000000000", 1, "clip", "ann")]
    write_labels_csv(rows, tmp_path / "out.csv")
    labels = load_labels(tmp_path / "out.csv", KNOWN)
    assert labels.items[("video", "vidA")].labels[0] == rows[0]
    assert labels.score_for("clip", "vidA_s000000000") == 1


KNOWN_BY_KIND = {"video": {"vidA", "vidB"}, "clip": {"vidA_s000000000", "vidB_s000016000"}}


def test_ids_are_checked_against_their_own_kind(tmp_path):
    """A clip label naming a video (or the reverse) would label nothing: an error naming the right kind."""
    path = tmp_path / "labels.csv"
    path.write_text("item_id,item_kind,score\n"
                    "vidA,video,5\n"  # 2 ok
                    "vidA_s000000000,video,1\n"  # 3 a clip key labelled as a video
                    "vidB,clip,1\n"  # 4 a video id labelled as a clip
                    "vidB_s000016000,clip,5\n"  # 5 ok
                    "ghost,clip,1\n")  # 6 unknown
    with pytest.raises(LabelFileError) as info:
        load_labels(path, KNOWN_BY_KIND)
    by_line = problems_by_line(info.value)
    assert set(by_line) == {3, 4, 6}, info.value
    assert "'vidA_s000000000', which is a clip id" in by_line[3][0] and "item_kind to clip" in by_line[3][0]
    assert "'vidB', which is a video id" in by_line[4][0] and "item_kind to video" in by_line[4][0]
    assert "unknown clip id 'ghost'" in by_line[6][0]
    # --allow-unknown skips ids absent from the clips, but a wrong kind is a mistake in the file, not absence
    with pytest.raises(LabelFileError) as info:
        load_labels(path, KNOWN_BY_KIND, allow_unknown=True)
    assert set(problems_by_line(info.value)) == {3, 4}
    # a flat id collection (both kinds mixed) still works, without the kind check
    assert len(load_labels(path, KNOWN_BY_KIND["video"] | KNOWN_BY_KIND["clip"], allow_unknown=True)) == 4


def test_file_checked_alone_then_ids_with_line_numbers(tmp_path):
    """What ``load_labelled_clips`` does: the file's own problems need no clips; ids are checked after."""
    path = tmp_path / "labels.csv"
    path.write_text("item_id,item_kind,score\n"
                    "vidA,video,5\n"
                    "gone,video,1\n"  # 3
                    "gone,video,1\n"  # 4 (a second labeller-less row for the same id: duplicate)
                    "vidB,clip,2\n")  # 5
    with pytest.raises(LabelFileError) as info:
        load_labels(path)  # no ids given: only the file's problems
    assert problems_by_line(info.value).keys() == {4}
    path.write_text("item_id,item_kind,score\nvidA,video,5\ngone,video,1\nvidB,clip,2\nvidA_s000000000,clip,1\n")
    labels = load_labels(path)
    assert len(labels) == 4
    with pytest.raises(LabelFileError) as info:
        labels.check_ids(KNOWN_BY_KIND)
    by_line = problems_by_line(info.value)
    assert set(by_line) == {3, 4} and "unknown video id 'gone'" in by_line[3][0] and "video id" in by_line[4][0]
    assert str(path) in str(info.value)
    path.write_text("item_id,item_kind,score\nvidA,video,5\ngone,video,1\nvidA_s000000000,clip,1\n")
    kept = load_labels(path).check_ids(KNOWN_BY_KIND, allow_unknown=True)
    assert len(kept) == 2 and kept.score_for("video", "gone") is None
    assert any("line 3" in n and "gone" in n for n in kept.notes)
