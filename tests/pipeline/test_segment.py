"""Segmentation: clip windows, the 10 FPS rule's ties, actions alignment, bad inputs, crash isolation, Beam."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline import run, segment, stage
from pipeline.io import clip_store
from pipeline.segment import (
    Segment,
    SegmentConfig,
    SegmentResult,
    cache_paths,
    cached_segment,
    clip_actions,
    guarded_segment,
    segment_video,
)
from pipeline.video import cut
from pipeline.video.isolation import IsolatedWorker, WorkerCrashed, WorkerTimeout
from schemas import (
    CandidateVideo,
    DownloadedVideo,
    Outcome,
    clip_codec,
    frame_times,
    from_table,
    ids,
    reasons,
)
from tests import media

ROOT = Path(__file__).resolve().parents[2]
SHORT = SegmentConfig(clip_frames=10, isolate=False)  # 1 s clips keep test videos tiny
needs_ffmpeg = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary (references, remuxing)")
# As in tests/pipeline/test_frame_exactness.py: the right source frame through the stored H.264 clip scores above
# CLIP_PSNR_DB against ffmpeg's own filters; a neighbouring or wrongly oriented frame scores below WRONG_FRAME_DB.
COVER = "fps=10,scale=160:90:force_original_aspect_ratio=increase,crop=160:90"
PAD = "fps=10,scale=160:90:force_original_aspect_ratio=decrease,pad=160:90:(ow-iw)/2:(oh-ih)/2"
CLIP_PSNR_DB = 26.0
WRONG_FRAME_DB = 20.0


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


@pytest.mark.parametrize("kwargs", [dict(clip_frames=0), dict(clip_frames=-160), dict(stride_frames=0),
                                    dict(stride_frames=-10), dict(skip_start_s=-1.0), dict(skip_end_s=float("nan"))])
def test_plan_windows_refuses_steps_that_never_advance(kwargs):
    """These used to loop forever (the tick never passed the end): now an immediate, named error."""
    with pytest.raises(ValueError, match="clip_frames|stride_frames|skips"):
        frame_times.plan_windows(60.0, **{"clip_frames": 10, **kwargs})


@pytest.mark.parametrize(("kwargs", "word"), [
    (dict(clip_frames=0), "clip length"), (dict(stride_frames=0), "stride"), (dict(stride_frames=-5), "stride"),
    (dict(skip_start_s=-2.0), "skip_start_s"), (dict(fit="stretch"), "fit"), (dict(decoder="opencv"), "decoder"),
    (dict(crf=60), "crf"), (dict(video_timeout_s=0), "timeout"), (dict(x264_preset="quick"), "x264 preset"),
])
def test_segment_config_refuses_impossible_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SegmentConfig(**kwargs)


@pytest.mark.parametrize(("flags", "flag"), [
    (["--clip-seconds", "0"], "--clip-seconds"), (["--clip-seconds", "0.04"], "--clip-seconds"),  # 0 frames
    (["--clip-stride-s", "-1"], "--clip-stride-s"), (["--clip-stride-s", "0"], "--clip-stride-s"),
    (["--skip-end-s", "-3"], "--skip-end-s"), (["--crf", "70"], "--crf"), (["--x264-preset", "quick"], "--x264-preset"),
])
def test_bad_clip_options_are_an_argparse_error_on_the_cli(tmp_path, capsys, flags, flag):
    with pytest.raises(SystemExit) as info:
        run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), *flags])
    assert info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
    config, _, _ = run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), "--clip-seconds", "1.5",
                              "--clip-stride-s", "0.5"])
    assert (config.segment.clip_frames, config.segment.stride_frames) == (15, 5)


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


def test_garbage_that_looks_like_a_box_header_is_corrupt_not_truncated(tmp_path):
    """Random bytes whose 5th-8th are alphanumeric (1 in ~300 random files) read as an MP4 box that runs past
    the end; only files that start like ISO-BMFF may be called truncated."""
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00\x10\x00\x00mult" + os.urandom(3000))
    result = segment_video(downloaded(path), SHORT)
    assert result.outcomes[-1].reason == reasons.CORRUPT_VIDEO, result.outcomes[-1].detail


def test_av1_falls_back_to_pyav(tmp_path):
    path = media.write_video(tmp_path / "av1.mp4", fps=30, duration_s=1.1, width=160, height=90, codec="libsvtav1")
    result = segment_video(downloaded(path, "av1"), SHORT)
    assert len(result.clips) == 1 and "via pyav" in result.outcomes[-1].detail


@needs_ffmpeg
def test_a_codec_no_decoder_can_decode_is_unsupported_codec(tmp_path):
    path = media.write_undecodable(tmp_path / "c64.nut")
    if path is None:
        pytest.skip("the ffmpeg binary has no a64multi encoder")
    import decord

    with pytest.raises(decord.DECORDError):  # decord cannot open it either
        decord.VideoReader(str(path))
    for decoder in ("decord", "pyav"):
        video = segment_video(downloaded(path, "c64"), SegmentConfig(clip_frames=10, decoder=decoder, isolate=False))
        (outcome,) = video.outcomes
        assert outcome.outcome == reasons.FAILED and reasons.reason_family(outcome.reason) == reasons.UNSUPPORTED_CODEC
        assert outcome.reason.startswith(reasons.unsupported_codec("")) and outcome.detail and not video.clips


def _clip_frames(result) -> list[np.ndarray]:
    return [clip_codec.decode_clip(c.mp4) for c in result.clips]


def _worst_psnr(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return min(media.psnr(a, b) for a, b in zip(ours, ref, strict=True))


@needs_ffmpeg
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_fit_pad_matches_ffmpegs_pad_filter(tmp_path, decoder):
    """A 4:3 source fitted inside 160x90: 120x90 of picture between two black 20-pixel bars, like ffmpeg's pad."""
    path = media.write_video(tmp_path / "4x3.mp4", fps=25, duration_s=1.2, width=192, height=144)
    result = segment_video(downloaded(path), SegmentConfig(clip_frames=10, fit="pad", decoder=decoder, isolate=False))
    (frames,) = _clip_frames(result)
    ref = media.ffmpeg_frames(path, PAD)[:10]
    assert _worst_psnr(frames, ref) >= CLIP_PSNR_DB
    assert _worst_psnr(frames[:, :, 22:138], ref[:, :, 22:138]) >= CLIP_PSNR_DB  # the picture alone, not the bars
    assert frames[:, :, :18].max() < 24 and frames[:, :, 142:].max() < 24  # black bars (H.264 ringing aside)
    cropped = media.ffmpeg_frames(path, COVER)[:10]
    assert _worst_psnr(frames, cropped) < WRONG_FRAME_DB  # the check can fail: crop is far from pad


