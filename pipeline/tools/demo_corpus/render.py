"""Render one planned video: compose each game step's picture, encode it, and write the actions sidecar.

Step i is shown for ``FRAMES_PER_STEP`` video frames. Its recorded action a_i is the action taken after
step i's picture, i.e. the one that produces step i+1's picture; a step whose successor is not a game
picture (a menu, a slide, black, or the end of the video) records -1 and the game is not advanced, so every
recorded action is visible in the next frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.tools.demo_corpus import games, junk, spec
from pipeline.tools.demo_corpus.encode import H264Writer
from schemas import ids

SLIDE_HOLD_S = (3.0, 5.5)  # each slideshow still is shown this long


@dataclasses.dataclass(frozen=True)
class RenderResult:
    video_id: str
    file: str  # relative to the corpus root
    actions_file: str
    num_steps: int
    num_frames: int
    size_bytes: int
    sha256: str


def video_relpath(video_id: str) -> str:
    return f"videos/{ids.storage_name(video_id, 'mp4')}"


def actions_relpath(video_id: str) -> str:
    return f"actions/{ids.storage_name(video_id, 'json')}"


def to_frame(render: np.ndarray) -> np.ndarray:
    """A 512x512 Procgen render -> the 640x360 video frame (central 16:9 band, scaled up)."""
    return games.to_frame(render, spec.WIDTH, spec.HEIGHT)


class _Slides:
    """Stills of Procgen levels (several games, random moments), each held a few seconds."""

    def __init__(self, rng: np.random.Generator, title: str):
        self.rng, self.title = rng, title
        self.current: np.ndarray | None = None
        self.left, self.count = 0, 0

    def draw(self) -> np.ndarray:
        if self.left == 0:
            game = (games.PLATFORMERS + games.NON_PLATFORMERS)[self.rng.integers(8)]
            session = games.GameSession(game, level=int(self.rng.integers(100_000)),
                                        rand_seed=int(self.rng.integers(2**31 - 1)))
            policy = games.StickyPolicy(self.rng, platformer=game in games.PLATFORMERS)
            for _ in range(int(self.rng.integers(0, 60))):
                session.act(policy.next())
            self.count += 1
            self.current = junk.caption_slide(to_frame(session.frame()), f"{self.title} - screenshot {self.count}")
            self.left = round(float(self.rng.uniform(*SLIDE_HOLD_S)) * spec.STEP_FPS)
        self.left -= 1
        return self.current


def render_steps(video: spec.VideoSpec) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(frame 360x640x3 uint8, action)`` for each step of ``video``."""
    rng = np.random.default_rng(video.seed)
    session = games.GameSession(video.game, level=video.level, rand_seed=video.seed)
    policy = games.StickyPolicy(rng, platformer=video.game in games.PLATFORMERS)
    title = video.game.upper()
    menu = junk.MenuScreen(rng, title, to_frame(session.frame()))
    slides = _Slides(rng, title.title())
    overlay = None
    if video.overlay in (spec.FACECAM, spec.FACECAM_SMALL):
        scale = junk.FACECAM_SCALE if video.overlay == spec.FACECAM else junk.FACECAM_SMALL_SCALE
        overlay = junk.FaceCam(rng, box_width=round(spec.WIDTH * scale), moving=video.overlay == spec.FACECAM)
    elif video.overlay == spec.CHAT:
        overlay = junk.ChatOverlay(rng)

    contents = [seg.content for seg in video.segments for _ in range(seg.num_steps)]
    offsets = [k for seg in video.segments for k in range(seg.num_steps)]
    lengths = [seg.num_steps for seg in video.segments for _ in range(seg.num_steps)]
    for step, content in enumerate(contents):
        action = games.NO_ACTION
        if content in spec.GAME_CONTENTS:
            frame = to_frame(session.frame())
            if content == spec.FADE_OUT:
                frame = junk.dim(frame, 1 - (offsets[step] + 1) / lengths[step])
            elif content == spec.FADE_IN:
                frame = junk.dim(frame, (offsets[step] + 1) / lengths[step])
            if step + 1 < len(contents) and contents[step + 1] in spec.GAME_CONTENTS:
                action = policy.next()
                session.act(action)
        elif content == spec.MENU:
            frame = menu.draw(step)
        elif content == spec.SLIDES:
            frame = slides.draw()
        elif content == spec.BLACK:
            frame = np.zeros((spec.HEIGHT, spec.WIDTH, 3), np.uint8)
        else:
            raise ValueError(f"unknown segment content {content!r}")
        if video.overlay == spec.LETTERBOX:
            frame = junk.letterbox(frame, junk.LETTERBOX_SCALE)
        elif overlay is not None:
            frame = overlay.draw(frame, step)
        yield frame, action


def actions_sidecar(video: spec.VideoSpec, actions: list[int]) -> dict:
    """The sidecar JSON (team contract): actions[i] is taken after step i's frames 3i..3i+2."""
    return {"video_id": video.video_id, "game": video.game, "video_fps": spec.VIDEO_FPS,
            "step_fps": spec.STEP_FPS, "frames_per_step": spec.FRAMES_PER_STEP, "num_steps": len(actions),
            "actions": actions, "action_names": list(games.ACTION_NAMES), "num_actions": games.NUM_ACTIONS}


def render_video(video: spec.VideoSpec, root: str | Path) -> RenderResult:
    """Write ``video``'s mp4 and actions sidecar under ``root``; returns what was written."""
    root = Path(root)
    mp4, sidecar = root / video_relpath(video.video_id), root / actions_relpath(video.video_id)
    actions: list[int] = []
    with H264Writer(mp4, spec.WIDTH, spec.HEIGHT) as writer:
        for frame, action in render_steps(video):
            writer.write(frame, repeat=spec.FRAMES_PER_STEP)
            actions.append(action)
        num_frames = writer.frames_written
    text = json.dumps(actions_sidecar(video, actions), ensure_ascii=False)
    tmp = sidecar.with_name(sidecar.name + ".part")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(sidecar)
    data = mp4.read_bytes()
    return RenderResult(video_id=video.video_id, file=video_relpath(video.video_id),
                        actions_file=actions_relpath(video.video_id), num_steps=len(actions),
                        num_frames=num_frames, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
