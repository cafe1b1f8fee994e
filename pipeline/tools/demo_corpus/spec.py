"""The corpus plan: which videos to render (kind, game, seed, segments, label) and which catalog rows to write.

The plan is pure data computed from ``(seed, scale, faults)``, so tests can check it (every junk kind is
present, every search filter is exercised) without rendering anything, and rendering it twice gives the
same files. Each video is a list of segments (gameplay, menu, slides, black, fades) plus an optional
overlay (face-cam, chat, letterbox) drawn over every frame.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np

from pipeline.tools.demo_corpus import games, titles
from schemas.clip_format import CLIP_FPS

VIDEO_FPS = 30
STEP_FPS = CLIP_FPS  # game steps per second of video: the clip rate, so clip frame k shows step k
FRAMES_PER_STEP = VIDEO_FPS // STEP_FPS
WIDTH, HEIGHT = 640, 360

# Segment contents. GAME-like contents step the game (and record actions); the others record -1.
GAME, FADE_OUT, FADE_IN, MENU, SLIDES, BLACK = "game", "fade_out", "fade_in", "menu", "slides", "black"
GAME_CONTENTS = (GAME, FADE_OUT, FADE_IN)

# Overlays drawn over every frame of a video.
FACECAM, FACECAM_SMALL, CHAT, LETTERBOX = "facecam", "facecam_small", "chat", "letterbox"

# Video kinds: clean gameplay, the junk the quality filter must reject (label 1), and mixed ones (2-4).
# JUNK_KINDS is the project's one vocabulary of junk: the 160x90 test clips (``clips``) use the same names.
CLEAN = "clean"
JUNK_KINDS = ("facecam", "static_menu", "slideshow", "black_fade", "text_overlay", "letterbox",
              "non_platformer")
MIXED_KINDS = {"intro_menu": 4, "small_facecam": 3, "fade_cuts": 2}  # kind -> quality label
# Kinds that exist to exercise the search filter or failure handling (not labelled).
FILTER_KINDS = ("no_game_keyword", "no_action_word", "excluded_word", "too_long", "too_short_declared",
                "too_short_undeclared")

# Expected fates, written to corpus.json so other stages' tests and people can check a run against them.
EXPECT_CLIPS = "clips"  # passes search, downloads, is cut into >= 1 clip that reaches the classifier
EXPECT_SEGMENT_TOO_SHORT = "segment:dropped:too_short"
EXPECT_SEGMENT_FAILED = "segment:failed"
EXPECT_DOWNLOAD_FAILED = "download:failed"


def expect_search_drop(reason: str) -> str:
    return f"search:dropped:{reason}"


# Base counts at --scale 1 (the default corpus: ~30 min of video, < 2 min to build on 2 cores).
BASE_CLEAN = 12
BASE_PER_JUNK_KIND = 3
BASE_PER_MIXED_KIND = 2
# The kinds of the classifier's binary task (labels 5 and 1). At any scale each has at least two videos and
# at least one in each label set, so training sees every kind and the held-out evaluation measures every one.
SPLIT_KINDS = (CLEAN, *JUNK_KINDS)
MIN_PER_SPLIT_KIND = 2
TOO_LONG_DECLARED_S = 36000.0  # the catalog claims 10 h; the file is a short stand-in search never fetches


@dataclasses.dataclass(frozen=True)
class Segment:
    content: str  # one of GAME, FADE_OUT, FADE_IN, MENU, SLIDES, BLACK
    duration_s: float

    @property
    def num_steps(self) -> int:
        return round(self.duration_s * STEP_FPS)


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """One video to render: everything its pixels and actions depend on."""

    video_id: str  # the catalog id (verbatim; may be hostile)
    kind: str  # CLEAN, a JUNK_KINDS / MIXED_KINDS / FILTER_KINDS entry
    game: str  # the Procgen game played in GAME segments (and shown in menus/slides)
    seed: int  # seeds the level, the game's randomness, the policy and the junk drawings
    segments: tuple[Segment, ...]
    overlay: str = ""  # "", FACECAM, FACECAM_SMALL, CHAT or LETTERBOX
    label: int | None = None  # stand-in hand label 1..5 (None: not labelled)
    label_set: str = ""  # "train" (labels.csv), "holdout" (labels_holdout.csv) or "" (unlabelled)

    @property
    def num_steps(self) -> int:
        return sum(s.num_steps for s in self.segments)

    @property
    def duration_s(self) -> float:
        return self.num_steps / STEP_FPS

    @property
    def level(self) -> int:
        return self.seed % 100_000


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One catalog row. ``file_id`` names the rendered video its url points to (itself, unless the row is a
    duplicate re-upload or a fault)."""

    video_id: str
    title: str
    file_id: str
    description: str = ""
    channel: str = ""
    duration_s: float | None = None  # as declared in the catalog; None = field omitted
    with_actions: bool = True  # write the `actions` sidecar path
    fault: str = ""  # "", "truncated" (first half of file_id's bytes), "missing" (url to no file)
    expect: str = EXPECT_CLIPS
    extra: tuple[tuple[str, str | int], ...] = ()  # other source metadata (kept as CandidateVideo.extra)


