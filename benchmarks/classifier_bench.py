"""Clips scored per CPU-second by each quality-model family, features/frame sampling included.

    .venv/bin/python benchmarks/classifier_bench.py [--clips 24] [--cnn-presets resnet18,small]

Every row does what the pipeline's quality stage does per clip: decode the stored H.264 clip
(``decode_clip``), prepare the model input (``clip_features`` or ``sample_frames``) and score in batches of
``--batch`` clips. The reference row is decoding alone, measured in the same run on the same clips, so the
ratio column says how much the model adds on top of the unavoidable decode. CPU time is process CPU time
(``time.process_time``) with one torch thread: the pipeline scales by adding workers, not threads.
Scoring speed does not depend on the weights, so the CNN rows use freshly initialised networks; the
sklearn row uses a forest fitted on the benchmark clips (tree depth, and so speed, depends on the fit).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from classifiers.models import make_model
from pipeline.tools.demo_corpus import clips as synthetic
from pipeline.tools.demo_corpus import spec
from schemas.clip_codec import decode_clip, encode_clip


def make_clips(n: int) -> tuple[list[bytes], np.ndarray]:
    n_clean = max(2, n // 2)
    n_junk_each = max(1, -(-(n - n_clean) // len(spec.JUNK_KINDS)))
    videos = synthetic.demo_videos(n_clean=n_clean, n_junk_each=n_junk_each, clips_per_video=1)
    frames = [fs[0] for _, _, fs in videos][:n]
    targets = np.array([1 if kind == "clean" else 0 for _, kind, _ in videos][:n])
    return [encode_clip(f) for f in frames], targets


def cpu_seconds(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs")
    parser.add_argument("--cnn-presets", default="resnet18,small")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    mp4s, targets = make_clips(args.clips)
    n = len(mp4s)
    print(f"{n} clips of 160 frames (160x90), batch {args.batch}, best of {args.repeat}, 1 torch thread")

    def decode_all():
        for m in mp4s:
            decode_clip(m)

    rows = [("decode only (reference)", "-", cpu_seconds(decode_all, args.repeat))]

    sk = make_model("sklearn")
    sk.fit(np.stack([sk.prepare(decode_clip(m)) for m in mp4s]), targets)
    models = [("sklearn (features + extra-trees)", sk)]
    for preset in [p for p in args.cnn_presets.split(",") if p]:
        cnn = make_model("cnn", preset)
        models.append((f"cnn {preset} ({cnn.num_parameters() / 1e6:.1f}M params)", cnn))

    for name, model in models:
        def score_all(model=model):
            for i in range(0, n, args.batch):
                batch = [model.prepare(decode_clip(m)) for m in mp4s[i:i + args.batch]]
                model.predict_proba(np.stack(batch))
        rows.append((name, model.family, cpu_seconds(score_all, args.repeat)))

    ref = rows[0][2]
    print(f"{'pipeline step per clip':<36} {'CPU s':>8} {'clips/CPU-s':>12} {'x decode cost':>14}")
    for name, _, secs in rows:
        print(f"{name:<36} {secs:>8.2f} {n / secs:>12.1f} {secs / ref:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
