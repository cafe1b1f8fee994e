"""The command-line contract every ``python -m pipeline|classifiers|modeling`` command keeps, in one place.

- A usage mistake is one line on stderr, ``error: ... (see PROG --help)``, and exit status 2, never the whole
  usage block and never a traceback.
- Unknown flags are refused by name with the closest known flag (``unknown flag --clasifier (did you mean
  --classifier?)``); abbreviations are not accepted, so a misspelt flag can never be taken for another one.
- ``UsageError`` is what code raises for a mistake found after parsing (a bad value, a missing input): the
  commands turn it into the same one line and status 2.

It lives under ``schemas`` because all three packages import it and ``schemas`` sits below them.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence

USAGE = 2  # exit status of every usage mistake (argparse's own, and sysexits' EX_USAGE family)


class UsageError(ValueError):
    """A command line that asks for something impossible or names a missing/invalid input (exit status 2)."""


def unknown_flag_message(flag: str, known: Iterable[str]) -> str:
    """``unknown flag --x`` plus the closest known flag, if one is close enough to be a typo."""
    name = flag.split("=", 1)[0]
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    what = "flag" if name.startswith("-") else "argument"
    return f"unknown {what} {name}{hint}"


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag ``parser`` and its subcommands accept (``--out``, ``-h``, ...): argparse lists them nowhere else."""
    found = []
    for action in parser._actions:  # noqa: SLF001
        found.extend(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                found.extend(option_strings(sub))
    return found


class StrictParser(argparse.ArgumentParser):
    """argparse with the contract above: one-line errors, unknown flags named with a suggestion, no abbreviations.

    ``parse_known_args`` stays available for commands that hand the rest to another parser (the pipeline's
    Beam options), which then checks the rest itself."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        # argparse reports missing required flags before leftovers: a misspelt required flag ("--lables") is
        # both, and the misspelling is the one to name
        unknown = [a for a in getattr(self, "_given", []) if a.startswith("--")
                   and a.split("=", 1)[0] not in option_strings(self)]
        if message.startswith("the following arguments are required") and unknown:
            message = unknown_flag_message(unknown[0], option_strings(self))
        self.exit(USAGE, f"error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._given, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        ns, rest = self.parse_known_args(args, namespace)
        if rest:
            self.error(unknown_flag_message(rest[0], option_strings(self)))
        return ns


def listing(prog: str, description: str, commands: dict[str, str], epilog: str | None = None) -> StrictParser:
    """A package's top-level parser, used for its ``--help``: ``description`` then every command with its
    one-line description (``commands``: name -> description)."""
    width = max(map(len, commands)) + 2
    rows = "\n".join(f"  {name:<{width}}{text}" for name, text in commands.items())
    return StrictParser(prog=prog, usage=f"{prog} COMMAND [options]", epilog=epilog,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=f"{description}\n\ncommands (COMMAND --help for its options):\n{rows}")


def fail(prog: str, message: str) -> int:
    """Print a usage error found after parsing, the same way argparse's are printed; returns the exit status."""
    print(f"error: {message} (see {prog} --help)", file=sys.stderr)
    return USAGE
