"""Checks that run before any Beam work: everything a run needs that can be checked at launch is checked here.

``run`` calls ``run_checks`` and stops with exit status 2 and one line (the first ``FAIL``, naming the flag and the
fix) before anything is created; ``doctor`` prints the same checks. Checked: each catalog is readable and
parseable (rows counted, the first unreadable ones named by line: they still end as ``failed: bad_catalog_row``);
the output and download directories are writable (through a probe object, deleted again); the keywords file is
valid; a classifier loads and fits the run's frame size and rate. The job itself (worker image, yt-dlp) is checked
before these (``run.job_checks``). Each catalog is read once more by the launcher, streaming in constant memory.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterable

from pipeline.io import storage
from schemas import Outcome, reasons

BAD_ROWS_SHOWN = 3  # unreadable catalog rows named on the console (all of them are in the outcomes)


@dataclasses.dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok``, ``warn`` (the run goes on) or ``FAIL`` (the run does not start)."""

    name: str
    status: str  # ok | warn | FAIL
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.detail}"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


@dataclasses.dataclass(frozen=True)
class CatalogFacts:
    """What the launcher learnt reading a catalog: row counts, the first bad rows, and its content digest."""

    path: str
    rows: int
    bad_rows: tuple[str, ...]  # "line 12: 'url' is missing or empty" (the first BAD_ROWS_SHOWN)
    bad_count: int
    sha256: str
    declared: int = 0  # rows that declare a duration (``python -m pipeline plan`` sums them)
    declared_s: float = 0.0  # their durations' sum


def read_catalog(path: str) -> CatalogFacts:
    """Read a catalog as the search stage will (``CatalogSource``); raise ``ValueError`` when it cannot be read
    at all (missing, unknown format, not a file of that format)."""
    from pipeline.sources.catalog import CatalogSource  # the one catalog reader

    if not storage.exists(path):
        raise ValueError(f"{path} does not exist")
    if storage.is_local(path) and os.path.isdir(storage.local_path(path)):
        raise ValueError(f"{path} is a directory, not a catalog file")
    rows, bad, shown, declared, declared_s = 0, 0, [], 0, 0.0
    for item in CatalogSource([path]).read(path):
        rows += 1
        if isinstance(item, Outcome):
            if item.reason != reasons.BAD_CATALOG_ROW:  # the whole file failed
                raise ValueError(item.detail)
            bad += 1
            if len(shown) < BAD_ROWS_SHOWN:
                shown.append(item.detail.removeprefix(f"{path} "))
        elif item.duration_s is not None:
            declared, declared_s = declared + 1, declared_s + item.duration_s
    return CatalogFacts(path, rows, tuple(shown), bad, storage.sha256_file(path)[0], declared, declared_s)


def check_catalog(path: str) -> tuple[Check, CatalogFacts | None]:
    try:
        facts = read_catalog(path)
    except Exception as exc:  # noqa: BLE001 - any reason it cannot be read is the answer
        return Check("catalog", "FAIL", f"--catalog {path}: cannot be read: {exc}"), None
    if facts.rows == 0:
        return Check("catalog", "FAIL", f"--catalog {path}: no rows (an empty catalog makes an empty dataset)"), facts
    detail = f"{path}: {facts.rows} rows"
    if facts.bad_count:
        more = f"; {facts.bad_count - len(facts.bad_rows)} more in the outcomes" if facts.bad_count > len(
            facts.bad_rows) else ""
        return Check("catalog", "warn", f"{detail}, {facts.bad_count} unreadable (they end as failed: "
                                        f"bad_catalog_row): {'; '.join(facts.bad_rows)}{more}"), facts
    return Check("catalog", "ok", detail), facts


def check_writable_dir(path: str, flag: str) -> Check:
    """``path`` can be created and written: a local directory (or its nearest existing parent) that is a
    writable directory, or a remote prefix that accepts and deletes a probe object. Creates nothing locally."""
    if not storage.is_local(path):
        probe = f"{path.rstrip('/')}/.preflight-{uuid.uuid4().hex[:12]}"
        try:
            storage.write_bytes(probe, b"ok\n")
            storage.delete_quietly(probe)
        except Exception as exc:  # noqa: BLE001 - any filesystem's refusal is the answer
            return Check(flag.lstrip("-"), "FAIL", f"{flag} {path}: cannot write there: {type(exc).__name__}: {exc}")
        return Check(flag.lstrip("-"), "ok", f"{path} is writable")
    local = os.path.abspath(storage.local_path(path))
    existing = local
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    name = flag.lstrip("-")
    if not os.path.isdir(existing):
        where = "is a file" if existing == local else f"cannot be created: {existing} is a file"
        return Check(name, "FAIL", f"{flag} {path} {where}; name a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == local else f"cannot be created: {existing} is not writable"
        return Check(name, "FAIL", f"{flag} {path} {where}; name a directory you can write to")
    return Check(name, "ok", f"{local} is writable" + ("" if existing == local else " (will be created)"))


def check_keywords(path: str | None) -> Check:
    from pipeline.keywords import default_keywords_path, load_rules

    try:
        rules = load_rules(path)
    except Exception as exc:  # noqa: BLE001 - a bad file is the answer, whatever the parser raised
        return Check("keywords", "FAIL", f"--keywords {path}: {exc}")
    shown = path or default_keywords_path()
    return Check("keywords", "ok", f"{shown}: {len(rules.games)} games, {len(rules.actions)} action words")


def check_classifier(model_dir: str, width: int, height: int, fps: float) -> Check:
    """The model directory loads, and its training clips had the run's size and rate (else every clip would
    end ``failed: quality_error``)."""
    from classifiers.artifact import load_classifier
    from classifiers.geometry import ClipGeometry

    try:
        classifier = load_classifier(model_dir)
    except Exception as exc:  # noqa: BLE001 - ModelDirError and anything a foreign file raises
        return Check("classifier", "FAIL", f"--classifier {model_dir}: {exc}")
    run_geometry = ClipGeometry(width, height, float(fps))
    if classifier.geometry != run_geometry:
        return Check("classifier", "FAIL", f"--classifier {model_dir} was trained on "
                                           f"{classifier.geometry.describe()} clips but this run cuts "
                                           f"{run_geometry.describe()} (--clip-size/--clip-fps): match them, or "
                                           "train a classifier on clips of this geometry")
    return Check("classifier", "ok", f"{model_dir}: {classifier.family}, trained on {run_geometry.describe()} clips")


def first_failure(checks: Iterable[Check]) -> Check | None:
    return next((c for c in checks if c.failed), None)
