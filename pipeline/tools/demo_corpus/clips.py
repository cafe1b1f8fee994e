"""Clips in the pipeline's clip format for tests and benchmarks, drawn by the demo corpus' own game player
and junk drawings: clean platformer gameplay and each junk kind the quality classifier must reject.

Why here: the demo corpus is the project's one generator of gameplay and junk. It renders whole videos for
the pipeline to download and cut; tests of the classifier and the quality stage need the same kinds of clip
without the minutes of H.264 at 640x360 in between, so this module draws them straight at the clip size,
with the same Procgen player (``games``), the same junk effects (``junk``) and the same kind names
(``spec.JUNK_KINDS``). It lives in ``pipeline/`` and not in ``classifiers/`` because ``classifiers`` imports
nothing from ``pipeline``; only tests and benchmarks import it.

Every function returns uint8 RGB frames (T, 90, 160, 3), the clip format of ``schemas.clip_format``.
Gameplay is Procgen (the ``demo`` extra); without it, a numpy-drawn side-scroller (platformers) or a field
of drifting dots (other games) stands in, so the tests still run.
"""

from __future__ import annotations

import numpy as np

from pipeline.tools.demo_corpus import games, junk, spec
from schemas import CandidateVideo, Clip, ids
from schemas.clip_codec import encode_clip
from schemas.clip_format import CLIP_FPS, CLIP_FRAMES, CLIP_HEIGHT, CLIP_SECONDS, CLIP_WIDTH

H, W = CLIP_HEIGHT, CLIP_WIDTH
KINDS = (spec.CLEAN, *spec.JUNK_KINDS)
SLIDE_HOLD = 30  # frames each slideshow still is held
MENU_BLINK_STEPS = 20  # frames "PRESS START" shows and hides (the corpus: 8)
CHAT_TEXT_SCALE, CHAT_PANEL_SHARE = 2.0, 0.8  # chat text size and panel width (the corpus: 1.0, 0.4)
# First seed of demo_videos' clean videos. Its levels hold no death fade (dark frames) in their first 32 s, so
# a clip labelled clean shows no black (levels 0 and 4 of CoinRun fade out within 30 s), and the tests' small
# corpus (6 clean videos, one per junk kind) separates at a cross-validated ROC-AUC of 0.93. How well such a
# small corpus separates depends on the levels drawn (0.64 to 0.93 over seeds 1000..7000).
CLEAN_SEED = 4000


def drawn_platformer(seed: int, n: int = CLIP_FRAMES) -> np.ndarray:
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


def drifting_dots(seed: int, n: int = CLIP_FRAMES) -> np.ndarray:
    """A top-down field of drifting dots: the stand-in for non-platformer games without Procgen."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1, size=(30, 2)) * (H, W)
    vel = rng.normal(0, 1.5, size=(30, 2))
    out = np.zeros((n, H, W, 3), np.uint8)
    out[:] = (10, 30, 80)
    for t in range(n):
        for (y, x) in (pos + vel * t) % (H - 4, W - 4):
            out[t, int(y):int(y) + 4, int(x):int(x) + 4] = (240, 200, 40)
    return out


def gameplay(seed: int, n: int = CLIP_FRAMES, game: str | None = None) -> np.ndarray:
    """``n`` frames of ``game`` (default: a platformer picked by ``seed``) played as in the demo corpus: the
    level and the sticky random player are seeded by ``seed``. Without Procgen, a drawn stand-in."""
    game = game or games.PLATFORMERS[seed % len(games.PLATFORMERS)]
    platformer = game in games.PLATFORMERS
    try:
        session = games.GameSession(game, level=seed % 100_000, rand_seed=seed)
    except ImportError:
        return drawn_platformer(seed, n) if platformer else drifting_dots(seed, n)
    policy = games.StickyPolicy(np.random.default_rng(seed), platformer=platformer)
    frames = []
    for _ in range(n):
        frames.append(games.to_frame(session.frame(), W, H))
        session.act(policy.next())
    return np.stack(frames)


# ---- the junk kinds, each spoiling gameplay frames with one effect of ``junk`` --------------------------------
def face_cam(frames: np.ndarray, seed: int) -> np.ndarray:
    """A streamer's face-cam box drifting over the gameplay (the ``facecam`` kind)."""
    cam = junk.FaceCam(np.random.default_rng(seed), box_width=round(W * junk.FACECAM_SCALE), moving=True)
    return np.stack([cam.draw(f, t) for t, f in enumerate(frames)])


def static_menu(frames: np.ndarray, seed: int, title: str = "SUPER LEVEL") -> np.ndarray:
    """A title/menu screen over the darkened first gameplay frame, for as many frames (``static_menu``);
    "PRESS START" blinks every 2 s (the corpus: 0.8 s), so most frame pairs of a clip are still."""
    menu = junk.MenuScreen(np.random.default_rng(seed), title, frames[0], blink_steps=MENU_BLINK_STEPS)
    return np.stack([menu.draw(t) for t in range(len(frames))])


