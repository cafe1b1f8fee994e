"""Keyword rules: the paper's three rules, word boundaries, Unicode, durations, and the YAML file format."""

from __future__ import annotations

import pytest

from pipeline.keywords import KeywordRules, default_keywords_path, load_rules
from schemas import CandidateVideo, reasons


def cand(title: str, description: str = "", duration_s: float | None = 60.0) -> CandidateVideo:
    return CandidateVideo(video_id="v", source="test", url="https://example.com/v", title=title,
                          description=description, duration_s=duration_s)


@pytest.fixture(scope="module")
def rules() -> KeywordRules:
    return load_rules()


def test_shipped_lists_hold_the_words_the_demo_corpus_uses(rules):
    for game in ("super mario", "mario", "celeste", "hollow knight", "coinrun", "jumper", "ninja", "climber"):
        assert game in rules.games
    for action in ("speedrun", "speed run", "playthrough", "let's play", "any%", "100%", "no commentary"):
        assert action in rules.actions
    for word in ("movie", "unboxing", "trailer", "ost", "asmr"):
        assert word in rules.exclude
    assert (rules.min_duration_s, rules.max_duration_s) == (16, 14400)
    assert default_keywords_path().is_file()


@pytest.mark.parametrize(("title", "description", "expected"), [
    ("Celeste Any% Speedrun in 27:xx", "", None),
    ("SUPER MARIO BROS. world record", "", None),
    ("Ｓｕｐｅｒ Ｍａｒｉｏ speedrun", "", None),  # full-width letters (NFKC)
    ("Hollow   Knight\tplaythrough", "", None),  # multi-word keywords across any whitespace
    ("Kirby", "Let\u2019s Play part 3", None),  # action word in the description; typographic apostrophe
    ("Mega Man 2 100%", "", None),  # a keyword ending in a symbol, at the end of the title
    ("Marionette speedrun", "", reasons.NO_GAME_KEYWORD),  # "mario" only as a whole word
    ("speedrun of a famous game", "", reasons.NO_GAME_KEYWORD),
    ("Celeste chapter 7", "beautiful", reasons.NO_ACTION_WORD),
    ("Celeste speedrunning tips", "", reasons.NO_ACTION_WORD),  # "speedrun" only as a whole word
    ("Sonic 1100% run", "", reasons.NO_ACTION_WORD),  # "100%" not inside "1100%"
    ("Sonic movie speedrun", "", reasons.excluded_word("movie")),
    ("Celeste OST playthrough", "", reasons.excluded_word("ost")),
    ("Ghost house Mario speedrun", "", None),  # "ost" not inside "ghost"
    ("Mario speedrun", "my review channel", None),  # excluded words count in the title only
    ("Movie night speedrun", "", reasons.NO_GAME_KEYWORD),  # rules apply in the paper's order
])
def test_rules(rules, title, description, expected):
    verdict = rules.check(cand(title, description))
    assert (verdict[0] if verdict else None) == expected
    if verdict:
        assert verdict[1]  # a human-readable detail


def test_durations(rules):
    assert rules.check(cand("Mario speedrun", duration_s=15.9))[0] == reasons.TOO_SHORT
    assert rules.check(cand("Mario speedrun", duration_s=16.0)) is None
    assert rules.check(cand("Mario speedrun", duration_s=None)) is None  # unknown: checked after download
    assert rules.check(cand("Mario speedrun", duration_s=14400.5))[0] == reasons.TOO_LONG
    tight = rules.with_durations(None, 60)
    assert tight.min_duration_s == 16 and tight.max_duration_s == 60
    assert tight.check(cand("Mario speedrun", duration_s=61))[0] == reasons.TOO_LONG


def test_yaml_file(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("games: [Zelda II]\nactions: [blind run]\nexclude: []\nmin_duration_s: 1\n", encoding="utf-8")
    rules = load_rules(path)
    assert rules.check(cand("zelda ii BLIND RUN", duration_s=2)) is None
    assert rules.max_duration_s == 4 * 3600  # keeps the default when the file does not say


@pytest.mark.parametrize(("text", "message"), [
    ("games: [a]\nactions: [b]\ncolour: red\n", "unknown keys"),
    ("games: []\nactions: [b]\n", "at least one"),
    ("games: [a, 3]\nactions: [b]\n", "non-empty strings"),
    ("games: a\nactions: [b]\n", "non-empty strings"),
    ("- a\n- b\n", "expected a mapping"),
    ("games: [a\n", "not valid YAML"),
    ("games: [a]\nactions: [b]\nmin_duration_s: 10\nmax_duration_s: 5\n", "min_duration_s"),
])
def test_bad_yaml_is_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_rules(path)
