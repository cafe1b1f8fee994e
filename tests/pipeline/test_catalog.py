"""Catalog source: JSONL/CSV/Parquet rows, relative paths, extra fields, and bad rows that do not stop a file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.sources import CatalogSource
from schemas import CandidateVideo, Outcome, reasons

GOOD = [
    {"id": "a", "url": "videos/a.mp4", "title": "CoinRun speedrun", "duration_s": 30.5, "channel": "c",
     "actions": "actions/a.json", "game": "coinrun"},
    {"id": "b", "url": "https://example.com/b.mp4", "title": "Celeste gameplay", "description": "d"},
]


def read(path: Path) -> list[CandidateVideo | Outcome]:
    source = CatalogSource([str(path)])
    return [item for task in source.tasks() for item in source.read(task)]


def split(items):
    return ([i for i in items if isinstance(i, CandidateVideo)], [i for i in items if isinstance(i, Outcome)])


def check_good(candidates: list[CandidateVideo], root: Path) -> None:
    a, b = candidates
    assert a.video_id == "a" and a.source == "catalog"
    assert a.url == (root / "videos" / "a.mp4").resolve().as_uri()  # relative -> absolute file:// URL
    assert a.actions_url == str((root / "actions" / "a.json").resolve())  # relative -> absolute path
    assert a.duration_s == 30.5 and a.channel == "c"
    assert a.extra == {"game": "coinrun"}  # unknown fields kept verbatim
    assert b.url == "https://example.com/b.mp4" and b.duration_s is None and b.description == "d"


def test_jsonl_rows_and_bad_lines(tmp_path):
    lines = [
        json.dumps(GOOD[0]),
        "{not json",
        "",  # blank lines are skipped, but still counted
        json.dumps({"id": "x", "title": "no url"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "n", "url": "n.mp4", "duration_s": -3}),
        json.dumps({"id": "t", "url": "t.mp4", "title": 5}),
        json.dumps({"id": "", "url": "e.mp4"}),
        json.dumps({"id": "d", "url": "d.mp4", "duration_s": "long"}),
        json.dumps(GOOD[1]),
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe broken utf-8\n")
    candidates, failures = split(read(path))
    check_good(candidates, tmp_path)
    assert [o.item_id for o in failures] == [f"catalog.jsonl:line{n}" for n in (2, 4, 5, 6, 7, 8, 9, 11)]
    assert all(o.reason == reasons.BAD_CATALOG_ROW and o.outcome == reasons.FAILED for o in failures)
    assert all(o.stage == reasons.STAGE_SEARCH and o.item_kind == reasons.ITEM_VIDEO for o in failures)
    details = [o.detail for o in failures]
    assert "not valid JSON" in details[0] and "'url'" in details[1] and "duration_s" in details[3]
    assert "'title' must be a string" in details[4] and "UTF-8" in details[7]


def test_aliases_from_an_exported_crawl(tmp_path):
    path = tmp_path / "crawl.jsonl"
    row = {"video_id": "yt1", "url": "https://www.youtube.com/watch?v=yt1", "duration": 100,
           "actions_url": "/abs/a.json", "extra": {"view_count": 7}, "query": "mario speedrun"}
    path.write_text(json.dumps(row) + "\n")
    (c,) = read(path)
    assert (c.video_id, c.duration_s, c.actions_url, c.query) == ("yt1", 100.0, "/abs/a.json", "mario speedrun")
    assert c.extra == {"view_count": 7}


def test_csv_rows_and_bad_lines(tmp_path):
    path = tmp_path / "catalog.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "url", "title", "description", "duration_s", "channel", "actions", "game"])
        writer.writerow(["a", "videos/a.mp4", "CoinRun speedrun", "", "30.5", "c", "actions/a.json", "coinrun"])
        writer.writerow(["q", "q.mp4", "two\nlines", "", "abc", "", "", ""])  # bad duration, quoted newline
        writer.writerow(["z", "z.mp4", "t", "", "", "", "", "", "surplus"])  # more cells than columns
        writer.writerow(["b", "https://example.com/b.mp4", "Celeste gameplay", "d", "", "", "", ""])
    candidates, failures = split(read(path))
    candidates[1] = candidates[1].replace(extra={k: v for k, v in candidates[1].extra.items() if v})
    check_good(candidates, tmp_path)
    assert [o.item_id for o in failures] == ["catalog.csv:line4", "catalog.csv:line5"]  # physical line numbers
    assert "surplus" not in failures[1].detail and "beyond the header" in failures[1].detail


def test_parquet_rows(tmp_path):
    path = tmp_path / "catalog.parquet"
    rows = [{**GOOD[0], "description": ""}, {**GOOD[1], "actions": None, "channel": None, "duration_s": None, "game": None},
            {"id": None, "url": "x.mp4", "title": "t", "description": None, "duration_s": None, "channel": None,
             "actions": None, "game": None}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    candidates, failures = split(read(path))
    candidates[1] = candidates[1].replace(extra={})
    check_good(candidates, tmp_path)
    assert [o.item_id for o in failures] == ["catalog.parquet:row3"]


@pytest.mark.parametrize("name", ["missing.jsonl", "catalog.xml"])
def test_unreadable_catalog_is_one_recorded_failure(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".xml"):
        path.write_text("<x/>")
    (outcome,) = read(path)
    assert isinstance(outcome, Outcome)
    assert outcome.reason == reasons.SEARCH_ERROR and outcome.item_id == name and name in outcome.detail


def test_hostile_ids_and_titles_survive_verbatim(tmp_path):
    path = tmp_path / "c.jsonl"
    hostile = {"id": "../../etc/passwd\u0000.mp4", "url": "v.mp4", "title": "<script>\u202e mario speedrun"}
    path.write_text(json.dumps(hostile) + "\n")
    (c,) = read(path)
    assert c.video_id == hostile["id"] and c.title == hostile["title"]  # kept verbatim; keys come from ids
    assert "/" not in c.video_key and "." not in c.video_key


def test_lone_surrogates_are_bad_rows_and_the_file_goes_on(tmp_path):
    """JSON's "\\ud800" escape decodes to a str no UTF-8 writer takes; it must stop at its row, with its line."""
    lines = [
        '{"id": "a\\ud800", "url": "a.mp4"}',  # in the id
        '{"id": "t", "url": "t.mp4", "title": "mario \\udfff speedrun"}',  # in the title
        '{"id": "d", "url": "d.mp4", "description": "\\udc80"}',  # in the description
        '{"id": "u", "url": "u\\ud800.mp4"}',  # in a path that is resolved (os.fsencode would raise)
        '{"id": "s", "url": "s.mp4", "actions": "s\\ud800.json"}',
        '{"id": "x", "url": "x.mp4", "game": {"name": "\\ud800"}}',  # nested in an extra field
        '{"id": "ok", "url": "ok.mp4", "title": "\\ud83c\\udfae fine: a surrogate *pair* is one character"}',
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")  # the escapes are plain ASCII on disk
    candidates, failures = split(read(path))
    assert [c.video_id for c in candidates] == ["ok"] and candidates[0].title.startswith("\U0001f3ae")
    assert [o.item_id for o in failures] == [f"catalog.jsonl:line{n}" for n in range(1, 7)]
    assert all(o.reason == reasons.BAD_CATALOG_ROW for o in failures)
    for failure, field in zip(failures, ["id", "title", "description", "url", "actions", "extra"], strict=True):
        assert field in failure.detail and "UTF-8" in failure.detail, failure.detail
        failure.to_json().encode("utf-8")  # the failure itself is recordable


def test_csv_rows_that_are_not_utf8_are_bad_rows(tmp_path):
    """Not replaced with U+FFFD (a silently different title or id): refused with the row's line number."""
    path = tmp_path / "catalog.csv"
    path.write_bytes(b"id,url,title\n"
                     b"a,a.mp4,CoinRun speedrun\n"
                     b"b,b.mp4,Caf\xe9 speedrun\n"  # Latin-1, not UTF-8
                     b"c\xff,c.mp4,t\n"  # in the id
                     b'q,q.mp4,"two\nlines \xc3"\n'  # a truncated sequence in a quoted multi-line cell
                     b"z,z.mp4,Caf\xc3\xa9 speedrun\n")  # valid UTF-8
    candidates, failures = split(read(path))
    assert [c.video_id for c in candidates] == ["a", "z"] and candidates[1].title == "Café speedrun"
    assert [o.item_id for o in failures] == ["catalog.csv:line3", "catalog.csv:line4", "catalog.csv:line6"]
    assert all(o.reason == reasons.BAD_CATALOG_ROW and "not valid UTF-8" in o.detail for o in failures)
    assert "0xe9" in failures[0].detail and "'title'" in failures[0].detail and "'id'" in failures[1].detail


def test_csv_header_that_is_not_utf8_fails_the_file(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_bytes(b"id,url,ti\xfftle\na,a.mp4,t\n")
    (outcome,) = read(path)
    assert outcome.reason == reasons.SEARCH_ERROR and "header" in outcome.detail and "UTF-8" in outcome.detail
