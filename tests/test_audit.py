"""Audit: the conservation law catches every kind of loss, the funnel adds up, the report is self-contained."""

from __future__ import annotations

import re

import numpy as np

from pipeline import audit, clip_codec, report
from pipeline.audit import Registration
from schemas import CandidateVideo, Clip, Outcome, reasons

SEARCH, DOWNLOAD, SEGMENT, QUALITY, SHARD = reasons.STAGES


def video_outcome(vid, stage, outcome, reason="", duration_s=3600.0):
    return Outcome(item_id=vid, item_kind="video", stage=stage, outcome=outcome, reason=reason, video_id=vid,
                   duration_s=duration_s)


def clip_outcome(key, stage, outcome, reason="", score=None):
    return Outcome(item_id=key, item_kind="clip", stage=stage, outcome=outcome, reason=reason, video_id="v1",
                   duration_s=16.0, quality_score=score)


def small_run():
    """4 candidates: one dropped at search, one failed at download, one too short, one cut into 3 clips + tail."""
    births = [Registration("video", "v0", SEARCH, True), Registration("video", "v1", DOWNLOAD, True),
              Registration("video", "v2", DOWNLOAD, True), Registration("video", "v3", DOWNLOAD, True),
              Registration("video", "v1", SEGMENT, False), Registration("video", "v3", SEGMENT, False)]
    births += [Registration("clip", f"c{i}", QUALITY, True) for i in range(3)]
    births += [Registration("clip", "tail", SEGMENT, True)]
    births += [Registration("clip", f"c{i}", SHARD, False) for i in (0, 1)]
    outcomes = [video_outcome("v0", SEARCH, "dropped", reasons.NO_GAME_KEYWORD),
                video_outcome("v2", DOWNLOAD, "failed", reasons.HTTP_404),
                video_outcome("v3", SEGMENT, "dropped", reasons.TOO_SHORT, 10.0),
                video_outcome("v1", SEGMENT, "kept", duration_s=60.0),
                clip_outcome("tail", SEGMENT, "dropped", reasons.SHORT_TAIL),
                clip_outcome("c2", QUALITY, "dropped", reasons.LOW_QUALITY, 0.1),
                clip_outcome("c0", SHARD, "kept", score=0.9), clip_outcome("c1", SHARD, "kept", score=0.7)]
    return births, outcomes


def test_a_complete_run_satisfies_the_law_and_the_funnel_adds_up():
    births, outcomes = small_run()
    stats = audit.compute_stats(outcomes, births, num_shards=1)
    assert stats["conservation"] == {"ok": True, "num_violations": 0, "violations": []}
    assert stats["videos"] == {"candidates": 4, "dropped": 2, "failed": 1, "kept": 1}
    assert stats["clips"] == {"cut": 4, "dropped": 2, "kept": 2}
    funnel = {row["stage"]: row for row in stats["funnel"]}
    assert (funnel[SEARCH]["videos_in"], funnel[SEARCH]["videos_out"]) == (4, 3)
    assert (funnel[DOWNLOAD]["videos_in"], funnel[DOWNLOAD]["videos_out"]) == (3, 2)
    assert (funnel[SEGMENT]["videos_in"], funnel[SEGMENT]["videos_out"]) == (2, 1)
    assert (funnel[SEGMENT]["clips_in"], funnel[SEGMENT]["clips_out"]) == (4, 3)
    assert (funnel[QUALITY]["clips_in"], funnel[QUALITY]["clips_out"]) == (3, 2)
    assert (funnel[SHARD]["clips_in"], funnel[SHARD]["clips_out"]) == (2, 2)
    assert funnel[SEGMENT]["video_hours_in"] == round(70 / 3600, 6)
    assert funnel[QUALITY]["reasons"] == {"clip:dropped:low_quality": 1}
    assert stats["reason_counts"]["video:download:failed:http_404"] == 1


def test_every_kind_of_loss_is_a_named_violation():
    births, outcomes = small_run()
    lost = [o for o in outcomes if o.item_id != "c1"]  # a clip that entered the shard stage vanished
    twice = outcomes + [video_outcome("v1", SEGMENT, "failed", reasons.CORRUPT_VIDEO)]
    stray = outcomes + [clip_outcome("ghost", QUALITY, "dropped", reasons.LOW_QUALITY)]
    assert audit.conservation_violations(births, lost) == [
        "clip 'c1': reached stage 'shard' and no stage gave it an outcome"]
    (message,) = audit.conservation_violations(births, twice)
    assert "video 'v1': 2 outcomes" in message and "segment:failed" in message
    (message,) = audit.conservation_violations(births, stray)
    assert "clip 'ghost'" in message and "no stage registered it" in message
    stats = audit.compute_stats(lost, births, 1)
    assert not stats["conservation"]["ok"] and "c1" in audit.failure_message(stats)


def test_a_catalog_listing_one_id_twice_is_two_items():
    births = [Registration("video", "dup", DOWNLOAD, True), Registration("video", "dup", SEARCH, True)]
    outcomes = [video_outcome("dup", SEARCH, "dropped", reasons.DUPLICATE), video_outcome("dup", SEGMENT, "kept")]
    assert audit.conservation_violations(births, outcomes) == []
    assert audit.conservation_violations(births, outcomes[:1]) != []


def test_stats_json_is_stable():
    births, outcomes = small_run()
    a = audit.stats_json(audit.compute_stats(outcomes, births, 1))
    b = audit.stats_json(audit.compute_stats(list(reversed(outcomes)), list(reversed(births)), 1))
    assert a == b


def test_report_is_one_self_contained_page_with_plots_and_strips():
    births, outcomes = small_run()
    stats = audit.compute_stats(outcomes, births, 1)
    frames = np.zeros((160, 90, 160, 3), np.uint8)
    frames[:, :, :80] = 200
    clip = Clip(clip_key="c2", video_id="v1", clip_index=2, start_s=32.0, end_s=48.0, num_frames=160, fps=10.0,
                width=160, height=90, mp4=clip_codec.encode_clip(frames, preset="ultrafast"),
                video=CandidateVideo(video_id="v1", source="t", url="file:///x"))
    key, strip = report.thumbnail_strip(clip)
    assert key == "c2" and strip[:2] == b"\xff\xd8"  # a JPEG
    page = report.render_report(stats, outcomes, {"c2": strip, "c0": strip})
    assert "Conservation law holds" in page
    assert page.count("data:image/png;base64,") >= 3  # funnel, durations, scores
    assert page.count("data:image/jpeg;base64,") == 2  # one kept sample and one low_quality sample
    assert "dropped: low_quality" in page and "http_404" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loads from elsewhere
    broken = audit.compute_stats(outcomes[:-1], births, 1)
    assert "CONSERVATION VIOLATED" in report.render_report(broken, outcomes[:-1], {})
