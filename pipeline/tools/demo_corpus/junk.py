"""Pictures of the low-quality video kinds the quality filter must learn to reject.

Each function draws one kind of defect seen in real gameplay uploads: a streamer's face-cam box, a static
title/menu screen, a slideshow of stills, fades to black, chat/subtitle text over the game, and a tiny
letterboxed picture. They are drawn with Pillow from a seeded generator, so they are reproducible, and each
is cheap enough to redraw at the corpus' 10 game steps per second.

This module is the one implementation of each junk effect: the demo corpus draws them on its 640x360
video frames, and ``pipeline.tools.demo_corpus.clips`` draws the same effects on 160x90 clips for the classifier
tests and benchmarks. Pixel sizes (fonts, margins, line heights) are written for a 360-pixel-high frame and
scale with the frame's height (``px``), so at 640x360 every drawing is exactly what it was written as.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36))
WALL_COLOURS = ((58, 52, 74), (40, 60, 70), (80, 62, 50), (30, 30, 36))
SHIRT_COLOURS = ((200, 40, 40), (40, 90, 200), (30, 30, 30), (230, 230, 230), (60, 150, 80))
CHAT_NAMES = ("xXgamerXx", "pixel_pete", "jumpqueen", "Nightbot", "coinfan99", "speedy_g", "lurker42",
              "mod_anna", "retro_rick", "kappa_king")
CHAT_WORDS = ("LUL", "PogChamp", "gg", "nice jump", "so close", "first try", "KEKW", "why left??", "skip",
              "W", "clip it", "rip", "go right", "that was clean", "monkaS", "lets gooo", "ez", "F", "chat is",
              "5Head", "no way", "sub hype", "hi from Brazil", "what level is this")


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: the same glyphs on every machine, so renders are reproducible."""
    return ImageFont.load_default(size=size)


FACECAM_SCALE = 0.4  # the face-cam box of the facecam kind, as a share of the frame's width
FACECAM_SMALL_SCALE = 0.2  # ... of the mixed small_facecam kind
LETTERBOX_SCALE = 0.25  # the tiny picture of the letterbox kind, as a share of the frame's width
REFERENCE_HEIGHT = 360  # the demo corpus' frame height: the pixel sizes in this module are written for it


def px(size: float, height: int) -> int:
    """``size`` pixels of a ``REFERENCE_HEIGHT``-high frame, on a frame ``height`` pixels high (at least 1)."""
    return max(1, round(size * height / REFERENCE_HEIGHT))


def dim(frame: np.ndarray, alpha: float) -> np.ndarray:
    """Fade ``frame`` towards black: alpha 1 = unchanged, 0 = black."""
    return (frame.astype(np.float32) * max(0.0, min(1.0, alpha))).astype(np.uint8)


