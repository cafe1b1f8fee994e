"""Small, real inputs for tests and benchmarks: rendered gameplay and the junk kinds the classifier must reject.

Clean clips are real Procgen renders (platformers: coinrun, jumper, ninja, climber) when ``procgen`` is
installed (the ``demo`` extra), else a scrolling numpy-drawn platformer. Junk is made the way it arises in
real videos -- by compositing onto real gameplay (face-cam, text overlay, letterbox), by freezing it
(slideshow), or from scratch (menus, black/fades) -- and non-platformer Procgen games. Every function returns
uint8 RGB frames (T, 90, 160, 3) ready for ``pipeline.clip_codec.encode_clip``.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from schemas import CandidateVideo, Clip, ShardSample, ids
from schemas.clip_codec import encode_clip
from schemas.clip_format import CLIP_FPS, CLIP_HEIGHT, CLIP_SECONDS, CLIP_WIDTH

H, W = CLIP_HEIGHT, CLIP_WIDTH
PLATFORMERS = ("coinrun", "jumper", "ninja", "climber")
NON_PLATFORMERS = ("bigfish", "starpilot", "plunder", "fruitbot")
JUNK_KINDS = ("facecam", "menu", "slideshow", "black", "text", "letterbox", "nonplatformer")


def _resize(rgb: np.ndarray) -> np.ndarray:
    """Centre-crop a square render to 16:9 and resize to 160x90."""
    h, w = rgb.shape[:2]
    ch = int(round(w * 9 / 16))
    top = max(0, (h - ch) // 2)
    return np.asarray(Image.fromarray(rgb[top:top + ch]).resize((W, H), Image.BILINEAR))


def procgen_batch(game: str, seed: int, n: int, count: int) -> np.ndarray | None:
    """(count, n, 90, 160, 3): a random policy in ``count`` parallel Procgen environments on levels
    seed..seed+count-1 (one start-up for all). None when procgen is not installed."""
    try:
        from procgen import ProcgenGym3Env
    except ImportError:
        return None
    env = ProcgenGym3Env(num=count, env_name=game, render_mode="rgb_array", distribution_mode="hard",
                         start_level=seed, num_levels=count, rand_seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        env.act(rng.integers(0, 15, size=count))
        frames.append([_resize(info["rgb"]) for info in env.get_info()])
    return np.stack(frames, axis=1)


def procgen_frames(game: str, seed: int, n: int = 160) -> np.ndarray | None:
    """``n`` frames (n, 90, 160, 3) of a random policy in one Procgen game level (None without procgen)."""
    batch = procgen_batch(game, seed, n, 1)
    return None if batch is None else batch[0]


def drawn_platformer(seed: int, n: int = 160) -> np.ndarray:
    """A numpy-drawn side-scroller: sky, scrolling ground with gaps, platforms and a jumping player."""
    rng = np.random.default_rng(seed)
    world_w = W * 8
    world = np.zeros((H, world_w, 3), np.uint8)
    world[:] = rng.integers(60, 200, size=3)
    ground = 70
    world[ground:] = rng.integers(40, 160, size=3)
    for x in range(0, world_w, 40):
        if rng.random() < 0.3:
            world[ground:, x:x + 16] = world[0, 0]
        y = int(rng.integers(30, 60))
        world[y:y + 5, x + 10:x + 34] = rng.integers(0, 255, size=3)
    frames = []
    for t in range(n):
        x0 = (t * 4) % (world_w - W)
        f = world[:, x0:x0 + W].copy()
        py = ground - 10 - int(abs(np.sin(t / 4)) * 20)
        f[py:py + 10, 40:48] = (230, 40, 40)
        frames.append(f)
    return np.stack(frames)


def gameplay(seed: int, n: int = 160, game: str | None = None) -> np.ndarray:
    """Clean platformer gameplay (Procgen when available)."""
    game = game or PLATFORMERS[seed % len(PLATFORMERS)]
    frames = procgen_frames(game, seed, n)
    return frames if frames is not None else drawn_platformer(seed, n)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def face_cam(frames: np.ndarray, seed: int) -> np.ndarray:
    """A streamer's webcam box (a drawn face that moves a little) in a corner over the gameplay."""
    rng = np.random.default_rng(seed)
    bw, bh = 56, 44
    x0, y0 = (W - bw - 2, H - bh - 2) if seed % 2 else (2, 2)
    skin = tuple(int(v) for v in rng.integers([190, 130, 100], [235, 175, 140]))
    out = frames.copy()
    for t in range(len(frames)):
        cam = Image.new("RGB", (bw, bh), (40, 40, 48))
        d = ImageDraw.Draw(cam)
        dx, dy = int(3 * np.sin(t / 7 + seed)), int(2 * np.sin(t / 5))
        d.ellipse((14 + dx, 5 + dy, 42 + dx, 40 + dy), fill=skin)
        d.ellipse((21 + dx, 16 + dy, 25 + dx, 20 + dy), fill=(30, 30, 30))
        d.ellipse((31 + dx, 16 + dy, 35 + dx, 20 + dy), fill=(30, 30, 30))
        d.line((23 + dx, 31 + dy, 33 + dx, 31 + dy + (t // 3) % 3), fill=(120, 30, 30), width=2)
        out[t, y0:y0 + bh, x0:x0 + bw] = np.asarray(cam)
    return out


def menu(seed: int, n: int = 160) -> np.ndarray:
    """A static game menu: flat background, a title and option lines; the highlight moves now and then."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(0, 90, size=3))
    options = ["START GAME", "CONTINUE", "OPTIONS", "CREDITS", "QUIT"]
    frames = []
    for t in range(n):
        img = Image.new("RGB", (W, H), bg)
        d = ImageDraw.Draw(img)
        d.text((30, 4), "SUPER LEVEL", fill=(250, 220, 60), font=_font(14))
        sel = (t // 40 + seed) % len(options)
        for i, opt in enumerate(options):
            colour = (255, 255, 255) if i == sel else (150, 150, 150)
            d.text((50, 24 + 12 * i), opt, fill=colour, font=_font(10))
        frames.append(np.asarray(img))
    return np.stack(frames)


def slideshow(frames: np.ndarray, hold: int = 30) -> np.ndarray:
    """Stills of the gameplay, each held for ``hold`` frames, then a hard cut."""
    idx = (np.arange(len(frames)) // hold) * hold
    return frames[idx].copy()


def black(seed: int, n: int = 160) -> np.ndarray:
    """Black screen with a slow fade in and out of a dim gameplay frame (loading/transition)."""
    base = drawn_platformer(seed, 1)[0].astype(np.float32)
    level = np.clip(np.sin(np.linspace(0, np.pi, n)) * 0.15 - 0.05, 0, None)
    return (base[None] * level[:, None, None, None]).astype(np.uint8)


def text_overlay(frames: np.ndarray, seed: int) -> np.ndarray:
    """Gameplay mostly hidden under plates of text (subscribe banners, chat walls)."""
    rng = np.random.default_rng(seed)
    words = ["SUBSCRIBE", "LIKE", "CHAT", "donate", "WORLD RECORD", "new PB!!", "follow", "sponsor", "giveaway"]
    out = frames.copy()
    plate = Image.new("RGB", (W, 60), (245, 245, 245))
    d = ImageDraw.Draw(plate)
    for row in range(5):
        line = " ".join(rng.choice(words, size=4))
        d.text((2, 1 + 12 * row), line, fill=(10, 10, 10), font=_font(10))
    out[:, 15:75] = np.asarray(plate)
    return out


def letterbox(frames: np.ndarray, scale: float = 0.45) -> np.ndarray:
    """Tiny gameplay in the middle of a black frame (a capture of a capture)."""
    h, w = int(H * scale) // 2 * 2, int(W * scale) // 2 * 2
    y0, x0 = (H - h) // 2, (W - w) // 2
    out = np.zeros_like(frames)
    for t, f in enumerate(frames):
        out[t, y0:y0 + h, x0:x0 + w] = np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
    return out


def non_platformer(seed: int, n: int = 160) -> np.ndarray:
    """A non-platformer Procgen game; without procgen, a top-down field of drifting dots."""
    frames = procgen_frames(NON_PLATFORMERS[seed % len(NON_PLATFORMERS)], seed, n)
    if frames is not None:
        return frames
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1, size=(30, 2)) * (H, W)
    vel = rng.normal(0, 1.5, size=(30, 2))
    out = np.zeros((n, H, W, 3), np.uint8)
    out[:] = (10, 30, 80)
    for t in range(n):
        for (y, x) in (pos + vel * t) % (H - 4, W - 4):
            out[t, int(y):int(y) + 4, int(x):int(x) + 4] = (240, 200, 40)
    return out


def junk(kind: str, seed: int, n: int = 160, base: np.ndarray | None = None) -> np.ndarray:
    """One clip of a junk kind (see ``JUNK_KINDS``); ``base``: the gameplay to spoil (rendered if None)."""
    def game() -> np.ndarray:
        return base if base is not None else gameplay(seed, n)
    if kind == "facecam":
        return face_cam(game(), seed)
    if kind == "menu":
        return menu(seed, n)
    if kind == "slideshow":
        return slideshow(game())
    if kind == "black":
        return black(seed, n)
    if kind == "text":
        return text_overlay(game(), seed)
    if kind == "letterbox":
        return letterbox(game())
    if kind == "nonplatformer":
        return base if base is not None else non_platformer(seed, n)
    raise ValueError(f"unknown junk kind {kind!r}; expected one of {JUNK_KINDS}")


def make_clip(video_id: str, clip_index: int, frames: np.ndarray, title: str = "") -> Clip:
    """A ``Clip`` record (with encoded bytes) as the segment stage would emit it."""
    start = float(CLIP_SECONDS * clip_index)
    video = CandidateVideo(video_id=video_id, source="synthetic", url=f"file:///synthetic/{video_id}.mp4",
                           title=title or video_id)
    return Clip(clip_key=ids.clip_key(video_id, start), video_id=video_id, clip_index=clip_index,
                start_s=start, end_s=start + len(frames) / CLIP_FPS, num_frames=len(frames), fps=float(CLIP_FPS),
                width=frames.shape[2], height=frames.shape[1], mp4=encode_clip(frames), video=video)


def write_shard(path: str, clips: list[Clip]) -> str:
    """Write clips into one WebDataset tar in the pipeline's shard format."""
    import webdataset as wds

    with wds.TarWriter(path) as sink:
        for clip in clips:
            sink.write(ShardSample.from_clip(clip.replace(location=os.path.basename(path))).to_wds())
    return path


def demo_videos(n_clean: int, n_junk_each: int, clips_per_video: int = 2, frames: int = 160,
                seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """``(video_id, kind, [frames per clip])`` for clean platformer videos and each junk kind.

    Each video is one continuous render (one Procgen episode stream) cut into ``clips_per_video`` clips,
    like a real video; junk is composited onto that video's gameplay.
    """
    total = frames * clips_per_video
    streams: dict[tuple[str, int], np.ndarray] = {}  # (kind, index) -> one video's continuous frames

    def render(kind: str, games: tuple[str, ...], count: int, base_seed: int) -> None:
        for g, game in enumerate(games):
            idx = list(range(g, count, len(games)))
            if not idx:
                continue
            batch = procgen_batch(game, base_seed + 1000 * g, total, len(idx))
            for j, i in enumerate(idx):
                if batch is not None:
                    streams[(kind, i)] = batch[j]
                elif kind == "nonplatformer":
                    streams[(kind, i)] = non_platformer(base_seed + i, total)
                else:
                    streams[(kind, i)] = drawn_platformer(base_seed + i, total)

    render("clean", PLATFORMERS, n_clean, seed)
    spoiled = [k for k in JUNK_KINDS if k not in ("menu", "black", "nonplatformer")]
    render("base", PLATFORMERS, n_junk_each * len(spoiled), seed + 500)
    render("nonplatformer", NON_PLATFORMERS, n_junk_each, seed + 700)

    def cut(long: np.ndarray) -> list[np.ndarray]:
        return [long[c * frames:(c + 1) * frames] for c in range(clips_per_video)]

    out = [(f"clean{i:02d}", "clean", cut(streams[("clean", i)])) for i in range(n_clean)]
    for kind in JUNK_KINDS:
        for i in range(n_junk_each):
            s = seed + 100 + 10 * JUNK_KINDS.index(kind) + i
            if kind == "nonplatformer":
                clips = cut(streams[("nonplatformer", i)])
            elif kind in ("menu", "black"):
                clips = [junk(kind, s * 10 + c, frames) for c in range(clips_per_video)]
            else:
                base = cut(streams[("base", spoiled.index(kind) * n_junk_each + i)])
                clips = [junk(kind, s * 10 + c, frames, base[c]) for c in range(clips_per_video)]
            out.append((f"{kind}{i:02d}", kind, clips))
    return out
