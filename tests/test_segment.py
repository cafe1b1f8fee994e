"""Segmentation: clip windows, the 10 FPS rule's ties, actions alignment, bad inputs, crash isolation, Beam."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from fractions import Fraction

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline import clip_codec, frame_times, stage
from pipeline.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from pipeline.segment import (
    Segment,
    SegmentConfig,
    cached_segment,
    clip_actions,
    guarded_segment,
    segment_video,
)
from schemas import CandidateVideo, DownloadedVideo, ids, reasons
from tests import media

SHORT = SegmentConfig(clip_frames=10, isolate=False)  # 1 s clips keep test videos tiny


def downloaded(path, video_id="v", actions_url="") -> DownloadedVideo:
    with open(path, "rb") as f:
        data = f.read()
    return DownloadedVideo(candidate=CandidateVideo(video_id=video_id, source="test", url=f"file://{path}",
                                                    actions_url=actions_url),
                           path=str(path), size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


# ---- pure functions ------------------------------------------------------------------------------------
def test_tick_rounding_ties_go_up_like_ffmpeg():
    tb = Fraction(1, 60)
    assert [frame_times.tick_of(p, tb) for p in (0, 2, 3, 8, 9)] == [0, 0, 1, 1, 2]  # 0.05 s -> tick 1
    assert frame_times.frames_for_ticks([0, 0, 1, 1, 2], [0, 1, 2, 3]) == [1, 3, 4, 4]
    assert frame_times.frames_for_ticks([2, 3], [0]) == [0]  # nothing that early: the first frame


def test_plan_windows_tail_skips_and_stride():
    plan = frame_times.plan_windows(35.0)
    assert [(w.start_s, w.end_s) for w in plan.windows] == [(0.0, 16.0), (16.0, 32.0)]
    assert (plan.tail.start_s, plan.tail.num_frames) == (32.0, 30)
    exact = frame_times.plan_windows(32.0)
    assert len(exact.windows) == 2 and exact.tail is None
    assert frame_times.plan_windows(15.99).windows == []
    skipped = frame_times.plan_windows(40.0, skip_start_s=5.0, skip_end_s=4.0)
    assert [w.start_s for w in skipped.windows] == [5.0] and skipped.tail.num_frames == 150
    overlapping = frame_times.plan_windows(39.0, stride_frames=80)
    assert [w.start_s for w in overlapping.windows] == [0.0, 8.0, 16.0]
    assert (overlapping.tail.start_s, overlapping.tail.num_frames) == (32.0, 70)  # not inside any window
    assert frame_times.plan_windows(16.1).tail.num_frames == 1  # float noise does not add a tick


def test_clip_actions_follow_the_sidecar_contract():
    actions = list(range(100))
    assert clip_actions(actions, 20, 5) == [20, 21, 22, 23, 24]
    assert clip_actions(actions, 98, 4) == [98, 99, -1, -1]  # past the sidecar's end: no action


# ---- one video -----------------------------------------------------------------------------------------
def test_segment_video_cuts_clips_with_actions_and_a_short_tail(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=2.56, width=192, height=108)  # 64 frames
    sidecar = tmp_path / "a.json"
    sidecar.write_text(json.dumps({"video_id": "a.b", "step_fps": 10, "actions": list(range(25))}))
    result = segment_video(downloaded(path, "a.b", f"file://{sidecar}"), SHORT)
    key = ids.video_key("a.b")
    assert [c.clip_key for c in result.clips] == [f"{key}_s000000000", f"{key}_s000001000"]
    first, second = result.clips
    assert "." not in first.clip_key and first.video.video_id == "a.b"
    assert first.actions == list(range(10)) and second.actions == list(range(10, 20))
    assert clip_codec.decode_clip(second.mp4).shape == (10, 90, 160, 3)
    tail, video = result.outcomes
    assert (tail.item_kind, tail.outcome, tail.reason, tail.duration_s) == ("clip", "dropped", "short_tail", 0.5)
    assert (video.item_kind, video.outcome, video.duration_s) == ("video", "kept", 2.56)


def test_broken_actions_sidecar_keeps_the_clips_and_says_why(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    (tmp_path / "bad.json").write_text("{not json")
    result = segment_video(downloaded(path, "a", f"file://{tmp_path / 'bad.json'}"), SHORT)
    assert len(result.clips) == 1 and result.clips[0].actions is None
    assert "actions sidecar unreadable" in result.outcomes[-1].detail


def bad_inputs(tmp_path) -> dict[str, tuple[str, str]]:
    """Each bad file and the (outcome, reason) it must end in."""
    good = media.write_video(tmp_path / "good.mp4", fps=25, duration_s=1.5, width=160, height=90)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(5000))
    media.truncate(good, tmp_path / "truncated.mp4", 0.6)
    media.write_audio_only(tmp_path / "audio.mp4")
    media.write_video(tmp_path / "short.mp4", fps=25, duration_s=0.6, width=160, height=90)
    return {"empty": ("failed", reasons.EMPTY_FILE), "garbage": ("failed", reasons.CORRUPT_VIDEO),
            "truncated": ("failed", reasons.TRUNCATED_VIDEO), "audio": ("failed", reasons.AUDIO_ONLY),
            "short": ("dropped", reasons.TOO_SHORT), "good": ("kept", "")}


def test_bad_inputs_end_in_their_documented_outcome(tmp_path):
    for name, expected in bad_inputs(tmp_path).items():
        result = segment_video(downloaded(tmp_path / f"{name}.mp4", name), SHORT)
        video = result.outcomes[-1]
        assert (video.outcome, video.reason) == expected, (name, video.detail)
        assert video.detail or name == "good"


def test_av1_falls_back_to_pyav(tmp_path):
    path = media.write_video(tmp_path / "av1.mp4", fps=30, duration_s=1.1, width=160, height=90, codec="libsvtav1")
    result = segment_video(downloaded(path, "av1"), SHORT)
    assert len(result.clips) == 1 and "via pyav" in result.outcomes[-1].detail


def test_skips_leaving_no_window_drop_the_video_as_no_clips(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.5, width=160, height=90)
    config = SegmentConfig(clip_frames=10, skip_start_s=1.0, isolate=False)
    assert segment_video(downloaded(path), config).outcomes[-1].reason == reasons.NO_CLIPS


# ---- isolation -------------------------------------------------------------------------------------------
def _segfault(*_args):
    os.kill(os.getpid(), signal.SIGSEGV)


def _sleep(*_args):
    import time

    time.sleep(30)


def test_a_crash_in_the_child_fails_one_video_and_the_worker_recovers(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    worker = IsolatedWorker(timeout_s=60)
    try:
        with pytest.raises(WorkerCrashed, match="signal 11"):
            worker.call(_segfault)
        crashed = guarded_segment(downloaded(path), SHORT, worker, fn=_segfault)
        assert (crashed.outcomes[0].outcome, crashed.outcomes[0].reason) == ("failed", reasons.DECODER_CRASH)
        ok = guarded_segment(downloaded(path), SHORT, worker)  # a fresh child takes over
        assert len(ok.clips) == 1
        worker.timeout_s = 1
        with pytest.raises(WorkerTimeout):
            worker.call(_sleep)
    finally:
        worker.close()


# ---- cache and Beam ----------------------------------------------------------------------------------------
def test_cache_makes_a_rerun_skip_decoding(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    video = downloaded(path)
    config = SegmentConfig(clip_frames=10, isolate=False, cache_dir=str(tmp_path / "cache"))
    first = cached_segment(video, config, None)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    os.remove(path)  # the rerun must not need the video any more
    again = cached_segment(video, config, None)
    assert [c.mp4 for c in again.clips] == [c.mp4 for c in first.clips] and again.outcomes == first.outcomes
    other = cached_segment(video, SegmentConfig(clip_frames=5, isolate=False, cache_dir=config.cache_dir), None)
    assert other.outcomes[-1].reason == reasons.SEGMENT_ERROR  # another config misses the cache


def test_segment_transform_on_the_beam_runner(tmp_path):
    inputs = bad_inputs(tmp_path)
    videos = [downloaded(tmp_path / f"{name}.mp4", name) for name in inputs]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(videos) | Segment(SegmentConfig(clip_frames=10))  # isolated child, as in runs
        video_outcomes = (out[stage.OUTCOMES]
                          | beam.Filter(lambda o: o.item_kind == "video")
                          | beam.Map(lambda o: (o.video_id, o.outcome, o.reason)))
        assert_that(video_outcomes, equal_to([(n, *e) for n, e in inputs.items()]), label="videos")
        assert_that(out[stage.MAIN] | beam.Map(lambda c: (c.video_id, c.start_s)), equal_to([("good", 0.0)]),
                    label="clips")


def test_max_calls_one_gives_every_call_a_fresh_child():
    worker = IsolatedWorker(timeout_s=60, max_calls=1)
    try:
        assert len({worker.call(os.getpid) for _ in range(3)}) == 3
    finally:
        worker.close()
    reused = IsolatedWorker(timeout_s=60)
    try:
        assert len({reused.call(os.getpid) for _ in range(3)}) == 1
    finally:
        reused.close()