def letterbox(frame: np.ndarray, scale: float) -> np.ndarray:
    """Shrink ``frame`` to ``scale`` of its width and centre it in a black frame of the original size."""
    height, width = frame.shape[:2]
    inner_width = round(width * scale) // 2 * 2
    inner_height = round(inner_width * height / width)
    small = Image.fromarray(frame).resize((inner_width, inner_height), Image.BILINEAR)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(small, ((width - inner_width) // 2, (height - inner_height) // 2))
    return np.asarray(canvas)


class FaceCam:
    """A streamer's webcam box: a face that talks, blinks and bobs, in a box that drifts over the game."""

    def __init__(self, rng: np.random.Generator, box_width: int, moving: bool):
        self.w, self.h = box_width, box_width * 3 // 4
        self.moving = moving
        self.skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
        self.wall = WALL_COLOURS[rng.integers(len(WALL_COLOURS))]
        self.shirt = SHIRT_COLOURS[rng.integers(len(SHIRT_COLOURS))]
        self.hair = tuple(int(c) for c in rng.integers(10, 90, size=3))
        self.phase = rng.uniform(0, 2 * math.pi, size=2)
        self.mouth = rng.uniform(0, 1, size=4096)  # per-step mouth opening: talking
        self.blinks = set(int(s) for s in np.cumsum(rng.integers(20, 50, size=200)))

    def _face(self, step: int, border: int) -> Image.Image:
        w, h = self.w, self.h
        img = Image.new("RGB", (w, h), self.wall)
        d = ImageDraw.Draw(img)
        d.rectangle([int(w * 0.05), int(h * 0.1), int(w * 0.3), int(h * 0.18)], fill=(110, 80, 50))  # shelf
        bob = 0.03 * h * math.sin(step * 0.35)
        cx, cy = w * 0.5 + 0.04 * w * math.sin(step * 0.11), h * 0.48 + bob
        fw, fh = w * 0.2, h * 0.3
        d.ellipse([w * 0.18, h * 0.78 + bob, w * 0.82, h * 1.4 + bob], fill=self.shirt)  # shoulders
        d.rectangle([cx - fw * 0.35, cy + fh * 0.6, cx + fw * 0.35, h * 0.85 + bob], fill=self.skin)  # neck
        d.ellipse([cx - fw * 1.08, cy - fh * 1.12, cx + fw * 1.08, cy + fh * 0.5], fill=self.hair)
        d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=self.skin)
        eye_h = fh * (0.02 if step in self.blinks else 0.14)
        for ex in (cx - fw * 0.4, cx + fw * 0.4):
            d.ellipse([ex - fw * 0.14, cy - fh * 0.25 - eye_h, ex + fw * 0.14, cy - fh * 0.25 + eye_h],
                      fill=(35, 25, 20))
        mouth_h = fh * (0.04 + 0.22 * self.mouth[step % len(self.mouth)])
        d.ellipse([cx - fw * 0.35, cy + fh * 0.45 - mouth_h, cx + fw * 0.35, cy + fh * 0.45 + mouth_h],
                  fill=(120, 30, 40))
        d.arc([cx - fw * 1.25, cy - fh * 1.3, cx + fw * 1.25, cy + fh * 0.6], 180, 360, fill=(20, 20, 20),
              width=max(2, w // 40))  # headphones
        d.rectangle([0, 0, w - 1, h - 1], outline=(145, 70, 255), width=border)
        return img

    def draw(self, frame: np.ndarray, step: int) -> np.ndarray:
        height, width = frame.shape[:2]
        if self.moving:
            x = (width - self.w) * (0.5 + 0.5 * math.sin(step / 37 + self.phase[0]))
            y = (height - self.h) * (0.5 + 0.5 * math.sin(step / 23 + self.phase[1]))
        else:  # bottom-right corner, as most streams place it
            x, y = width - self.w - px(8, height), height - self.h - px(8, height)
        canvas = Image.fromarray(frame)
        canvas.paste(self._face(step, px(3, height)), (int(x), int(y)))
        return np.asarray(canvas)


class ChatOverlay:
    """Heavy text: a scrolling chat panel over the right of the picture and large burnt-in subtitles."""

    LINE_STEPS = 4  # a new chat line every 0.4 s

    def __init__(self, rng: np.random.Generator, num_lines: int = 4096, text_scale: float = 1.0,
                 panel_share: float = 0.4):
        self.text_scale = text_scale  # text sizes relative to the frame (2: twice the corpus' size)
        self.panel_share = panel_share  # the chat panel's share of the frame's width, at the right
        self.lines = [f"{CHAT_NAMES[rng.integers(len(CHAT_NAMES))]}: "
                      + " ".join(CHAT_WORDS[i] for i in rng.integers(len(CHAT_WORDS), size=rng.integers(1, 4)))
                      for _ in range(num_lines)]
        self.subtitles = [" ".join(CHAT_WORDS[i] for i in rng.integers(len(CHAT_WORDS), size=3)).upper()
                          for _ in range(num_lines)]
        self.colours = [tuple(int(c) for c in rng.integers(120, 256, size=3)) for _ in range(num_lines)]

    def draw(self, frame: np.ndarray, step: int) -> np.ndarray:
        height, width = frame.shape[:2]

        def size(v: int) -> int:
            return px(v * self.text_scale, height)

        canvas = Image.fromarray(frame)
        panel = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        d = ImageDraw.Draw(panel)
        x0 = int(width * (1 - self.panel_share))
        d.rectangle([x0, 0, width, height], fill=(10, 10, 20, 190))
        line_h = size(26)
        newest = step // self.LINE_STEPS
        offset = (step % self.LINE_STEPS) * line_h // self.LINE_STEPS  # smooth scroll
        for row in range(height // line_h + 2):
            i = newest - row
            if i < 0:
                break
            y = height - size(60) - row * line_h - offset + line_h
            d.text((x0 + size(8), y), self.lines[i % len(self.lines)], font=font(size(20)),
                   fill=self.colours[i % len(self.colours)] + (255,))
        sub = self.subtitles[(step // 20) % len(self.subtitles)]
        d.rectangle([0, height - size(56), width, height], fill=(0, 0, 0, 170))
        d.text((width // 2, height - size(28)), sub, font=font(size(34)), fill=(255, 255, 80, 255),
               anchor="mm", stroke_width=size(2), stroke_fill=(0, 0, 0, 255))
        canvas = Image.alpha_composite(canvas.convert("RGBA"), panel).convert("RGB")
        return np.asarray(canvas)


class MenuScreen:
    """A static title/menu screen: big game title, menu items, a blinking "PRESS START", a cursor that
    moves now and then. Over a darkened still of the game, as real title screens are."""

    ITEMS = ("NEW GAME", "CONTINUE", "OPTIONS", "EXTRAS")

    def __init__(self, rng: np.random.Generator, title: str, background: np.ndarray, blink_steps: int = 8):
        self.title = title
        self.blink_steps = blink_steps  # "PRESS START" shows and hides for this many steps each
        self.background = dim(background, 0.35)
        self.cursor_moves = set(int(s) for s in np.cumsum(rng.integers(40, 120, size=200)))
        self.accent = tuple(int(c) for c in rng.integers(150, 256, size=3))
        self._cache: dict[tuple[int, bool], np.ndarray] = {}
        self._cursor, self._last_step = 0, -1

    def draw(self, step: int) -> np.ndarray:
        for s in range(self._last_step + 1, step + 1):
            if s in self.cursor_moves:
                self._cursor = (self._cursor + 1) % len(self.ITEMS)
        self._last_step = step
        blink = (step // self.blink_steps) % 2 == 0
        key = (self._cursor, blink)
        if key not in self._cache:
            self._cache[key] = self._render(*key)
        return self._cache[key]

    def _render(self, cursor: int, blink: bool) -> np.ndarray:
        img = Image.fromarray(self.background)
        d = ImageDraw.Draw(img)
        width, height = img.size
        d.text((width // 2, height * 0.22), self.title, font=font(px(56, height)), fill=self.accent, anchor="mm",
               stroke_width=px(3, height), stroke_fill=(0, 0, 0))
        arrow_x, arrow_tip, arrow_h = width // 2 - px(110, height), width // 2 - px(96, height), px(8, height)
        for i, item in enumerate(self.ITEMS):
            y = height * 0.45 + i * px(34, height)
            colour = (255, 255, 255) if i == cursor else (150, 150, 150)
            d.text((width // 2, y), item, font=font(px(26, height)), fill=colour, anchor="mm")
            if i == cursor:
                d.polygon([(arrow_x, y - arrow_h), (arrow_x, y + arrow_h), (arrow_tip, y)], fill=self.accent)
        if blink:
            d.text((width // 2, height * 0.9), "PRESS START", font=font(px(22, height)), fill=(255, 255, 255),
                   anchor="mm")
        return np.asarray(img)


def caption_slide(still: np.ndarray, caption: str) -> np.ndarray:
    """A slideshow still with a caption bar, as photo-guide videos show them."""
    img = Image.fromarray(still)
    d = ImageDraw.Draw(img)
    width, height = img.size
    d.rectangle([0, height - px(44, height), width, height], fill=(245, 245, 235))
    d.text((px(14, height), height - px(22, height)), caption, font=font(px(24, height)), fill=(20, 20, 20),
           anchor="lm")
    return np.asarray(img)