@needs_ffmpeg
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_rotation_180_through_segment_video(tmp_path, decoder):
    src = media.write_video(tmp_path / "land.mp4", fps=30, duration_s=1.2, width=192, height=108)
    rotated = media.with_rotation(src, tmp_path / "rot180.mp4", 180)
    result = segment_video(downloaded(rotated), SegmentConfig(clip_frames=10, decoder=decoder, isolate=False))
    assert "rotation 180" in result.outcomes[-1].detail
    (frames,) = _clip_frames(result)
    assert _worst_psnr(frames, media.ffmpeg_frames(rotated, COVER)[:10]) >= CLIP_PSNR_DB  # ffmpeg autorotates
    assert _worst_psnr(frames, media.ffmpeg_frames(src, COVER)[:10]) < WRONG_FRAME_DB  # not upside down


@needs_ffmpeg
def test_stride_and_skips_through_segment_video(tmp_path):
    """Overlapping 1 s windows every 0.5 s between a 0.5 s intro and a 0.6 s outro, each clip showing the
    frames ffmpeg shows at its own start time."""
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=4.2, width=192, height=108)
    config = SegmentConfig(clip_frames=10, stride_frames=5, skip_start_s=0.5, skip_end_s=0.6, isolate=False)
    result = segment_video(downloaded(path), config)
    assert [(c.clip_index, c.start_s, c.end_s) for c in result.clips] == [
        (0, 0.5, 1.5), (1, 1.0, 2.0), (2, 1.5, 2.5), (3, 2.0, 3.0), (4, 2.5, 3.5)]
    tail, video = result.outcomes
    assert (tail.reason, tail.item_id, tail.duration_s) == (reasons.SHORT_TAIL, ids.clip_key("v", 3.5), 0.1)
    assert video.outcome == reasons.KEPT and len({c.clip_key for c in result.clips}) == 5
    ref = media.ffmpeg_frames(path, COVER)
    for clip, frames in zip(result.clips, _clip_frames(result), strict=True):
        first = round(clip.start_s * 10)
        assert _worst_psnr(frames, ref[first:first + 10]) >= CLIP_PSNR_DB, clip.start_s
    assert _worst_psnr(_clip_frames(result)[1], ref[0:10]) < WRONG_FRAME_DB  # offsets matter: the check can fail


