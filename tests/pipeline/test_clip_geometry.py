"""Clip geometry is a pipeline option (``--clip-size WxH``, ``--clip-fps``): clips are cut at that size and
rate, the same frames ffmpeg's filters give, and the geometry is recorded in each clip (hence in the shard
sample's JSON and the manifest). The defaults stay 160x90 at 10 FPS."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import options
from pipeline.video import cut
from schemas import CandidateVideo, DownloadedVideo, clip_codec
from schemas.records import ShardSample
from tests import media


def _config(argv: list[str]) -> cut.SegmentConfig:
    parser = argparse.ArgumentParser()
    options.add_options(parser, cut.SegmentConfig)
    return options.build(cut.SegmentConfig, parser.parse_args(argv))


def test_geometry_flags_and_defaults(capsys):
    default = _config([])
    assert default.clip_geometry == (160, 90, 10) and default.clip_frames == 160
    square = _config(["--clip-size", "64x64", "--clip-fps", "15", "--clip-seconds", "2"])
    assert square.clip_geometry == (64, 64, 15) and square.clip_frames == 30  # seconds stay seconds
    assert square.fingerprint() != default.fingerprint()
    for bad in (["--clip-size", "64"], ["--clip-size", "63x64"], ["--clip-fps", "0"]):
        with pytest.raises(SystemExit):
            _config(bad)
        assert "argument --clip-" in capsys.readouterr().err


def test_clips_are_cut_at_the_requested_size_and_rate(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=2.56, width=192, height=108)
    data = Path(path).read_bytes()
    video = DownloadedVideo(candidate=CandidateVideo(video_id="a", source="test", url=f"file://{path}"),
                            path=str(path), size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    config = cut.SegmentConfig(clip_frames=15, clip_width=64, clip_height=64, clip_fps=15, isolate=False)
    result = cut.segment_video(video, config)
    assert len(result.clips) == 2, result.outcomes
    clip = result.clips[1]
    assert (clip.width, clip.height, clip.fps, clip.num_frames) == (64, 64, 15.0, 15)
    assert (clip.start_s, clip.end_s) == (1.0, 2.0)
    frames = clip_codec.decode_clip(clip.mp4)
    assert frames.shape == (15, 64, 64, 3)
    meta = json.loads(ShardSample.from_clip(clip).to_wds()["json"])
    assert json.dumps(meta).count('"width": 64') >= 1 and '"fps": 15.0' in json.dumps(meta)
    if media.FFMPEG is not None:  # the frames ffmpeg's fps filter picks: each beats its neighbours clearly
        reference = media.ffmpeg_frames(path, "fps=15,scale=64:64:force_original_aspect_ratio=increase,crop=64:64",
                                        width=64, height=64)
        for k in range(1, 14):  # clip frame k is ffmpeg frame 15 + k; at 64x64 the scalers differ (~20-27 dB)
            right = media.psnr(frames[k], reference[15 + k])
            assert right > 18.0 and right > 5.0 + max(media.psnr(frames[k], reference[15 + k + s]) for s in (-1, 1))
    assert np.ptp(frames) > 0
