"""``stats.json``'s contract (schemas.stats): one writer and one reader that agree, and a version check that
refuses what another release wrote."""

from __future__ import annotations

import dataclasses
import json

import pytest

from schemas import RecordError
from schemas.stats import (
    ClipCounts,
    Conservation,
    Deferred,
    FailureExample,
    Flow,
    FunnelRow,
    Histogram,
    Histograms,
    Hours,
    QualitySettings,
    QualityStats,
    ReasonKey,
    SearchFailures,
    SiteCost,
    Stats,
    TableParts,
    ThumbnailPick,
    VideoCounts,
)


def example() -> Stats:
    """Every part of the contract filled, the sparse ones both present and absent."""
    return Stats(
        videos=VideoCounts(candidates=4, kept=1, dropped=2, failed=1),
        search_failures=SearchFailures(count=1, by_reason={"bad_catalog_row": 1}),
        clips=ClipCounts(cut=4, kept=2, dropped=2),
        hours=Hours(candidate_video=1.019444, kept_clips=0.008889),
        shards=1,
        funnel=[FunnelRow("search", {"video:dropped:no_game_keyword": 1}, video=Flow(4, 3, 1.2, 1.1),
                          search_failures=1),
                FunnelRow("segment", {"clip:dropped:short_tail": 1}, video=Flow(2, 1, 0.5, 0.25),
                          clip=Flow(4, 3, 0.017778, 0.013333)),
                FunnelRow("shard", {}, clip=Flow(2, 2, 0.008889, 0.008889))],
        quality=QualityStats(QualitySettings("models/q1", 0.5, "clip", 0.0), clips_in=3, clips_scored=3,
                             clips_unscored=0, clips_failed=0, clips_dropped_low_quality=1),
        reason_counts={"clip:segment:dropped:short_tail": 1, "video:download:failed:http_404": 1},
        histograms=Histograms(video_minutes=Histogram([0.1, 1.0, 10.0], {"kept": [0, 1], "dropped/failed": [2, 0]}),
                              quality_score=Histogram([0.0, 0.5, 1.0], {"kept": [0, 2], "dropped": [1, 0]})),
        failure_examples={"video:download:http_404": [FailureExample("video", "v2", "download", "http_404", "gone")]},
        thumbnails={"kept": [ThumbnailPick("c0", 0.9), ThumbnailPick("c1", None)]},
        conservation=Conservation(ok=True, num_violations=0, violations=[]),
        sites={"youtube": SiteCost(job_qps=4.0, requests=10, waited_s=1.5, paused_s=0.0, deferred=0),
               "(other hosts)": SiteCost(job_qps=None, requests=3)},
        deferred=Deferred(videos=0, search_queries=0),
        tables={"outcomes": TableParts(parts=1, rows=9), "manifest": TableParts(parts=1, rows=2)},
    )


def test_what_is_written_reads_back_equal_and_rewrites_the_same_bytes():
    stats = example()
    data = stats.to_json()
    assert Stats.from_json(data) == stats
    assert Stats.from_json(data).to_json() == data
    unknown = dataclasses.replace(stats, tables=None, conservation=Conservation(None, None, [], note="no stats.json"))
    assert Stats.from_json(unknown.to_json()) == unknown


def test_the_file_is_the_audits_layout():
    """Sorted keys, two-space indent, a final newline, the version inside; sparse parts left out when empty."""
    data = example().to_json()
    assert data.endswith(b"}\n") and data.startswith(b'{\n  "clips": {\n    "cut": 4,')
    doc = json.loads(data)
    assert doc["schema_version"] == "1.0"
    assert doc["clips"] == {"cut": 4, "dropped": 2, "kept": 2}  # no "failed": none failed
    assert doc["funnel"][0] == {"stage": "search", "videos_in": 4, "videos_out": 3, "video_hours_in": 1.2,
                                "video_hours_out": 1.1, "reasons": {"video:dropped:no_game_keyword": 1},
                                "search_failures": 1}
    assert "clips_in" not in doc["funnel"][0] and "videos_in" not in doc["funnel"][2]
    assert doc["quality"] == {"classifier": "models/q1", "threshold": 0.5, "rule": "clip", "margin": 0.0,
                              "clips_in": 3, "clips_scored": 3, "clips_unscored": 0, "clips_failed": 0,
                              "clips_dropped_low_quality": 1}
    assert doc["histograms"]["quality_score"] == {"edges": [0.0, 0.5, 1.0], "kept": [0, 2], "dropped": [1, 0]}
    assert doc["conservation"] == {"ok": True, "num_violations": 0, "violations": []}  # no "note"
    assert "tables" not in json.loads(dataclasses.replace(example(), tables=None).to_json())


def test_reason_keys_parse_into_their_parts():
    stats = example()
    assert stats.reasons_by_key()[1] == (ReasonKey("video", "download", "failed", "http_404"), 1)
    assert ReasonKey.parse("video:search:dropped:excluded_word").text() == "video:search:dropped:excluded_word"


@pytest.mark.parametrize("version", ["2.0", "0.9", "10"])
def test_another_major_version_is_refused_in_one_line(version):
    doc = json.loads(example().to_json())
    doc["schema_version"] = version
    with pytest.raises(RecordError) as info:
        Stats.from_json(json.dumps(doc))
    message = str(info.value)
    assert message.startswith(f"stats.json: written with schema version {version}, this code reads major version 1")
    assert "\n" not in message


def test_a_newer_minor_version_is_read_and_its_additions_ignored():
    doc = json.loads(example().to_json())
    doc["schema_version"] = "1.7"
    doc["added_later"] = {"x": 1}
    assert Stats.from_json(json.dumps(doc)) == example()


def test_a_file_without_a_version_or_a_part_is_refused_naming_what_is_missing():
    doc = json.loads(example().to_json())
    with pytest.raises(RecordError, match="^stats.json: no schema_version"):
        Stats.from_json(json.dumps({k: v for k, v in doc.items() if k != "schema_version"}))
    with pytest.raises(RecordError, match="^stats.json: the file has no 'funnel'$"):
        Stats.from_json(json.dumps({k: v for k, v in doc.items() if k != "funnel"}))
    with pytest.raises(RecordError, match="^stats.json: not valid JSON"):
        Stats.from_json(b"{")
