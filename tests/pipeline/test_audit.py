"""Audit: the conservation law catches every kind of loss, the funnel adds up, the report is self-contained."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import socket

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.audit import aggregates, report
from pipeline.audit.aggregates import Registration
from pipeline.runtime import progress
from schemas import CandidateVideo, Clip, Outcome, clip_codec, reasons
from schemas.stats import (
    ClipCounts,
    Conservation,
    Flow,
    QualitySettings,
    QualityStats,
    SearchFailures,
    Stats,
    TableParts,
    VideoCounts,
)

SEARCH, DOWNLOAD, SEGMENT, QUALITY, SHARD = reasons.STAGES


def video_outcome(vid, stage, outcome, reason="", duration_s=3600.0):
    return Outcome(item_id=vid, item_kind="video", stage=stage, outcome=outcome, reason=reason, video_id=vid,
                   duration_s=duration_s)


def clip_outcome(key, stage, outcome, reason="", score=None):
    return Outcome(item_id=key, item_kind="clip", stage=stage, outcome=outcome, reason=reason, video_id="v1",
                   duration_s=16.0, quality_score=score)


def small_run():
    """4 candidates: one dropped at search, one failed at download, one too short, one cut into 3 clips + tail;
    and an unreadable catalog row (a search failure: an item of the law, not a video)."""
    births = [Registration("video", "cat.jsonl:line5", SEARCH, True, search_failure=True),
              Registration("video", "v0", SEARCH, True), Registration("video", "v1", DOWNLOAD, True),
              Registration("video", "v2", DOWNLOAD, True), Registration("video", "v3", DOWNLOAD, True),
              Registration("video", "v1", SEGMENT, False), Registration("video", "v3", SEGMENT, False)]
    births += [Registration("clip", f"c{i}", QUALITY, True) for i in range(3)]
    births += [Registration("clip", "tail", SEGMENT, True)]
    births += [Registration("clip", f"c{i}", SHARD, False) for i in (0, 1)]
    outcomes = [video_outcome("cat.jsonl:line5", SEARCH, "failed", reasons.BAD_CATALOG_ROW, duration_s=None),
                video_outcome("v0", SEARCH, "dropped", reasons.NO_GAME_KEYWORD),
                video_outcome("v2", DOWNLOAD, "failed", reasons.HTTP_404),
                video_outcome("v3", SEGMENT, "dropped", reasons.TOO_SHORT, 10.0),
                video_outcome("v1", SEGMENT, "kept", duration_s=60.0),
                clip_outcome("tail", SEGMENT, "dropped", reasons.SHORT_TAIL),
                clip_outcome("c2", QUALITY, "dropped", reasons.LOW_QUALITY, 0.1),
                clip_outcome("c0", SHARD, "kept", score=0.9), clip_outcome("c1", SHARD, "kept", score=0.7)]
    return births, outcomes


def test_a_complete_run_satisfies_the_law_and_the_funnel_adds_up():
    births, outcomes = small_run()
    stats = aggregates.compute_stats(outcomes, births, num_shards=1)
    assert stats.conservation == Conservation(ok=True, num_violations=0, violations=[])
    assert stats.videos == VideoCounts(candidates=4, dropped=2, failed=1, kept=1)  # the bad row is no video
    assert stats.search_failures == SearchFailures(count=1, by_reason={"bad_catalog_row": 1})
    assert stats.clips == ClipCounts(cut=4, dropped=2, kept=2)
    funnel = {row.stage: row for row in stats.funnel}
    assert (funnel[SEARCH].video.items_in, funnel[SEARCH].video.items_out) == (4, 3)
    assert funnel[SEARCH].search_failures == 1 and funnel[DOWNLOAD].search_failures is None
    assert (funnel[DOWNLOAD].video.items_in, funnel[DOWNLOAD].video.items_out) == (3, 2)
    assert (funnel[SEGMENT].video.items_in, funnel[SEGMENT].video.items_out) == (2, 1)
    assert (funnel[SEGMENT].clip.items_in, funnel[SEGMENT].clip.items_out) == (4, 3)
    assert (funnel[QUALITY].clip.items_in, funnel[QUALITY].clip.items_out) == (3, 2)
    assert funnel[SHARD].clip == Flow(2, 2, round(32 / 3600, 6), round(32 / 3600, 6)) and funnel[SHARD].video is None
    assert funnel[SEGMENT].video.hours_in == round(70 / 3600, 6)
    assert funnel[QUALITY].reasons == {"clip:dropped:low_quality": 1}
    assert stats.reason_counts["video:download:failed:http_404"] == 1
    assert stats.reason_counts["video:search:failed:bad_catalog_row"] == 1  # as outcomes.parquet records it


def test_a_search_failure_without_its_outcome_is_still_a_violation():
    births, outcomes = small_run()
    lost = [o for o in outcomes if o.reason != reasons.BAD_CATALOG_ROW]
    assert aggregates.conservation_violations(births, lost) == [
        "video 'cat.jsonl:line5': reached stage 'search' and no stage gave it an outcome"]


def test_quality_block_says_what_the_stage_did_with_and_without_a_classifier():
    births, outcomes = small_run()
    settings = QualitySettings(classifier="models/q1", threshold=0.5, rule="clip", margin=0.0)
    scored = aggregates.compute_stats(outcomes, births, 1, settings).quality
    assert scored == QualityStats(settings, clips_in=3, clips_scored=3, clips_unscored=0, clips_failed=0,
                                  clips_dropped_low_quality=1)
    unscored = [o for o in outcomes if o.reason != reasons.LOW_QUALITY] + [
        clip_outcome("c3", QUALITY, "failed", reasons.QUALITY_ERROR)]
    unscored = [Outcome(**{**o.to_dict(), "quality_score": None}) for o in unscored]
    q = aggregates.quality_stats(aggregates.outcome_aggregates(unscored))
    assert (q.settings, q.clips_in, q.clips_scored, q.clips_unscored, q.clips_failed,
            q.clips_dropped_low_quality) == (QualitySettings(), 3, 0, 2, 1, 0)


def test_outcomes_sort_on_every_field():
    a = clip_outcome("c0", SHARD, "failed", reasons.SHARD_ERROR)
    twins = [a, Outcome(**{**a.to_dict(), "detail": "b"}), Outcome(**{**a.to_dict(), "detail": "a"}),
             Outcome(**{**a.to_dict(), "detail": "a", "quality_score": 0.5})]
    orders = set()
    for seed in range(6):
        shuffled = twins[:]
        random.Random(seed).shuffle(shuffled)
        orders.add(tuple(sorted(shuffled, key=aggregates.outcome_sort_key)))
    assert len(orders) == 1
    assert [(o.detail, o.quality_score) for o in orders.pop()] == [("", None), ("a", None), ("a", 0.5), ("b", None)]


def test_outcome_counters_and_the_jobs_progress_tally_per_stage(tmp_path):
    """Beam counters ``outcomes/<stage>`` per stage, and the progress tally the launcher sums (one file per
    process in the progress directory, written by the end of each bundle at the latest)."""
    _, outcomes = small_run()
    p = beam.Pipeline(runner=FnApiRunner())
    for stage in (SEARCH, SEGMENT, SHARD):
        mine = [o for o in outcomes if o.stage == stage]
        _ = (p | f"Create{stage}" >> beam.Create(mine, reshuffle=False)
             | f"Count{stage}" >> beam.ParDo(aggregates.CountOutcomes(stage, str(tmp_path))))
    result = p.run()
    result.wait_until_finish()
    counters = {f"{r.key.metric.namespace}/{r.key.metric.name}": r.committed
                for r in result.metrics().query(MetricsFilter())["counters"]
                if r.key.metric.namespace.startswith("outcomes/")}
    assert counters == {"outcomes/search/videos_dropped": 1, "outcomes/search/videos_dropped/no_game_keyword": 1,
                        "outcomes/search/videos_failed": 1, "outcomes/search/videos_failed/bad_catalog_row": 1,
                        "outcomes/segment/videos_dropped": 1, "outcomes/segment/videos_dropped/too_short": 1,
                        "outcomes/segment/videos_kept": 1, "outcomes/segment/clips_dropped": 1,
                        "outcomes/segment/clips_dropped/short_tail": 1, "outcomes/shard/clips_kept": 2}
    assert [p.name for p in tmp_path.iterdir()] == [f"{socket.gethostname()}-{os.getpid()}.json"]
    assert progress.read_totals(str(tmp_path)) == {
        "out/search/video/dropped": 1, "out/search/video/failed": 1, "out/segment/video/dropped": 1,
        "out/segment/video/kept": 1, "out/segment/clip/dropped": 1, "out/shard/clip/kept": 2}


def test_every_kind_of_loss_is_a_named_violation():
    births, outcomes = small_run()
    lost = [o for o in outcomes if o.item_id != "c1"]  # a clip that entered the shard stage vanished
    twice = outcomes + [video_outcome("v1", SEGMENT, "failed", reasons.CORRUPT_VIDEO)]
    stray = outcomes + [clip_outcome("ghost", QUALITY, "dropped", reasons.LOW_QUALITY)]
    assert aggregates.conservation_violations(births, lost) == [
        "clip 'c1': reached stage 'shard' and no stage gave it an outcome"]
    (message,) = aggregates.conservation_violations(births, twice)
    assert "video 'v1': 2 outcomes" in message and "segment:failed" in message
    (message,) = aggregates.conservation_violations(births, stray)
    assert "clip 'ghost'" in message and "no stage registered it" in message
    stats = aggregates.compute_stats(lost, births, 1)
    assert not stats.conservation.ok and "c1" in aggregates.failure_message(stats)


def test_a_catalog_listing_one_id_twice_is_two_items():
    births = [Registration("video", "dup", DOWNLOAD, True), Registration("video", "dup", SEARCH, True)]
    outcomes = [video_outcome("dup", SEARCH, "dropped", reasons.DUPLICATE), video_outcome("dup", SEGMENT, "kept")]
    assert aggregates.conservation_violations(births, outcomes) == []
    assert aggregates.conservation_violations(births, outcomes[:1]) != []


def test_stats_json_is_stable():
    births, outcomes = small_run()
    a = aggregates.compute_stats(outcomes, births, 1).to_json()
    b = aggregates.compute_stats(list(reversed(outcomes)), list(reversed(births)), 1).to_json()
    assert a == b


def test_report_is_one_self_contained_page_with_plots_and_strips():
    births, outcomes = small_run()
    stats = aggregates.compute_stats(outcomes, births, 1)
    frames = np.zeros((160, 90, 160, 3), np.uint8)
    frames[:, :, :80] = 200
    clip = Clip(clip_key="c2", video_id="v1", clip_index=2, start_s=32.0, end_s=48.0, num_frames=160, fps=10.0,
                width=160, height=90, mp4=clip_codec.encode_clip(frames, preset="ultrafast"),
                video=CandidateVideo(video_id="v1", source="t", url="file:///x"))
    key, strip = report.thumbnail_strip(clip)
    assert key == "c2" and strip[:2] == b"\xff\xd8"  # a JPEG
    page = report.render_report(stats, {"c2": strip, "c0": strip})
    assert "Conservation law holds" in page
    assert "1 search input(s) could not be read and are not counted as videos (bad_catalog_row 1)" in page
    assert "No quality classifier" in page  # compute_stats without settings: an unscored run
    assert page.count("data:image/png;base64,") >= 3  # funnel, durations, scores
    assert page.count("data:image/jpeg;base64,") == 2  # one kept sample and one low_quality sample
    assert "dropped: low_quality" in page and "http_404" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loads from elsewhere
    broken = aggregates.compute_stats(outcomes[:-1], births, 1)
    assert "CONSERVATION VIOLATED" in report.render_report(broken, {})
    scored = aggregates.compute_stats(outcomes, births, 1, QualitySettings("gs://b/q1", 0.42, "clip", 0.0))
    page = report.render_report(scored, {})
    assert "gs://b/q1" in page and "0.42" in page and "No quality classifier" not in page


def test_report_strips_are_bounded_per_outcome_and_reason():
    """Strips per (outcome, reason) group: at most per_group each, a rare reason gets its own."""
    kept = [clip_outcome(f"k{i}", SHARD, "kept", score=0.9) for i in range(20)]
    rare = [clip_outcome("bad0", SHARD, "failed", reasons.SHARD_ERROR)]
    outcomes = kept + rare + [clip_outcome("tail", SEGMENT, "dropped", reasons.SHORT_TAIL)]
    groups = {}
    for o in outcomes:
        for group, _, pick in report.thumbnail_pick(o):
            groups.setdefault(group, []).append(pick.clip_key)
    assert set(groups) == {"kept", "failed: shard_error"}  # short tails have no bytes to draw
    stats = aggregates.compute_stats(outcomes, [], 1, per_group=3)
    assert {g: len(p) for g, p in stats.thumbnails.items()} == {"kept": 3, "failed: shard_error": 1}
    ranked = sorted((report.thumbnail_rank(k), k) for k in groups["kept"])  # the smallest key hashes
    assert [p.clip_key for p in stats.thumbnails["kept"]] == [k for _, k in ranked[:3]]
    jpeg = b"\xff\xd8fake"
    page = report.render_report(stats, {o.item_id: jpeg for o in outcomes}, per_group=3)
    sections = {m.group(1): m.group(2) for m in re.finditer(r"<h3>(.*?)</h3>(.*?)(?=<h3>|</body>)", page, re.S)}
    assert sections["kept"].count("data:image/jpeg") == 3
    assert sections["failed: shard_error"].count("data:image/jpeg") == 1
    assert "data:image/jpeg" not in sections["dropped: short_tail"]


def _audit_with_beam(out_dir, births, outcomes) -> Stats:
    """The run's Audit transform on Beam's runner, fed the given records (and the manifest rows and shard index
    of small_run's two kept clips); returns its stats.json."""
    from pipeline.audit import audit_stage

    manifest = [Clip(clip_key=f"c{i}", video_id="v1", clip_index=i, start_s=16.0 * i, end_s=16.0 * i + 16,
                     num_frames=160, fps=10.0, width=160, height=90, location="shards/shard-00000.tar")
                for i in (0, 1)]
    index = [{"name": "shards/shard-00000.tar", "clips": 2, "bytes": 1}]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        inputs = {name: p | f"Create{name}" >> beam.Create(items, reshuffle=False) for name, items in
                  (("outcomes", outcomes), ("births", births), ("manifest", manifest), ("shard_index", index),
                   ("clips", []))}
        _ = inputs | audit_stage.Audit(str(out_dir), None, rows_per_part=3)
    return Stats.from_json((out_dir / "stats.json").read_bytes())


def test_the_keyed_sum_catches_a_dropped_and_a_doubled_record_on_beam(tmp_path):
    births, outcomes = small_run()
    whole = _audit_with_beam(tmp_path / "whole", births, outcomes)
    assert whole.conservation == Conservation(ok=True, num_violations=0, violations=[])
    in_memory = aggregates.compute_stats(outcomes, births, 1)
    assert whole == dataclasses.replace(in_memory, tables=whole.tables)  # the same as in memory
    lost = [o for o in outcomes if o.item_id != "c1"] + [video_outcome("v1", SEGMENT, "failed", reasons.CORRUPT_VIDEO)]
    broken = _audit_with_beam(tmp_path / "broken", births, lost).conservation
    assert broken == Conservation(ok=False, num_violations=4, violations=[
        "table manifest/: 2 rows written for 1 clips kept", "shards: 2 samples in the shard index for 1 clips kept",
        "clip 'c1': reached stage 'shard' and no stage gave it an outcome",
        "video 'v1': 2 outcomes ['segment:failed', 'segment:kept'] for 1 item(s)"])
    assert len(list((tmp_path / "broken" / "outcomes").glob("part-*-of-00003.parquet"))) == 3


def test_rows_lost_on_the_way_to_the_tables_are_violations():
    """The written tables are checked against the decisions by their row counts (a runner that drops rows
    before a table's writer is caught like a lost record)."""
    tables = {"outcomes": TableParts(parts=2, rows=9), "manifest": TableParts(parts=1, rows=2)}
    index = [{"name": "shards/shard-00000.tar", "clips": 2, "bytes": 10}]
    assert aggregates.table_violations(9, 2, tables, index) == []
    assert aggregates.table_violations(10, 3, tables, index) == [
        "table outcomes/: 9 rows written for 10 outcomes decided", "table manifest/: 2 rows written for 3 clips kept",
        "shards: 2 samples in the shard index for 3 clips kept"]