def slideshow(frames: np.ndarray, seed: int, hold: int = SLIDE_HOLD) -> np.ndarray:
    """Captioned stills of the gameplay, each held for ``hold`` frames, then a hard cut (``slideshow``)."""
    stills = {i: junk.caption_slide(frames[i], f"Level {seed % 100} - screenshot {i // hold + 1}")
              for i in range(0, len(frames), hold)}
    return np.stack([stills[(t // hold) * hold] for t in range(len(frames))])


def black_fade(frames: np.ndarray) -> np.ndarray:
    """Black, with a faint fade in and out of the first gameplay frame (at most 5% bright): a clip from
    the black part of a ``black_fade`` video."""
    levels = np.clip(np.sin(np.linspace(0, np.pi, len(frames))) * 0.1 - 0.05, 0, None)
    return np.stack([junk.dim(frames[0], float(a)) for a in levels])


def text_overlay(frames: np.ndarray, seed: int) -> np.ndarray:
    """A scrolling chat wall and burnt-in subtitles over the gameplay (``text_overlay``), with text twice
    the corpus' size relative to the frame: at 160x90 the corpus' 5-pixel text blurs away in H.264."""
    chat = junk.ChatOverlay(np.random.default_rng(seed), num_lines=len(frames), text_scale=CHAT_TEXT_SCALE,
                            panel_share=CHAT_PANEL_SHARE)
    return np.stack([chat.draw(f, t) for t, f in enumerate(frames)])


def letterbox(frames: np.ndarray) -> np.ndarray:
    """Tiny gameplay in the middle of a black frame (``letterbox``)."""
    return np.stack([junk.letterbox(f, junk.LETTERBOX_SCALE) for f in frames])


def non_platformer(seed: int, n: int = CLIP_FRAMES) -> np.ndarray:
    """Gameplay of a non-platformer game (``non_platformer``)."""
    return gameplay(seed, n, games.NON_PLATFORMERS[seed % len(games.NON_PLATFORMERS)])


def junk_clip(kind: str, seed: int, n: int = CLIP_FRAMES, base: np.ndarray | None = None) -> np.ndarray:
    """One clip of a junk kind (``spec.JUNK_KINDS``); ``base``: the gameplay to spoil (rendered if None; for
    ``non_platformer``, the other game's frames)."""
    if kind == "non_platformer":
        return base if base is not None else non_platformer(seed, n)
    if kind not in spec.JUNK_KINDS:
        raise ValueError(f"unknown junk kind {kind!r}; expected one of {spec.JUNK_KINDS}")
    game = base if base is not None else gameplay(seed, n)
    if kind == "facecam":
        return face_cam(game, seed)
    if kind == "static_menu":
        return static_menu(game, seed)
    if kind == "slideshow":
        return slideshow(game, seed)
    if kind == "black_fade":
        return black_fade(game)
    if kind == "text_overlay":
        return text_overlay(game, seed)
    return letterbox(game)


def make_clip(video_id: str, clip_index: int, frames: np.ndarray, title: str = "") -> Clip:
    """A ``Clip`` record (with encoded bytes) as the segment stage would emit it."""
    start = float(CLIP_SECONDS) * clip_index
    video = CandidateVideo(video_id=video_id, source="synthetic", url=f"file:///synthetic/{video_id}.mp4",
                           title=title or video_id)
    return Clip(clip_key=ids.clip_key(video_id, start), video_id=video_id, clip_index=clip_index,
                start_s=start, end_s=start + len(frames) / CLIP_FPS, num_frames=len(frames), fps=float(CLIP_FPS),
                width=frames.shape[2], height=frames.shape[1], mp4=encode_clip(frames), video=video)


def demo_videos(n_clean: int, n_junk_each: int, clips_per_video: int = 2, frames: int = CLIP_FRAMES,
                seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """``(video_id, kind, [frames per clip])`` for ``n_clean`` clean videos and ``n_junk_each`` of each junk
    kind; video ids are the kind and a number (``clean00``, ``static_menu00``).

    Each video is one continuous game stream cut into ``clips_per_video`` clips, like a real video; junk is
    drawn over that video's gameplay, and a ``non_platformer`` video is a stream of another game.
    """
    total = frames * clips_per_video

    def cut(long: np.ndarray) -> list[np.ndarray]:
        return [long[c * frames:(c + 1) * frames] for c in range(clips_per_video)]

    out = [(f"clean{i:02d}", spec.CLEAN, cut(gameplay(seed + CLEAN_SEED + i, total))) for i in range(n_clean)]
    for k, kind in enumerate(spec.JUNK_KINDS):
        for i in range(n_junk_each):
            s = seed + 100 + 10 * k + i
            stream = non_platformer(s, total) if kind == "non_platformer" else gameplay(s, total)
            clips = [junk_clip(kind, s * 10 + c, frames, base) for c, base in enumerate(cut(stream))]
            out.append((f"{kind}{i:02d}", kind, clips))
    return out
