"""The command-line contract of ``python -m classifiers``: one help that lists every command, whole-sentence
descriptions, and one-line usage errors (exit 2, a suggestion for a misspelt flag or command, no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from classifiers.__main__ import main
from tests.cli_helpers import call_main


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    return call_main(main, argv, capsys)


def test_help_lists_every_command_with_a_description():
    result = subprocess.run([sys.executable, "-m", "classifiers", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    for name in ("train", "evaluate", "label-sheet", "features"):
        (line,) = [x for x in result.stdout.splitlines() if x.startswith(f"  {name} ")]
        assert line.strip().endswith("."), line
    assert "exit status" in result.stdout


@pytest.mark.parametrize("argv, suggestion", [
    (["trian"], "unknown command trian (did you mean train?)"),
    (["--bogus"], "unknown flag --bogus"),
    (["train", "--labels", "l", "--clips", "c", "--out", "o", "--fold", "3"], "did you mean --folds?"),
    (["evaluate", "--model", "m", "--labels", "l", "--clips", "c", "--treshold", "0.5"], "did you mean --threshold?"),
    (["label-sheet", "--clips", "c", "--out", "o", "--per_video", "2"], "did you mean --per-video?"),
    (["features", "--clips", "c", "--out", "o", "--outt", "x"], "did you mean --out?"),
])
def test_unknown_commands_and_flags_are_one_line_with_a_suggestion(argv, suggestion, capsys):
    code, _, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert suggestion in err and "--help)" in err
