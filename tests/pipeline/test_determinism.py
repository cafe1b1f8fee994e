"""The same inputs give the same bytes in every process, whatever ran in it before.

Clips are decoded and encoded in worker processes that did other work first (earlier videos, earlier clips of
the same video). x264's AVX-512 macroblock-tree code once made a clip's bytes depend on what earlier
allocations had left in memory (``clip_format.X264_OPTIONS``; docs/pipeline.md, "Determinism"): two runs from
scratch then differed in a clip or two. These tests compare bytes across fresh interpreters, one of them with
its C heap deliberately left full of stale data, and across two from-scratch pipeline runs.

On a CPU without AVX-512 the heap test passes even with the old x264 settings (only that code path read the
memory); on one with AVX-512 (this project's workers) it fails with them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import run
from pipeline.video import cut
from schemas import clip_codec, clip_format, decoders, frame_times
from tests import media

ROOT = Path(__file__).resolve().parents[2]

# Frees ~18 MB of C-heap blocks holding small int16 values (like motion vectors and costs, some with x264's
# list bits set) before encoding, so x264's allocations reuse memory holding plausible stale data, as they do
# after earlier clips in a worker. Random bytes would not do: they almost never pass x264's range checks.
_ENCODE_AFTER_STALE_HEAP = """
import ctypes, hashlib, sys
import numpy as np
from schemas import clip_codec, clip_format
frames, seed = np.load(sys.argv[1]), int(sys.argv[2])
if seed:
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    rng = np.random.default_rng(seed)
    blocks = []
    for size in rng.integers(4 << 10, 120 << 10, 300):
        r = rng.integers(0, 1 << 30, int(size) // 2)
        words = np.where(r % 3 == 0, 0x4000 | (r >> 8 & 0x3FF), (r >> 8) % 129 - 64).astype(np.int16)
        blocks.append(libc.malloc(words.nbytes))
        ctypes.memmove(blocks[-1], words.ctypes.data, words.nbytes)
    sentinel = libc.malloc(64)  # keeps the freed blocks from merging into the heap top and being trimmed
    for block in blocks:
        libc.free(block)
print(hashlib.sha1(clip_codec.encode_clip(frames)).hexdigest())
"""

_DECODE_CLIPS = """
import hashlib, json, sys
from pipeline.video import cut
from schemas import clip_format, decoders, frame_times
path, decoder = sys.argv[1], sys.argv[2]
config = cut.SegmentConfig(clip_frames=10, decoder=decoder)
index = decoders.index_video(path)
windows = frame_times.plan_windows(index.duration_s, config.clip_frames).windows
backend, clips = cut.decode_clips(path, index, windows, config)
print(json.dumps([backend] + [hashlib.sha1(frames.tobytes()).hexdigest() for frames in clips]))
"""


def _python(code: str, *args) -> str:
    """Run ``code`` in a fresh interpreter (repository on the path) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_clip_bytes_do_not_depend_on_stale_heap_memory(tmp_path):
    frames = np.stack([media.pattern_frame(k / 10, clip_format.CLIP_WIDTH, clip_format.CLIP_HEIGHT)
                       for k in range(160)])
    np.save(tmp_path / "frames.npy", frames)
    here = hashlib.sha1(clip_codec.encode_clip(frames)).hexdigest()  # this process has run other tests first
    fresh = {seed: _python(_ENCODE_AFTER_STALE_HEAP, tmp_path / "frames.npy", seed) for seed in (0, 1, 2, 3)}
    assert fresh == dict.fromkeys(fresh, here)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_clip_frames_are_identical_in_fresh_processes(tmp_path, decoder):
    path = media.write_video(tmp_path / "v.mp4", fps=30, duration_s=3.3, width=320, height=180)
    config = cut.SegmentConfig(clip_frames=10, decoder=decoder)
    index = decoders.index_video(str(path))
    windows = frame_times.plan_windows(index.duration_s, config.clip_frames).windows
    backend, clips = cut.decode_clips(str(path), index, windows, config)
    here = [backend] + [hashlib.sha1(frames.tobytes()).hexdigest() for frames in clips]
    assert len(here) == 1 + 3 and backend == decoder
    for _ in range(2):
        assert json.loads(_python(_DECODE_CLIPS, path, decoder)) == here


@pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary (yt-dlp's file:// download)")
def test_two_runs_from_scratch_write_identical_outputs(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_video(videos / "two_clips.mp4", fps=25, duration_s=32.5, width=160, height=90)
    media.write_video(videos / "one_clip.mp4", fps=30, duration_s=16.2, width=192, height=108)
    with open(tmp_path / "catalog.jsonl", "w") as f:
        for name in ("two_clips", "one_clip"):
            f.write(json.dumps({"id": name, "url": (videos / f"{name}.mp4").as_uri(), "title": "Celeste speedrun gameplay",
                                "duration_s": 20}) + "\n")
    outputs = []
    for name in ("a", "b"):  # separate output directories: nothing is reused from the first run
        # Tiny shards: several of them into a fresh output (parallel writers: tests/pipeline/test_shards.py).
        argv = ["--catalog", str(tmp_path / "catalog.jsonl"), "--output", str(tmp_path / name), "--in-process",
                "--shard-size-mb", "0.05"]
        assert run.main(argv) == 0
        out = tmp_path / name
        files = sorted(out.glob("shards/*.tar")) + sorted(out.glob("*/part-*.parquet"))
        files += [out / name for name in ("stats.json", "report.html", "shard_index.json", "thumbnails.parquet")]
        outputs.append({p.relative_to(out): p.read_bytes() for p in files})
    assert len([p for p in outputs[0] if p.suffix == ".tar"]) >= 2
    assert json.loads(outputs[0][Path("stats.json")])["clips"] == {"cut": 5, "dropped": 2, "kept": 3}  # 2 short tails
    assert outputs[0] == outputs[1]