@needs_ffmpeg
def test_b_frame_source_at_30fps_matches_ffmpeg_fps10(tmp_path):
    """B-frames: packets arrive in decode order, frames must be picked in presentation order."""
    path = media.write_video(tmp_path / "bf.mp4", fps=30, duration_s=2.1, width=192, height=108, bframes=3)
    assert media.has_b_frames(path)
    result = segment_video(downloaded(path), SHORT)
    ref = media.ffmpeg_frames(path, COVER)
    assert [c.start_s for c in result.clips] == [0.0, 1.0]
    for clip, frames in zip(result.clips, _clip_frames(result), strict=True):
        first = round(clip.start_s * 10)
        assert _worst_psnr(frames, ref[first:first + 10]) >= CLIP_PSNR_DB


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


def _unpicklable_result(video, config):
    return SegmentResult([], [lambda: None])  # a lambda does not pickle: the child cannot send this back


class _FailsToUnpickle:
    def __reduce__(self):
        return (_refuse_to_load, ())


def _refuse_to_load():
    raise pickle.UnpicklingError("corrupt result")


def _result_that_fails_to_unpickle(video, config):
    return SegmentResult([], [_FailsToUnpickle()])


def _os_error(video, config):
    raise PermissionError(13, "Permission denied", "/cache/x")


def test_any_error_around_the_call_fails_one_video_as_segment_error(tmp_path):
    """Besides crashes (decoder_crash): results that do not cross the pipe and errors the function lets through."""
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    worker = IsolatedWorker(timeout_s=60)
    try:
        for fn, words in ((_unpicklable_result, "does not pickle"), (_result_that_fails_to_unpickle, "corrupt result"),
                          (_os_error, "Permission denied")):
            (outcome,) = guarded_segment(downloaded(path), SHORT, worker, fn=fn).outcomes
            assert (outcome.outcome, outcome.reason) == ("failed", reasons.SEGMENT_ERROR), fn
            assert words in outcome.detail and outcome.item_id == "v"
        (outcome,) = guarded_segment(downloaded(path), SHORT, None, fn=_os_error).outcomes  # in-process, too
        assert outcome.reason == reasons.SEGMENT_ERROR and "PermissionError" in outcome.detail
        assert len(guarded_segment(downloaded(path), SHORT, worker).clips) == 1  # the worker still serves
    finally:
        worker.close()


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
    inline = segment_video(video, SHORT)  # the reference: the same cut with the bytes in the clips
    first = cached_segment(video, config, None)
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "cache").iterdir()) == [
        "clips.bin", "clips.parquet", "outcomes.parquet"]
    assert all(c.mp4 is None for c in first.clips)  # by reference: the bytes are in the pack only
    assert [clip_store.clip_bytes(c) for c in first.clips] == [c.mp4 for c in inline.clips]
    assert [c.replace(location="") for c in first.clips] == [c.replace(mp4=None) for c in inline.clips]
    os.remove(path)  # the rerun must not need the video any more
    again = cached_segment(video, config, None)
    assert again.clips == first.clips and again.outcomes == first.outcomes
    other = cached_segment(video, SegmentConfig(clip_frames=5, isolate=False, cache_dir=config.cache_dir), None)
    assert other.outcomes[-1].reason == reasons.SEGMENT_ERROR  # another config misses the cache


