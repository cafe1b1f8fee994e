"""Calling a package's command-line ``main`` in this process as its console script would run it."""

from __future__ import annotations

from collections.abc import Callable


def call_main(main: Callable[[list[str]], int], argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` with argparse's exits taken as the status -> (status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
