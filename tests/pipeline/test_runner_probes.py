"""The measurement probes of Beam's local runner (``pipeline.beam_runtime.runner_probes``) patch names that exist
in the installed Beam: an upgrade that renames one fails here, by name, instead of silently measuring nothing."""

from __future__ import annotations

import apache_beam as beam

from pipeline.beam_runtime import runner_probes


def test_the_installed_beam_is_one_the_probes_were_checked_against():
    assert beam.__version__ in runner_probes.CHECKED_BEAM, (
        f"apache-beam {beam.__version__}: check runner_probes.PATCHED against it, then add it to CHECKED_BEAM")


def test_every_patched_name_exists():
    assert runner_probes.missing_names() == []


def test_missing_names_names_what_a_beam_lacks(monkeypatch):
    monkeypatch.setitem(runner_probes.PATCHED, "apache_beam.runners.worker.bundle_processor",
                        ("DataOutputOperation.finish", "DataOutputOperation.no_such_method"))
    assert runner_probes.missing_names() == [
        "apache_beam.runners.worker.bundle_processor:DataOutputOperation.no_such_method"]
