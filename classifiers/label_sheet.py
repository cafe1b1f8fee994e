"""``python -m classifiers label-sheet``: a self-contained HTML page for hand-labelling a stratified sample of clips.

Built for the paper's pace (10k videos in about ten hours): clips play as animated previews (every 4th frame),
keys 1-5 score the focused clip and move on, and "Save labels" downloads a CSV that ``classifiers.labels`` loads
as is. Labels survive a reload (localStorage, keyed by a hash of the sheet's clip keys). Images are embedded as
data URLs, so the file needs no server and can be mailed to a labeller.

Sampling is stratified so a small sheet still covers the data: at most ``per_video`` clips per video, spread over
its length, videos drawn at random (seeded); with ``--model`` also spread over score bins, so the labeller sees
the uncertain middle. The first pass over the shards keeps metadata only (a run's clips can exceed memory); only
the picked clips, and with ``--model`` the candidates, scored in one batch, are decoded.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import html
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from classifiers.clip_source import iter_samples
from schemas import Clip
from schemas.cli import StrictParser
from schemas.clip_codec import decode_clip
from schemas.figures import encode_image

TEMPLATE = Path(__file__).with_name("label_sheet.html")
PREVIEW_STEP = 4  # every 4th frame
PREVIEW_MS = 100  # per preview frame: 4x real time
PREVIEW_QUALITY = 70  # lossy WebP quality: plenty for judging a clip


@dataclasses.dataclass(frozen=True)
class SheetConfig:
    clips: str  # run output dir, shard glob or brace pattern
    out: str  # the HTML file to write
    n: int = 48  # clips on the sheet
    per_video: int = 2  # at most this many clips of one video
    seed: int = 0
    model: str | None = None  # optional model dir: stratify by its score too
    score_bins: int = 5
    labeller: str = ""  # prefilled labeller name


def spread_candidates(clips: list[Clip], per_video: int, seed: int) -> list[Clip]:
    """The clips a sheet is drawn from, in a seeded random order: <= ``per_video`` per video, evenly spread
    over its length."""
    rng = np.random.default_rng(seed)
    by_video: dict[str, list[Clip]] = {}
    for c in clips:
        by_video.setdefault(c.video_id, []).append(c)
    candidates: list[Clip] = []
    for vid in sorted(by_video):
        vc = sorted(by_video[vid], key=lambda c: c.start_s)
        take = np.unique(np.linspace(0, len(vc) - 1, min(per_video, len(vc))).round().astype(int))
        candidates.extend(vc[i] for i in take)
    order = rng.permutation(len(candidates))
    return [candidates[i] for i in order]


def stratified_sample(clips: list[Clip], n: int, per_video: int, seed: int,
                      scores: dict[str, float] | None = None, bins: int = 5) -> list[Clip]:
    """Pick up to ``n`` clips: <= ``per_video`` per video, evenly spread in time, and over score bins.
    ``scores`` needs the clips of ``spread_candidates(clips, per_video, seed)`` only."""
    candidates = spread_candidates(clips, per_video, seed)
    if scores:
        edges = np.linspace(0, 1, bins + 1)
        strata: list[list[Clip]] = [[] for _ in range(bins)]
        for c in candidates:
            strata[min(bins - 1, int(np.searchsorted(edges, scores[c.clip_key], side="right") - 1))].append(c)
    else:
        strata = [candidates]
    picked: list[Clip] = []
    while len(picked) < n and any(strata):  # round-robin over strata
        for s in strata:
            if s and len(picked) < n:
                picked.append(s.pop(0))
    return sorted(picked, key=lambda c: (c.video_id, c.start_s))


def preview_webp(frames: np.ndarray) -> bytes:
    """An animated, looping WebP of every ``PREVIEW_STEP``-th frame (about a third of a GIF's size: a
    48-clip sheet stays a few MB)."""
    images = [Image.fromarray(f) for f in frames[::PREVIEW_STEP]]
    return encode_image(images[0], "WEBP", save_all=True, append_images=images[1:], duration=PREVIEW_MS, loop=0,
                        quality=PREVIEW_QUALITY, method=4)


def sheet_id(keys: list[str]) -> str:
    """Names a sheet by its clips (the page's localStorage key): same clips, same id."""
    return hashlib.sha256(json.dumps(keys).encode("utf-8")).hexdigest()[:16]


def render_sheet(items: list[dict], labeller: str = "", title: str = "Clip quality labels") -> str:
    """The page: the template with the items (key, video, start, preview) and the sheet id embedded as JSON."""
    data = json.dumps({"items": items, "labeller": labeller, "sheet": sheet_id([it["key"] for it in items])},
                      ensure_ascii=True)
    # no markup can leave the JSON script block, whatever a (hostile) video title holds
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = TEMPLATE.read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def _mp4s(source: str, keys: set[str]) -> dict[str, bytes]:
    """The encoded bytes of the clips ``keys`` (another read of the shards, keeping only those)."""
    return {s.clip.clip_key: s.clip.mp4 for s in iter_samples(source) if s.clip.clip_key in keys}


def score_clips(model_dir: str, source: str, keys: set[str]) -> dict[str, float]:
    """P(good) of the clips ``keys`` by a model directory: each clip is decoded and reduced to the model's
    input as it is read (its frames are not kept), then all are scored in one ``predict_proba`` call."""
    from classifiers.artifact import load_classifier

    model = load_classifier(model_dir).model
    prepared = {s.clip.clip_key: model.prepare(decode_clip(s.clip.mp4))
                for s in iter_samples(source) if s.clip.clip_key in keys}
    if not prepared:
        return {}
    probs = model.predict_proba(np.stack(list(prepared.values())))
    return {key: float(p) for key, p in zip(prepared, probs, strict=True)}


def build_sheet(config: SheetConfig, log=None) -> Path:
    log = log or sys.stderr
    # metadata only (last sample wins for a repeated key); the mp4 bytes are read again for the picked clips
    clips = list({s.clip.clip_key: s.clip.replace(mp4=None) for s in iter_samples(config.clips)}.values())
    scores = None
    if config.model:
        candidates = {c.clip_key for c in spread_candidates(clips, config.per_video, config.seed)}
        scores = score_clips(config.model, config.clips, candidates)
    picked = stratified_sample(clips, config.n, config.per_video, config.seed, scores, config.score_bins)
    mp4 = _mp4s(config.clips, {c.clip_key for c in picked})
    items = []
    for c in picked:
        frames = decode_clip(mp4[c.clip_key])
        items.append({"key": c.clip_key, "video": c.video_id, "start_s": c.start_s,
                      "title": c.video.title if c.video else "",
                      "score": None if scores is None else round(scores[c.clip_key], 4),
                      "preview": base64.b64encode(preview_webp(frames)).decode("ascii")})
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_sheet(items, config.labeller), encoding="utf-8")
    print(f"label-sheet: {len(items)} clips from {len({c.video_id for c in picked})} videos -> {out}", file=log)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", required=True, help="pipeline output dir, shard glob, or brace pattern")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--n", type=int, default=48, help="clips on the sheet")
    parser.add_argument("--per-video", type=int, default=2, help="at most this many clips per video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="model dir: also stratify by its score")
    parser.add_argument("--labeller", default="", help="prefill the labeller name")


def main(argv: list[str] | None = None) -> int:
    parser = StrictParser(prog="python -m classifiers label-sheet", epilog="See docs/classifier.md.",
                          description="Write a self-contained HTML page for hand-labelling a stratified sample of "
                                      "clips (keys 1-5 score a clip, \"Save labels\" downloads a label CSV).")
    add_arguments(parser)
    a = parser.parse_args(argv)
    build_sheet(SheetConfig(a.clips, a.out, a.n, a.per_video, a.seed, a.model, labeller=a.labeller))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