@dataclasses.dataclass(frozen=True)
class CorpusPlan:
    seed: int
    scale: float
    faults: bool
    videos: tuple[VideoSpec, ...]
    entries: tuple[CatalogEntry, ...]

    def video(self, video_id: str) -> VideoSpec:
        return next(v for v in self.videos if v.video_id == video_id)

    def subset(self, video_ids: list[str], max_duration_s: float | None = None) -> CorpusPlan:
        """A smaller plan (for tests and quick looks): only these videos, their catalog rows, and segments
        scaled down so each video lasts at most ``max_duration_s``."""
        keep = set(video_ids)
        videos = []
        for v in self.videos:
            if v.video_id not in keep:
                continue
            if max_duration_s is not None and v.duration_s > max_duration_s:
                factor = max_duration_s / v.duration_s
                segs = tuple(Segment(s.content, max(0.1, round(s.duration_s * factor, 1))) for s in v.segments)
                v = dataclasses.replace(v, segments=segs)
            videos.append(v)
        entries = tuple(e for e in self.entries if e.file_id in keep)
        return dataclasses.replace(self, videos=tuple(videos), entries=entries)


def _youtube_like_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=11))


def _count(base: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


class _Planner:
    """Builds the plan in a fixed order from one seeded generator (so the plan is a function of the seed)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.videos: list[VideoSpec] = []
        self.entries: list[CatalogEntry] = []
        self.kind_counts: dict[str, int] = {}

    @staticmethod
    def text(template: tuple[str, str], game: str, seed: int, n: int = 1) -> tuple[str, str]:
        """Fill a (title, description) template for a video of ``game``."""
        name = titles.GAME_DISPLAY.get(game, game)
        fields = {"game": name, "GAME": name.upper(), "n": n, "level": seed % 100_000}
        return template[0].format(**fields), template[1].format(**fields)

    def add(self, kind: str, game: str, segments: list[Segment], overlay: str = "", label: int | None = None,
            text: tuple[str, str] | None = None, video_id: str | None = None, declare_duration: bool = True,
            declared_duration_s: float | None = None, expect: str = EXPECT_CLIPS) -> VideoSpec:
        index = self.kind_counts.get(kind, 0)
        self.kind_counts[kind] = index + 1
        seed = int(self.rng.integers(2**31 - 1))
        video_id = video_id or _youtube_like_id(self.rng)
        spec = VideoSpec(video_id=video_id, kind=kind, game=game, seed=seed, segments=tuple(segments),
                         overlay=overlay, label=label)
        templates = titles.TITLES.get(kind, ())
        template = text if text is not None else templates[index % len(templates)]
        text = self.text(template, game, seed, n=index + 1)
        duration = declared_duration_s if declared_duration_s is not None else spec.duration_s
        entry = CatalogEntry(
            video_id=video_id, title=text[0], description=text[1], file_id=video_id,
            channel=titles.CHANNELS[self.rng.integers(len(titles.CHANNELS))],
            duration_s=duration if declare_duration else None, expect=expect,
            extra=(("view_count", int(self.rng.integers(10, 2_000_000))),
                   ("upload_date", f"20{self.rng.integers(10, 25)}{self.rng.integers(1, 13):02d}"
                                   f"{self.rng.integers(1, 29):02d}")))
        self.videos.append(spec)
        self.entries.append(entry)
        return spec

    def duration(self, low: float = 32.0, high: float = 70.0) -> float:
        return round(float(self.rng.uniform(low, high)), 1)


def _black_fade_segments(total_s: float, game_s: float, black_s: float) -> list[Segment]:
    """Gameplay that fades out to black and back in, repeatedly, until ``total_s``."""
    segments: list[Segment] = []
    pattern = [Segment(GAME, game_s), Segment(FADE_OUT, 1.0), Segment(BLACK, black_s), Segment(FADE_IN, 1.0)]
    elapsed = 0.0
    while elapsed < total_s:
        for seg in pattern:
            length = round(min(seg.duration_s, total_s - elapsed), 1)
            if length > 0:
                segments.append(Segment(seg.content, length))
                elapsed = round(elapsed + length, 1)
    return segments


def plan_corpus(seed: int = 0, scale: float = 1.0, faults: bool = True) -> CorpusPlan:
    """The default corpus at ``scale`` 1; ``scale`` multiplies the number of clean, junk and mixed videos.

    Whatever the scale, every ``SPLIT_KINDS`` kind keeps ``MIN_PER_SPLIT_KIND`` videos, one of them at least
    in each label set (``_split_labels``): a small corpus is smaller, not blind to some kinds of junk.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    p = _Planner(seed)
    g = games.PLATFORMERS

    # Clean gameplay (label 5): the platformers in turn; one "longplay" of a few minutes; two hostile ids.
    n_clean = _count(BASE_CLEAN, scale, MIN_PER_SPLIT_KIND)
    for i in range(n_clean):
        game = g[i % len(g)]
        length = 150.0 if i == 5 else p.duration()
        special = {0: titles.UNICODE_TITLES[0], 1: titles.UNICODE_TITLES[1]}.get(i)
        p.add(CLEAN, game, [Segment(GAME, length)], label=5, video_id=special[0] if special else None,
              text=special[1:] if special else None)

    # Junk (label 1), interleaved by kind so every third one (the holdout) covers every kind.
    for i in range(_count(BASE_PER_JUNK_KIND, scale, MIN_PER_SPLIT_KIND)):
        for kind in JUNK_KINDS:
            game = g[(i + len(p.videos)) % len(g)]
            length = p.duration()
            if kind == "facecam":
                p.add(kind, game, [Segment(GAME, length)], overlay=FACECAM, label=1)
            elif kind == "static_menu":
                p.add(kind, game, [Segment(MENU, length)], label=1)
            elif kind == "slideshow":
                p.add(kind, game, [Segment(SLIDES, length)], label=1)
            elif kind == "black_fade":
                p.add(kind, game, _black_fade_segments(length, game_s=3.0, black_s=6.0), label=1)
            elif kind == "text_overlay":
                p.add(kind, game, [Segment(GAME, length)], overlay=CHAT, label=1)
            elif kind == "letterbox":
                p.add(kind, game, [Segment(GAME, length)], overlay=LETTERBOX, label=1)
            elif kind == "non_platformer":
                other = games.NON_PLATFORMERS[i % len(games.NON_PLATFORMERS)]
                p.add(kind, other, [Segment(GAME, length)], label=1)

    # Mixed quality (labels 2-4).
    for i in range(_count(BASE_PER_MIXED_KIND, scale)):
        for kind, label in MIXED_KINDS.items():
            game = g[(i + len(p.videos)) % len(g)]
            length = p.duration()
            if kind == "intro_menu":
                p.add(kind, game, [Segment(MENU, 10.0), Segment(GAME, length - 10.0)], label=label)
            elif kind == "small_facecam":
                p.add(kind, game, [Segment(GAME, length)], overlay=FACECAM_SMALL, label=label)
            elif kind == "fade_cuts":
                p.add(kind, game, _black_fade_segments(length, game_s=6.0, black_s=3.0), label=label)

    # Rows the search stage drops, and videos too short for one clip.
    p.add("no_game_keyword", "bigfish", [Segment(SLIDES, 20.0)], text=titles.NO_GAME_KEYWORD,
          expect=expect_search_drop("no_game_keyword"))
    p.add("no_action_word", "climber", [Segment(SLIDES, 20.0)], text=titles.NO_ACTION_WORD,
          expect=expect_search_drop("no_action_word"))
    p.add("excluded_word", "coinrun", [Segment(GAME, 24.0)], text=titles.EXCLUDED_WORD,
          expect=expect_search_drop("excluded_word:movie"))
    p.add("too_long", "ninja", [Segment(GAME, 20.0)], text=titles.TOO_LONG,
          declared_duration_s=TOO_LONG_DECLARED_S, expect=expect_search_drop("too_long"))
    p.add("too_short_declared", "jumper", [Segment(GAME, 9.0)], text=titles.TOO_SHORT_DECLARED,
          expect=expect_search_drop("too_short"))
    p.add("too_short_undeclared", "ninja", [Segment(GAME, 12.0)], text=titles.TOO_SHORT_UNDECLARED,
          declare_duration=False, expect=EXPECT_SEGMENT_TOO_SHORT)

    # Duplicates: the same row twice (same id), and a re-upload (new id, same url).
    first, second = p.entries[0], p.entries[1]
    p.entries.append(dataclasses.replace(first, expect=expect_search_drop("duplicate")))
    reupload_title = titles.DUPLICATE_REUPLOAD[0].format(game=titles.GAME_DISPLAY[p.videos[1].game])
    p.entries.append(dataclasses.replace(second, video_id=_youtube_like_id(p.rng), title=reupload_title,
                                         description=titles.DUPLICATE_REUPLOAD[1],
                                         expect=expect_search_drop("duplicate")))

    if faults:  # broken entries, so a demo run shows failure auditing
        source = p.entries[2]
        p.entries.append(CatalogEntry(video_id=titles.TRUNCATED[0], title=titles.TRUNCATED[1],
                                      description=titles.TRUNCATED[2], file_id=source.file_id,
                                      channel=source.channel, with_actions=False, fault="truncated",
                                      expect=EXPECT_SEGMENT_FAILED))
        p.entries.append(CatalogEntry(video_id=titles.MISSING[0], title=titles.MISSING[1],
                                      description=titles.MISSING[2], file_id=source.file_id,
                                      channel=source.channel, with_actions=False, fault="missing",
                                      expect=EXPECT_DOWNLOAD_FAILED))

    return CorpusPlan(seed=seed, scale=scale, faults=faults, videos=tuple(_split_labels(p.videos)),
                      entries=tuple(p.entries))


def _split_labels(videos: list[VideoSpec]) -> list[VideoSpec]:
    """Every third labelled video of each label (in plan order) goes to the holdout set, the rest to train.

    Below scale 1 that rule alone leaves kinds out of a set (at ``--scale 0.3`` the holdout lacked five junk
    kinds and training two), so afterwards each ``SPLIT_KINDS`` kind found in one set only moves one video
    across: its last train video to the holdout, or its first holdout video to train. With at least two
    videos per kind both sets then hold the kind. At scale 1 and above no kind needs a move, so the default
    corpus is exactly the every-third split.
    """
    seen: dict[int, int] = {}
    out = []
    for v in videos:
        if v.label is not None:
            position = seen.get(v.label, 0)
            seen[v.label] = position + 1
            v = dataclasses.replace(v, label_set="holdout" if position % 3 == 2 else "train")
        out.append(v)
    for kind in SPLIT_KINDS:
        members = [i for i, v in enumerate(out) if v.kind == kind]
        sets = {out[i].label_set for i in members}
        if len(members) >= 2 and len(sets) == 1:
            move, to = (members[-1], "holdout") if sets == {"train"} else (members[0], "train")
            out[move] = dataclasses.replace(out[move], label_set=to)
    return out
