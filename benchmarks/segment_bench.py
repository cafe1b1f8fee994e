"""CPU cost of segmentation and of the whole local pipeline, against one plain ffmpeg decode of the same files.

    .venv/bin/python benchmarks/segment_bench.py [--videos N] [--seconds S] [--size 640x360] [--fps 30]
    .venv/bin/python benchmarks/segment_bench.py --encoding-table [--clips N]

Reference, same run and files: ``ffmpeg -threads 1 -i X -vf fps=10,scale=160:90 -f null -``. Rows give CPU-seconds
per hour of video and the ratio to it (``--repeat N``: interleaved, median; the last line checks the 1.3x target):
decode only; the stage's per-video function; the same in the isolated child (start-up in its own row), also with
``--x264-preset medium``; ``python -m pipeline run --in-process``. ``--encoding-table``: bytes per clip and PSNR per
x264 CRF, and raw / zstd npy sizes. Records: docs/measurements/2026-12-01-segment-speed.md,
2026-11-25-clip-encoding-crf.md, 2026-12-01-x264-preset.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import run  # noqa: E402
from pipeline.segment import SegmentConfig, guarded_segment  # noqa: E402
from pipeline.video.isolation import IsolatedWorker  # noqa: E402
from schemas import CandidateVideo, DownloadedVideo, clip_codec, clip_format, decoders, frame_times  # noqa: E402

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``fn()``, less the CPU seconds ``fn`` returns (work done before the part
    it times, by a child process whose CPU is counted only when it exits)."""
    cpu, wall = cpu_seconds(), time.monotonic()
    excluded = fn() or 0.0
    return cpu_seconds() - cpu - excluded, time.monotonic() - wall


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process so far (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_sources(root: Path, count: int, seconds: float, size: str, fps: int) -> list[Path]:
    """Gameplay-like test sources: ffmpeg's moving test pattern with noise, H.264 as YouTube serves it."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = root / f"src{i}.mp4"
        subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate={fps},noise=alls={8 + 4 * i}:allf=t", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "veryfast", "-g", str(fps * 2), "-pix_fmt", "yuv420p",
                        str(path)], check=True)
        paths.append(path)
    return paths


def downloaded(path: Path) -> DownloadedVideo:
    data = path.read_bytes()
    return DownloadedVideo(candidate=CandidateVideo(video_id=path.stem, source="bench", url=path.as_uri()),
                           path=str(path), size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def ffmpeg_pass(paths: list[Path]) -> None:
    for path in paths:
        subprocess.run([FFMPEG, "-loglevel", "error", "-threads", "1", "-i", str(path), "-vf", "fps=10,scale=160:90",
                        "-f", "null", "-"], check=True)


def decode_only(paths: list[Path]) -> None:
    for path in paths:
        index = decoders.index_video(str(path))
        plan = frame_times.plan_windows(index.duration_s)
        ticks = [frame_times.tick_of(p, index.time_base) for p in index.pts]
        windows = [frame_times.frames_for_ticks(ticks, range(w.first_tick, w.first_tick + w.num_frames))
                   for w in plan.windows]
        size = decoders.decode_size(index, 160, 90, "crop")
        for frames in decoders.decode_windows_decord(str(path), index, windows, size):
            decoders.to_output(frames, 160, 90, "crop")


def segment_all(paths: list[Path], isolated: bool, warm_up: Path | None = None,
                preset: str = clip_format.DEFAULT_PRESET) -> float:
    """Segment every file (in-process, or through one reused isolated child as the stage does); returns the
    CPU seconds of the child's warm-up on ``warm_up`` (start, imports, first decode), which a long-running
    worker pays once, not per video: reported in its own row, so excluded here."""
    config = SegmentConfig(isolate=False, x264_preset=preset)
    worker = IsolatedWorker() if isolated else None
    warm_cpu = 0.0
    try:
        if worker is not None and warm_up is not None:
            guarded_segment(downloaded(warm_up), SegmentConfig(isolate=False, clip_frames=10), worker)
            warm_cpu = process_cpu_s(worker._process.pid)
        for path in paths:
            result = guarded_segment(downloaded(path), config, worker)
            assert result.clips, result.outcomes
    finally:
        if worker is not None:
            worker.close()
    return warm_cpu


def start_isolated_worker(warm_up: Path) -> None:
    worker = IsolatedWorker()
    try:  # start-up, imports and a first tiny decode + encode: what a worker's child pays once
        guarded_segment(downloaded(warm_up), SegmentConfig(isolate=False, clip_frames=10), worker)
    finally:
        worker.close()


def pipeline_run(paths: list[Path], root: Path) -> None:
    catalog = root / "catalog.jsonl"
    with open(catalog, "w") as f:
        for path in paths:
            f.write(json.dumps({"id": path.stem, "url": path.as_uri(), "title": "Celeste speedrun gameplay",
                                "duration_s": 60}) + "\n")
    out = root / "run"
    shutil.rmtree(out, ignore_errors=True)
    assert run.main(["--catalog", str(catalog), "--output", str(out), "--in-process"]) == 0


TARGET = 1.3  # segmentation's CPU cost as a multiple of the plain ffmpeg pass (the goal)


def benchmark(args) -> None:
    with tempfile.TemporaryDirectory(prefix="segbench-") as tmp:
        root = Path(tmp)
        paths = make_sources(root, args.videos, args.seconds, args.size, args.fps)
        warm_up = make_sources(root / "warm", 1, 2.0, args.size, args.fps)[0]
        hours = args.videos * args.seconds / 3600
        jobs = [("ffmpeg -vf fps=10,scale=160:90 (reference)", lambda: ffmpeg_pass(paths)),
                ("segment: decode only", lambda: decode_only(paths)),
                ("segment", lambda: segment_all(paths, isolated=False)),
                ("segment (isolated)", lambda: segment_all(paths, isolated=True, warm_up=warm_up)),
                ("segment (isolated, --x264-preset medium)",
                 lambda: segment_all(paths, isolated=True, warm_up=warm_up, preset="medium")),
                ("isolated child's start-up (once per worker)", lambda: start_isolated_worker(warm_up))]
        if not args.skip_pipeline:
            jobs.append(("pipeline (local)", lambda: pipeline_run(paths, root)))
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in jobs}
        for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits every row alike
            for name, fn in jobs:
                samples[name].append(measure(fn))
    rows = [(name, statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
            for name, runs in samples.items()]
    ref_cpu = rows[0][1]
    print(f"\n{args.videos} x {args.seconds:g} s sources, {args.size} @ {args.fps} fps H.264 "
          f"({hours * 60:.1f} min of video); CPU = user + sys incl. child processes; median of {args.repeat}\n")
    print(f"| {'what':<44} | {'CPU s':>7} | {'wall s':>7} | {'CPU s / video hour':>18} | {'x ffmpeg':>8} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|{'-' * 20}|{'-' * 10}|")
    for name, cpu, wall in rows:
        print(f"| {name:<44} | {cpu:>7.2f} | {wall:>7.2f} | {cpu / hours:>18.0f} | {cpu / ref_cpu:>8.2f} |")
    ratios = {name: cpu / ref_cpu for name, cpu, _ in rows if name in ("segment", "segment (isolated)")}
    verdict = ", ".join(f"{name} {r:.2f}x {'meets' if r <= TARGET else 'MISSES'}" for name, r in ratios.items())
    print(f"\ntarget: segmentation within {TARGET}x of the ffmpeg pass: {verdict}")


def raw_clips(path: Path, limit: int) -> list[np.ndarray]:
    """The pipeline's 160x90 frames of the first ``limit`` clip windows of ``path``, before any encoding."""
    index = decoders.index_video(str(path))
    ticks = [frame_times.tick_of(p, index.time_base) for p in index.pts]
    plan = frame_times.plan_windows(index.duration_s)
    windows = [frame_times.frames_for_ticks(ticks, range(w.first_tick, w.first_tick + w.num_frames))
               for w in plan.windows[:limit]]
    size = decoders.decode_size(index, 160, 90, "crop")
    return [decoders.to_output(f, 160, 90, "crop") for f in decoders.decode_windows_decord(str(path), index, windows, size)]


def encoding_table(args) -> None:
    import pyarrow as pa

    groups = []
    with tempfile.TemporaryDirectory(prefix="encbench-") as tmp:
        path = Path(tmp) / "pattern.mp4"
        subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate="
                        f"{args.fps}", "-t", str(16 * args.clips), "-c:v", "libx264", "-crf", "12", str(path)],
                       check=True)
        groups.append(("ffmpeg testsrc2 pattern", raw_clips(path, args.clips)))
    if args.demo_corpus:
        demo = []
        for video in sorted(Path(args.demo_corpus).glob("videos/*.mp4")):
            try:
                demo += raw_clips(video, 1)
            except Exception:
                continue
            if len(demo) >= args.clips:
                break
        groups.append((f"demo corpus: first clip of {len(demo)} videos", demo))
    codec = pa.Codec("zstd", compression_level=3)
    for label, frames_list in groups:
        print(f"\n{len(frames_list)} clips of 160 frames, 160x90 ({label})\n")
        print("| format | bytes / clip | PSNR vs raw (dB) | encode CPU ms / clip |")
        print("|---|---|---|---|")
        raw = [_npy_bytes_raw(f) for f in frames_list]
        print(f"| raw npy | {np.mean([len(r) for r in raw]):,.0f} | lossless | - |")
        zstd = np.mean([len(codec.compress(r).to_pybytes()) for r in raw])
        print(f"| zstd-3 npy | {zstd:,.0f} | lossless | - |")
        floor = np.mean([_psnr(_yuv420_round_trip(f), f) for f in frames_list])
        print(f"| (yuv420p round trip, no compression: the floor of any 4:2:0 codec) | - | {floor:.1f} | - |")
        for preset in args.presets:
            for crf in args.crfs:
                sizes, psnrs, ms = [], [], []
                for frames in frames_list:
                    t = time.process_time()
                    data = clip_codec.encode_clip(frames, crf=crf, preset=preset)
                    ms.append((time.process_time() - t) * 1000)
                    sizes.append(len(data))
                    psnrs.append(_psnr(clip_codec.decode_clip(data), frames))
                print(f"| H.264 {preset} crf {crf} | {np.mean(sizes):,.0f} | {np.mean(psnrs):.2f} | "
                      f"{np.mean(ms):.0f} |")


def _yuv420_round_trip(frames: np.ndarray) -> np.ndarray:
    import av

    return np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
                     .reformat(format="rgb24").to_ndarray() for f in frames])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def _npy_bytes_raw(frames: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, frames)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=64.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="measurements per row; the median is reported")
    parser.add_argument("--skip-pipeline", action="store_true", help="leave out the whole-pipeline row")
    parser.add_argument("--encoding-table", action="store_true")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--crfs", type=int, nargs="+", default=[18, 20, 23, 26, 28])
    parser.add_argument("--presets", nargs="+", default=[clip_format.DEFAULT_PRESET, "medium"],
                        choices=clip_format.X264_PRESETS, help="x264 presets to tabulate (default: faster medium)")
    parser.add_argument("--demo-corpus", default=None, help="also tabulate clips from this demo corpus dir")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    encoding_table(args) if args.encoding_table else benchmark(args)


if __name__ == "__main__":
    main()
