"""Which command-line flags Beam itself knows, asked of Beam's own options registry.

``run`` hands every flag it does not declare to Beam; Beam would warn "Discarding unparseable args" and go
on, so a typo of one of our flags (``--clasifier``) silently ran a different job. The launcher therefore
refuses any flag that neither it nor a registered ``PipelineOptions`` class knows, before any work starts.
Beam's registry is read through ``PipelineOptions.get_all_options(add_extra_args_fn=...)``, the hook Beam
gives runners to see its full parser, so flags of every runner (Dataflow's ``--region``, ``--sdk_container_image``
...) and of options classes a user registers keep working.
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions


class BeamFlagError(ValueError):
    """A flag Beam knows, given a value Beam refuses (``--dry_run`` without ``=True``)."""


def _beam_parser() -> argparse.ArgumentParser:
    captured: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    parser = captured[0]

    def error(message: str):
        raise BeamFlagError(message)

    parser.error = error  # Beam's parser would print its whole usage and exit
    return parser


def known_flags() -> list[str]:
    """Every flag Beam's registered options accept (``--runner``, ``--project``, ``--dry_run`` ...)."""
    return [s for action in _beam_parser()._actions for s in action.option_strings]  # noqa: SLF001


def unknown_args(args: list[str]) -> list[str]:
    """The arguments of ``args`` that Beam's registered options do not accept (flags and stray words); raises
    ``BeamFlagError`` for a Beam flag with a bad value."""
    _, unknown = _beam_parser().parse_known_args(args)
    return unknown


def refuse_unknown(parser: argparse.ArgumentParser, beam_args: list[str]) -> None:
    """``parser.error`` (exit 2, one line) for the first of ``beam_args`` that Beam does not know either,
    suggesting the closest flag of ``parser``'s or Beam's."""
    from schemas.cli import option_strings, unknown_flag_message

    try:
        unknown = unknown_args(beam_args)
    except BeamFlagError as exc:
        parser.error(str(exc))
    if unknown:
        parser.error(unknown_flag_message(unknown[0], option_strings(parser) + known_flags()))