def test_unusable_cache_entry_is_segmented_again_and_replaced(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    config = SegmentConfig(clip_frames=10, isolate=False, cache_dir=str(tmp_path / "cache"))
    first = cached_segment(downloaded(path), config, None)
    clips_path, outcomes_path = cache_paths(downloaded(path), config)
    with open(outcomes_path, "wb") as f:
        f.write(b"PAR1 not really parquet")
    again = cached_segment(downloaded(path), config, None)
    assert [clip_store.clip_bytes(c) for c in again.clips] == [c.mp4 for c in segment_video(downloaded(path),
                                                                                          SHORT).clips]
    assert again.outcomes[-1].outcome == "kept" and "cache entry unusable" in again.outcomes[-1].detail
    assert from_table(pq.read_table(outcomes_path), Outcome) == first.outcomes  # the entry was rewritten


def test_an_unwritable_clip_store_fails_the_video_and_says_why(tmp_path):
    """The cache is the clip store: clips it cannot hold have no home, so the video fails (not cached: the
    next run tries again) instead of passing on references to nothing."""
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    result = cached_segment(downloaded(path), SegmentConfig(clip_frames=10, isolate=False,
                                                            cache_dir=str(blocker / "segment")), None)
    assert result.clips == [] and (result.outcomes[-1].outcome, result.outcomes[-1].reason) == (
        "failed", reasons.SEGMENT_ERROR)
    assert "clips not stored" in result.outcomes[-1].detail


def test_a_truncated_pack_is_an_unusable_entry(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=2.2, width=160, height=90)
    config = SegmentConfig(clip_frames=10, isolate=False, cache_dir=str(tmp_path / "cache"))
    first = cached_segment(downloaded(path), config, None)
    pack = Path(segment.pack_path(cache_paths(downloaded(path), config)[0]))
    assert pack.stat().st_size == sum(clip_store.size_of(c) for c in first.clips) and len(first.clips) == 2
    pack.write_bytes(pack.read_bytes()[:-1])
    with pytest.raises(ValueError, match="bytes at offset [0-9]+ .the file is shorter"):
        clip_store.clip_bytes(first.clips[-1])
    os.remove(pack)
    again = cached_segment(downloaded(path), config, None)  # the pack is gone: segmented again
    assert "cache entry unusable" in again.outcomes[-1].detail and pack.exists()


def test_segment_errors_are_not_cached(tmp_path):
    path = tmp_path / "gone.mp4"
    path.write_bytes(b"x")
    video = downloaded(path)
    path.unlink()  # e.g. storage that failed between download and segmentation
    cache = tmp_path / "cache"
    result = cached_segment(video, SegmentConfig(clip_frames=10, isolate=False, cache_dir=str(cache)), None)
    assert result.outcomes[-1].reason == reasons.SEGMENT_ERROR and "FileNotFoundError" in result.outcomes[-1].detail
    assert not cache.exists() or not list(cache.iterdir())  # the next run tries again


def test_cache_key_follows_the_actions_sidecar(tmp_path):
    """Clips carry the sidecar's actions: adding, changing or fixing a sidecar must not reuse stale clips."""
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=1.2, width=160, height=90)
    sidecar = tmp_path / "a.json"
    config = SegmentConfig(clip_frames=10, isolate=False, cache_dir=str(tmp_path / "cache"))

    def actions_now():
        (clip,) = cached_segment(downloaded(path, actions_url=str(sidecar)), config, None).clips
        return clip.actions

    assert cached_segment(downloaded(path), config, None).clips[0].actions is None  # no sidecar
    assert actions_now() is None  # sidecar named but missing: clips without actions, under a key of its own
    sidecar.write_text(json.dumps({"step_fps": 10, "actions": list(range(12))}))
    assert actions_now() == list(range(10))  # the sidecar appeared
    sidecar.write_text(json.dumps({"step_fps": 10, "actions": [7] * 12}))
    assert actions_now() == [7] * 10  # the sidecar changed
    entries = len(list((tmp_path / "cache").iterdir()))
    assert actions_now() == [7] * 10 and len(list((tmp_path / "cache").iterdir())) == entries  # unchanged: a hit
    assert len({cache_paths(downloaded(path, actions_url=u), config) for u in ("", str(sidecar), "/x.json")}) == 3


