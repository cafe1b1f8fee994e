"""Import arrows point one way, down: ``schemas`` (the data contract, the clip format, shard access, the Procgen
environment) imports none of the packages above it, ``classifiers`` and ``modeling`` import nothing from
``pipeline``, and no package's modules import each other in a circle. Checked on the source (an AST walk,
function-level imports included), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def test_classifiers_and_modeling_import_nothing_from_pipeline():
    assert imports_from(("modeling",), ("schemas",)), "the walk finds modeling's imports"
    assert imports_from(("classifiers", "modeling"), ("pipeline",)) == set()


def test_schemas_import_nothing_above_them():
    assert imports_from(("schemas",), ("pipeline", "classifiers", "modeling")) == set()


def test_schemas_are_beam_free_and_import_procgen_only_to_play():
    """The Procgen environment sits in ``schemas`` for ``modeling.bc``: that must not bring Beam along, and
    ``procgen`` (which imports gym) loads only when a level is played, not when ``schemas.procgen`` is imported."""
    assert imports_from(("schemas",), ("apache_beam",)) == set()
    tree = ast.parse((ROOT / "schemas" / "procgen.py").read_text())
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert "schemas.clip_codec" in top, "the walk finds the module's own imports"
    assert {m.split(".")[0] for m in top} & {"procgen", "gym", "gym3"} == set()
    assert "procgen" in imported_modules(ROOT / "schemas" / "procgen.py")


def module_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """{module: the modules of ``packages`` it imports}. A module's own packages are left out: importing a module
    runs its packages' ``__init__`` first whatever it names, so ``from schemas import ids`` inside ``schemas`` is
    no arrow back to ``schemas/__init__.py``."""
    paths = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        targets = set()
        for module in imported_modules(path):
            while module and module not in paths:
                module = module.rpartition(".")[0]
            if module and module != name and not name.startswith(f"{module}."):
                targets.add(module)
        graph[name] = targets
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_import_circles_are_found():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_package_has_an_import_circle():
    graph = module_graph(("schemas", "pipeline", "classifiers", "modeling"))
    assert "modeling.checkpoint" in graph["modeling.genie"], "the graph holds the modules' imports"
    assert "pipeline.job" in graph["pipeline.job_process"] and "pipeline.job" in graph["pipeline.run"]
    assert import_circles(graph) == []


# The pipeline's lower wings: what the stages, the job and the commands stand on. They import each other and the
# option declarations the stage configs use, never a stage, the job, the audit or a command.
FOUNDATIONS = ("pipeline.beam_runtime", "pipeline.io", "pipeline.runtime", "pipeline.site", "pipeline.video",
               "pipeline.cli.options", "pipeline.cli.cli_types")


def in_foundations(module: str) -> bool:
    """A module of the foundations, or a package above one (its ``__init__`` runs first whatever is imported)."""
    return any(module == f or module.startswith(f"{f}.") or f.startswith(f"{module}.") for f in FOUNDATIONS)


def test_the_pipelines_lower_wings_import_no_stage_job_or_command():
    graph = module_graph(("pipeline",))
    assert "pipeline.io.storage" in graph["pipeline.video.cut"], "the graph holds the wings' imports"
    upward = {(module, target) for module, targets in graph.items() if in_foundations(module)
              for target in targets if target.startswith("pipeline") and not in_foundations(target)}
    assert upward == set()


def test_classifiers_do_not_import_modeling_or_pipeline_at_all():
    assert imports_from(("classifiers",), ("pipeline", "modeling")) == set()


BEAM_INTERNALS = ("apache_beam.runners", "apache_beam.portability")  # runner and wire internals, not Beam's API


# Choosing Beam's local runner by its class is Beam's API (tests and benchmarks run on it), not a reach inside.
RUNNER_CLASS = {"apache_beam.runners.portability.fn_api_runner",
                "apache_beam.runners.portability.fn_api_runner.FnApiRunner"}


def test_only_the_beam_runtime_quarantine_touches_beams_internals():
    """Everything that reaches into Beam's runners or wire protocol lives in ``pipeline/beam_runtime/``, where
    each module names the Beam versions it was checked against; benchmarks included (their runner probes live
    there too). Tests may look inside to check the quarantine's patches."""
    hits = []
    for package in ("schemas", "pipeline", "classifiers", "modeling", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "pipeline" / "beam_runtime"):
                continue
            hits += [(str(path.relative_to(ROOT)), m) for m in imported_modules(path)
                     if m.startswith(BEAM_INTERNALS) and m not in RUNNER_CLASS]
    assert hits == []
    quarantined = [m for path in (ROOT / "pipeline" / "beam_runtime").glob("*.py") for m in imported_modules(path)
                   if m.startswith(BEAM_INTERNALS)]
    assert quarantined, "the walk finds the quarantine's own imports"
