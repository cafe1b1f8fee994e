"""Every package's command line reads whole: with no command it lists every command and exits 2, and each
command's ``--help`` opens with a description that is one or more whole sentences."""

from __future__ import annotations

import importlib

import pytest

from tests.cli_helpers import call_main

PACKAGES = ("pipeline", "classifiers", "modeling")


def _entry(package: str):
    module = importlib.import_module(f"{package}.__main__")
    return module.main, module.COMMANDS


@pytest.mark.parametrize("package", PACKAGES)
def test_no_command_prints_the_listing_and_exits_2(package, capsys):
    main, commands = _entry(package)
    code, out, err = call_main(main, [], capsys)
    assert code == 2 and out == "" and all(f"  {name} " in err for name in commands)


@pytest.mark.parametrize("package, command", [(p, c) for p in PACKAGES for c in _entry(p)[1]])
def test_every_command_has_a_whole_sentence_description(package, command, capsys):
    main, _ = _entry(package)
    code, out, _ = call_main(main, [command, "--help"], capsys)
    assert code == 0
    description = out.split("\n\n")[1]  # argparse: usage, a blank line, the description
    assert description.rstrip().endswith(".") and "``" not in description, description