def _raise_os_error(*_args):
    raise OSError("cache bucket unreachable")


def test_an_error_in_the_stage_fails_videos_not_the_job(tmp_path, monkeypatch):
    """_SegmentFn.process guards everything it calls: the Beam job finishes, each video with segment_error."""
    inputs = bad_inputs(tmp_path)
    videos = [downloaded(tmp_path / f"{name}.mp4", name) for name in inputs]
    monkeypatch.setattr(segment, "cached_segment", _raise_os_error)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(videos) | Segment(SegmentConfig(clip_frames=10, isolate=False))
        assert_that(out[stage.OUTCOMES] | beam.Map(lambda o: (o.video_id, o.reason, "unreachable" in o.detail)),
                    equal_to([(n, reasons.SEGMENT_ERROR, True) for n in inputs]), label="videos")
        assert_that(out[stage.MAIN], equal_to([]), label="clips")


def test_unwritable_cache_on_the_beam_runner_keeps_every_outcome(tmp_path):
    inputs = bad_inputs(tmp_path)
    videos = [downloaded(tmp_path / f"{name}.mp4", name) for name in inputs]
    (tmp_path / "blocker").write_text("")
    config = SegmentConfig(clip_frames=10, cache_dir=str(tmp_path / "blocker" / "segment"))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(videos) | Segment(config)
        video_outcomes = (out[stage.OUTCOMES] | beam.Filter(lambda o: o.item_kind == "video")
                          | beam.Map(lambda o: (o.video_id, o.outcome, o.reason)))
        # the clips of "good" have no store to go to: its video fails; the others keep their outcome
        expected = {**inputs, "good": ("failed", reasons.SEGMENT_ERROR)}
        assert_that(video_outcomes, equal_to([(n, *e) for n, e in expected.items()]), label="videos")
        assert_that(out[stage.MAIN], equal_to([]), label="clips")


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


# Peak memory of one segment_video call in a fresh interpreter, after warming both decoders on a small file.
# Linux's VmHWM (peak RSS of this process image), reset to the current RSS just before the call through
# /proc/self/clear_refs; ru_maxrss would not do: it carries the forking parent's peak across exec.
_PEAK_MEMORY = """
import json, sys
from pathlib import Path
from pipeline.video.cut import SegmentConfig, segment_video
from schemas import CandidateVideo, DownloadedVideo

def video(path):
    path = Path(path)
    return DownloadedVideo(candidate=CandidateVideo(video_id=path.stem, source="t", url=path.as_uri()),
                           path=str(path), size_bytes=path.stat().st_size, sha256="0" * 64)

def status_kb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

for decoder in ("decord", "pyav"):
    segment_video(video(sys.argv[2]), SegmentConfig(clip_frames=10, isolate=False, decoder=decoder))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status_kb("VmRSS")
result = segment_video(video(sys.argv[1]), SegmentConfig(isolate=False, decord_max_mb=float(sys.argv[3])))
print(json.dumps([len(result.clips), (status_kb("VmHWM") - before) * 1024]))
"""


