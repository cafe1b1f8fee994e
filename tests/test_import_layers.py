"""Import arrows point one way, down: ``schemas`` (the data contract) imports none of the packages above it,
and ``classifiers`` and ``modeling`` take the clip format and shard access from ``schemas``, not from
``pipeline``. Checked on the source (an AST walk, function-level imports included), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# modeling.bc plays Procgen levels with the pipeline's Procgen dataset command's environment and clip cutter
# (``make_env``, ``stream_clips``, ``level_range``): that is the environment itself, not the clip format.
ALLOWED = {"modeling/bc/cli.py": "pipeline.procgen_dataset", "modeling/bc/evaluate.py": "pipeline.procgen_dataset",
           "modeling/bc/expert.py": "pipeline.procgen_dataset"}


def allowed(file: str, module: str) -> bool:
    """``module`` is the file's allowed module, a name inside it, or the package above it (``from pipeline
    import procgen_dataset`` records both ``pipeline`` and ``pipeline.procgen_dataset``)."""
    target = ALLOWED.get(file)
    return target is not None and (module == target or module.startswith(f"{target}.")
                                   or target.startswith(f"{module}."))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from pipeline import x`` counts as ``pipeline.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imports_from(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> set[tuple[str, str]]:
    """(file, module) for each import of a ``forbidden`` package in the ``packages``' files."""
    hits = set()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                if module.split(".")[0] in forbidden:
                    hits.add((str(path.relative_to(ROOT)), module))
    return hits


def test_classifiers_and_modeling_import_no_pipeline_module_for_the_format():
    hits = imports_from(("classifiers", "modeling"), ("pipeline",))
    assert hits, "the walk finds modeling.bc's allowed imports"
    assert sorted(hit for hit in hits if not allowed(*hit)) == []


def test_schemas_import_nothing_above_them():
    assert imports_from(("schemas",), ("pipeline", "classifiers", "modeling")) == set()


def test_classifiers_do_not_import_modeling_or_pipeline_at_all():
    assert imports_from(("classifiers",), ("pipeline", "modeling")) == set()


BEAM_INTERNALS = ("apache_beam.runners", "apache_beam.portability")  # runner and wire internals, not Beam's API


def test_only_the_beam_runtime_quarantine_touches_beams_internals():
    """Everything that reaches into Beam's runners or wire protocol lives in ``pipeline/beam_runtime/``, where
    each module names the Beam versions it was checked against (benchmarks and tests may look inside too)."""
    hits = []
    for package in ("schemas", "pipeline", "classifiers", "modeling"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "pipeline" / "beam_runtime"):
                continue
            hits += [(str(path.relative_to(ROOT)), m) for m in imported_modules(path)
                     if m.startswith(BEAM_INTERNALS)]
    assert hits == []
    quarantined = [m for path in (ROOT / "pipeline" / "beam_runtime").glob("*.py") for m in imported_modules(path)
                   if m.startswith(BEAM_INTERNALS)]
    assert quarantined, "the walk finds the quarantine's own imports"
