"""The Genie paper's keyword rules for finding 2D platformer gameplay, loaded from a YAML file.

Appendix B.1 of the paper: a candidate is kept when its **title** names a platformer game, its **title or
description** holds an action word ("speedrun", "playthrough"...), and its **title** holds no negating
word ("movie", "unboxing"...). We add duration bounds (a video shorter than one 16 s clip yields nothing).

Rules are checked in that order and the first one that fails names the drop reason, so every dropped
candidate has exactly one reason. Matching is on word boundaries after NFKC normalisation and case
folding, so "MARIO" and "Ｍａｒｉｏ" match "mario" while "Marionette" does not, and "ost" is not found in
"ghost". Typographic apostrophes are folded to ASCII so "Let’s Play" matches "let's play".
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from schemas import CandidateVideo, reasons
from schemas.clip_format import CLIP_SECONDS

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
_YAML_KEYS = {"games", "actions", "exclude", "min_duration_s", "max_duration_s"}


def normalise(text: str) -> str:
    """The form both texts and keywords are compared in."""
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()


def _word_pattern(word: str) -> re.Pattern[str]:
    """A pattern matching ``word`` as whole words, with any whitespace between its parts."""
    parts = normalise(word).split()
    if not parts:
        raise ValueError(f"keyword must not be blank, got {word!r}")
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(p) for p in parts) + r"(?!\w)")


@dataclasses.dataclass(frozen=True)
class KeywordRules:
    """Word lists and duration bounds; ``check`` says why a candidate is dropped, or None to keep it."""

    games: tuple[str, ...]
    actions: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    min_duration_s: float | None = float(CLIP_SECONDS)  # one clip's length: a shorter video yields nothing
    max_duration_s: float | None = 4 * 3600.0

    def __post_init__(self) -> None:
        for name in ("games", "actions", "exclude"):
            words = getattr(self, name)
            if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words):
                raise ValueError(f"keywords {name}: expected a list of non-empty strings, got {words!r}")
            object.__setattr__(self, name, tuple(w.strip() for w in words))
        if not self.games or not self.actions:
            raise ValueError("keywords: 'games' and 'actions' must each list at least one word")
        if (self.min_duration_s is not None and self.max_duration_s is not None
                and self.min_duration_s > self.max_duration_s):
            raise ValueError(f"min_duration_s {self.min_duration_s} > max_duration_s {self.max_duration_s}")

    @functools.cached_property
    def _patterns(self) -> dict[str, list[tuple[str, re.Pattern[str]]]]:
        return {name: [(w, _word_pattern(w)) for w in getattr(self, name)] for name in ("games", "actions", "exclude")}

    def find(self, kind: str, text: str) -> str | None:
        """The first word of list ``kind`` ("games", "actions", "exclude") found in ``text``."""
        folded = normalise(text)
        return next((word for word, pattern in self._patterns[kind] if pattern.search(folded)), None)

    def check(self, candidate: CandidateVideo) -> tuple[str, str] | None:
        """``(reason, detail)`` for the first rule ``candidate`` breaks, or None when it passes them all."""
        title = candidate.title
        if self.find("games", title) is None:
            return reasons.NO_GAME_KEYWORD, f"title {title!r} names none of the {len(self.games)} games"
        if self.find("actions", title) is None and self.find("actions", candidate.description) is None:
            return reasons.NO_ACTION_WORD, f"neither title nor description holds one of {len(self.actions)} action words"
        excluded = self.find("exclude", title)
        if excluded is not None:
            return reasons.excluded_word(excluded), f"title {title!r} contains the excluded word {excluded!r}"
        duration = candidate.duration_s
        if duration is not None:
            if self.min_duration_s is not None and duration < self.min_duration_s:
                return reasons.TOO_SHORT, f"declared duration {duration:g} s < minimum {self.min_duration_s:g} s"
            if self.max_duration_s is not None and duration > self.max_duration_s:
                return reasons.TOO_LONG, f"declared duration {duration:g} s > maximum {self.max_duration_s:g} s"
        return None

    def with_durations(self, min_duration_s: float | None, max_duration_s: float | None) -> KeywordRules:
        """These rules with the given bounds replacing the file's (None keeps the file's value)."""
        return dataclasses.replace(
            self,
            min_duration_s=self.min_duration_s if min_duration_s is None else min_duration_s,
            max_duration_s=self.max_duration_s if max_duration_s is None else max_duration_s,
        )

    @classmethod
    def from_mapping(cls, data: Any, where: str = "keywords") -> KeywordRules:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping with games/actions/exclude, got {type(data).__name__}")
        unknown = set(data) - _YAML_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_YAML_KEYS)})")
        lists = {}
        for key in ("games", "actions", "exclude"):
            words = data.get(key) or []
            if not isinstance(words, list):
                raise ValueError(f"{where}: keywords {key}: expected a list of non-empty strings, got {words!r}")
            lists[key] = tuple(words)
        fields = {k: data[k] for k in ("min_duration_s", "max_duration_s") if k in data}
        return cls(**lists, **fields)


def default_keywords_path() -> Path:
    """The shipped word lists (``pipeline/data/platformers.yaml``)."""
    return Path(str(importlib.resources.files("pipeline") / "data" / "platformers.yaml"))


def load_rules(path: str | Path | None = None) -> KeywordRules:
    """Rules from a YAML file (default: the shipped platformer lists)."""
    path = Path(path) if path is not None else default_keywords_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a YAML text file ({exc})") from None
    return KeywordRules.from_mapping(data, str(path))