def _noisy_video(path, seconds: float):
    """High-bitrate 640x360 source (noise defeats compression): ~2.4 MB per second, like a long video's bulk."""
    subprocess.run([media.FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=30,noise=alls=20:allf=t", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@needs_ffmpeg
def test_memory_stays_flat_however_long_the_video(tmp_path):
    """Three times the video (and file) must not cost memory in proportion: decord would hold the whole file
    (its read-ahead), so files over ``decord_max_mb`` go to PyAV, which streams."""
    small = media.write_video(tmp_path / "warm.mp4", duration_s=1.5)
    peaks = {}
    for seconds in (16.5, 49.5):
        path = _noisy_video(tmp_path / f"v{seconds:g}.mp4", seconds)
        out = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, str(path), str(small), "8"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, check=True)
        clips, grown = json.loads(out.stdout)
        peaks[seconds] = (clips, grown, path.stat().st_size)
    (short_clips, short_grown, short_size), (long_clips, long_grown, long_size) = peaks[16.5], peaks[49.5]
    assert (short_clips, long_clips) == (1, 3)
    assert long_size - short_size > 50e6  # the long file really is much bigger
    # Measured: PyAV +16 MB peak from 1 to 3 clips (allocator slack, bounded: +40 MB for 60 clips), decord
    # +87 MB (the extra 80 MB of file); half the extra file size separates the two with room on both sides.
    assert long_grown - short_grown < 0.5 * (long_size - short_size), peaks


def test_files_over_the_decord_limit_go_to_pyav(tmp_path):
    path = media.write_video(tmp_path / "v.mp4", duration_s=1.0)
    size_mb = path.stat().st_size / 2**20
    assert cut.decoder_for(str(path), SegmentConfig(decord_max_mb=size_mb * 2)) == "decord"
    assert cut.decoder_for(str(path), SegmentConfig(decord_max_mb=size_mb / 2)) == "pyav"
    assert cut.decoder_for(str(path), SegmentConfig(decoder="pyav", decord_max_mb=1e6)) == "pyav"
    with pytest.raises(ValueError, match="decord_max_mb"):
        SegmentConfig(decord_max_mb=-1)


def test_x264_preset_changes_the_encoding_not_the_frames(tmp_path):
    path = media.write_video(tmp_path / "v.mp4", fps=30, duration_s=2.2, width=320, height=180)
    medium_config = SegmentConfig(clip_frames=10, isolate=False, x264_preset="medium")
    faster_config = SegmentConfig(clip_frames=10, isolate=False, x264_preset="faster")
    medium, faster = segment_video(downloaded(path), medium_config), segment_video(downloaded(path), faster_config)
    assert len(medium.clips) == len(faster.clips) == 2
    assert medium_config.fingerprint() != faster_config.fingerprint()  # a cached result is not reused
    for a, b in zip(medium.clips, faster.clips, strict=True):
        assert a.mp4 != b.mp4
        fa, fb = clip_codec.decode_clip(a.mp4), clip_codec.decode_clip(b.mp4)
        assert fa.shape == fb.shape == (10, 90, 160, 3)
        mse = np.mean((fa.astype(float) - fb) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-10)) > 35  # the same frames, encoded two ways


def test_window_frames_on_an_array_match_the_bisect_rule():
    """cut._frames_for_window (numpy, per window) against frame_times.frames_for_ticks (bisect on a list)."""
    rng = np.random.default_rng(5)
    source_ticks = np.sort(rng.integers(-3, 400, size=700))  # repeats, gaps and ticks before 0
    for start in (0, 7, 150, 390):
        window = frame_times.Window(index=0, first_tick=start, num_frames=25)
        ticks = range(start, start + 25)
        assert cut._frames_for_window(source_ticks, window) == frame_times.frames_for_ticks(list(source_ticks), ticks)
