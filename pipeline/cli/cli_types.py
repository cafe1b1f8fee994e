"""argparse types for the pipeline's numeric flags, in one place.

A bad value then ends as argparse's usage error naming the flag ("argument --skip-start-s: must be ..."),
at launch, instead of a ValueError on every worker (or a window planner that never finishes).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def non_negative(unit: str) -> Callable[[str], float]:
    """A type accepting finite numbers >= 0 of ``unit`` (named in the error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be a finite number of {unit} >= 0, got {text!r}")
        return value

    return parse


def positive(unit: str) -> Callable[[str], float]:
    """A type accepting finite numbers > 0 of ``unit``."""
    at_least_zero = non_negative(unit)

    def parse(text: str) -> float:
        value = at_least_zero(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0 {unit}, got {text!r}")
        return value

    return parse


def integer(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """A type accepting integers from ``low`` to ``high`` (no upper bound when None); ``what`` names the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"within {what}{low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def share(text: str) -> float:
    """A type accepting a share above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share above 0 and at most 1, got {text!r}")
    return value


seconds = non_negative("seconds")
