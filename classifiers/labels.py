"""Hand-label files: load, validate (every problem at once, with line numbers), resolve, map to a binary target.

Formats (one ``schemas.HandLabel`` per row): CSV with a header naming ``item_id,score`` plus optional
``item_kind,labeller,note`` (``item_kind`` is ``video``, the default, or ``clip``; extra columns are an error, as a
misspelt column would silently drop data), or JSONL with the same keys (blank and ``#`` lines skipped).

``load_labels`` raises one ``LabelFileError`` listing every problem, so a person fixing a 10k-row file reruns
once: unreadable lines, wrong columns, scores outside 1..5, bad item kinds, ids unknown for their kind (when the
caller passes the known items), duplicate rows, one labeller giving an item two scores, and labellers more than
``LabelPolicy.max_disagreement`` points apart (the binary target itself is in dispute).

Remaining disagreements resolve to the MEDIAN score, rounded DOWN (towards "worse") between two scores: for a
filter whose job is precision, an item is "good" only when at least half of its labellers gave it that score.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from schemas import HandLabel, RecordError, reasons

REQUIRED_COLUMNS = ("item_id", "score")
OPTIONAL_COLUMNS = ("item_kind", "labeller", "note")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
KINDS = (reasons.ITEM_VIDEO, reasons.ITEM_CLIP)

# The ids labels may refer to: ``{"video": video ids, "clip": clip keys}``, or one flat collection that
# stands for both kinds (then a label's kind is not checked against its id).
KnownIds = Mapping[str, Collection[str]] | Collection[str]


class LabelFileError(ValueError):
    """A label file has problems; ``problems`` lists every one (line number, message)."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = sorted(problems)
        lines = [f"  line {line}: {msg}" if line else f"  {msg}" for line, msg in self.problems]
        super().__init__(f"{path}: {len(self.problems)} problem(s) in the label file:\n" + "\n".join(lines))


@dataclasses.dataclass(frozen=True)
class LabelPolicy:
    """How labels become training targets."""

    positive_scores: tuple[int, ...] = (5,)  # the paper: 5 = good
    negative_scores: tuple[int, ...] = (1,)  # the paper: 1 = bad; scores in neither set are left out
    max_disagreement: int = 2  # labellers further apart than this on one item: a conflict (error)

    def __post_init__(self) -> None:
        overlap = set(self.positive_scores) & set(self.negative_scores)
        if overlap:
            raise ValueError(f"scores {sorted(overlap)} are both positive and negative")
        for s in (*self.positive_scores, *self.negative_scores):
            if not 1 <= s <= 5:
                raise ValueError(f"target score {s} is outside 1..5")

    def target(self, score: int) -> int | None:
        """1 (good), 0 (bad), or None when the score is left out of training."""
        if score in self.positive_scores:
            return 1
        if score in self.negative_scores:
            return 0
        return None

    @classmethod
    def parse(cls, positive: str, negative: str, max_disagreement: int = 2) -> LabelPolicy:
        """From command-line strings such as ``"5"`` and ``"1,2"``."""
        def ints(text: str) -> tuple[int, ...]:
            return tuple(int(x) for x in text.split(",") if x.strip())
        return cls(ints(positive), ints(negative), max_disagreement)


@dataclasses.dataclass(frozen=True)
class ResolvedLabel:
    """One item's final score and where it came from."""

    item_id: str
    item_kind: str
    score: int
    labels: tuple[HandLabel, ...]  # the rows behind it
    lines: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """A validated label file: one resolved score per (item kind, item id)."""

    path: str
    sha256: str
    items: dict[tuple[str, str], ResolvedLabel]
    notes: tuple[str, ...] = ()  # resolutions applied (for the training log)

    def score_for(self, item_kind: str, item_id: str) -> int | None:
        r = self.items.get((item_kind, item_id))
        return None if r is None else r.score

    def clip_score(self, clip_key: str, video_id: str) -> int | None:
        """A clip's label: its own if it has one, else its video's."""
        own = self.score_for(reasons.ITEM_CLIP, clip_key)
        return own if own is not None else self.score_for(reasons.ITEM_VIDEO, video_id)

    def __len__(self) -> int:
        return len(self.items)

    def check_ids(self, known_ids: KnownIds, allow_unknown: bool = False) -> LabelSet:
        """This set restricted to ids present in ``known_ids``; raises ``LabelFileError`` (with line numbers)
        for unknown ids (skipped and noted instead with ``allow_unknown``) and ids of the wrong kind.

        Kept apart from parsing so that a file's own problems can be reported before the clips are read.
        """
        entries = ((kind, item_id, r.lines) for (kind, item_id), r in self.items.items())
        problems, notes, unknown = _id_problems(entries, known_ids, allow_unknown)
        if problems:
            raise LabelFileError(self.path, problems)
        items = {k: v for k, v in self.items.items() if k not in unknown}
        return dataclasses.replace(self, items=items, notes=self.notes + tuple(notes))


def _rows_csv(text: str, problems: list[tuple[int, str]]) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        problems.append((1, "empty file: expected a header row " + ",".join(COLUMNS)))
        return []
    except csv.Error as exc:
        problems.append((1, f"unreadable header ({exc})"))
        return []
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or dupes:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if unknown:
            parts.append(f"unknown column(s) {unknown}")
        if dupes:
            parts.append(f"repeated column(s) {dupes}")
        problems.append((1, "; ".join(parts) + f" (expected {','.join(COLUMNS)})"))
        return []
    rows = []
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append((reader.line_num, f"unreadable CSV line ({exc})"))
            continue
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            problems.append((line, f"expected {len(header)} fields ({','.join(header)}), got {len(values)}"))
            continue
        rows.append((line, dict(zip(header, values, strict=True))))
    return rows


def _rows_jsonl(text: str, problems: list[tuple[int, str]]) -> list[tuple[int, dict]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append((line, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            problems.append((line, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        unknown = sorted(set(obj) - set(COLUMNS))
        missing = [c for c in REQUIRED_COLUMNS if c not in obj]
        if unknown or missing:
            problems.append((line, f"missing key(s) {missing}, unknown key(s) {unknown}".replace(
                "missing key(s) [], ", "").replace(", unknown key(s) []", "")))
            continue
        rows.append((line, obj))
    return rows


def _parse_score(value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"score must be an integer 1..5, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"score must be an integer 1..5, got {value!r}") from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise ValueError(f"score must be an integer 1..5, got {value!r}")
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"score must be an integer 1..5, got {value!r}")
    if not 1 <= number <= 5:
        raise ValueError(f"score {int(number)} is out of range 1..5")
    return int(number)


def _id_problems(entries: Iterable[tuple[str, str, tuple[int, ...]]], known_ids: KnownIds,
                 allow_unknown: bool) -> tuple[list[tuple[int, str]], list[str], set[tuple[str, str]]]:
    """(problems, notes, unknown (kind, id) keys) for ``(kind, item_id, lines)`` entries."""
    if isinstance(known_ids, Mapping):
        known = {kind: set(known_ids.get(kind, ())) for kind in KINDS}
    else:
        flat = set(known_ids)
        known = {kind: flat for kind in KINDS}
    problems: list[tuple[int, str]] = []
    notes: list[str] = []
    unknown: set[tuple[str, str]] = set()
    for kind, item_id, lines in entries:
        if item_id in known.get(kind, ()):
            continue
        other = next((k for k in KINDS if k != kind and item_id in known[k]), None)
        if other is not None:  # a real id, but of the other kind: always a mistake in the file
            problems.extend((line, f"{kind} label names {item_id!r}, which is a {other} id, not a {kind} id "
                                   f"(set item_kind to {other})") for line in lines)
        elif allow_unknown:
            unknown.add((kind, item_id))
            where = ", ".join(str(line) for line in lines)
            notes.append(f"line {where}: skipped label for unknown {kind} {item_id!r}")
        else:
            problems.extend((line, f"unknown {kind} id {item_id!r} (no such {kind} in the clips given)")
                            for line in lines)
    return problems, notes, unknown


def parse_labels(text: str, path: str = "<labels>", known_ids: KnownIds | None = None,
                 policy: LabelPolicy | None = None, allow_unknown: bool = False,
                 fmt: str | None = None) -> LabelSet:
    """Validate and resolve label text; raise ``LabelFileError`` listing every problem.

    ``known_ids``: the video ids and clip keys labels may refer to, ideally by kind (``{"video": ...,
    "clip": ...}``; see ``KnownIds``; None: do not check). With ``allow_unknown`` labels for unknown ids
    are skipped and noted instead of being errors (a labels file covering more videos than one run
    downloaded). Every problem, of the file itself or of its ids, is reported in one ``LabelFileError``.
    """
    policy = policy or LabelPolicy()
    problems: list[tuple[int, str]] = []
    fmt = fmt or ("jsonl" if path.endswith((".jsonl", ".json", ".ndjson")) else "csv")
    rows = _rows_jsonl(text, problems) if fmt == "jsonl" else _rows_csv(text, problems)
    notes: list[str] = []
    by_item: dict[tuple[str, str], list[tuple[int, HandLabel]]] = {}
    for line, row in rows:
        item_id = str(row.get("item_id", "") if row.get("item_id") is not None else "").strip()
        try:
            score = _parse_score(row.get("score"))
        except ValueError as exc:
            problems.append((line, f"item {item_id!r}: {exc}"))
            continue
        kind = str(row.get("item_kind") or reasons.ITEM_VIDEO).strip()
        try:
            label = HandLabel(item_id=item_id, score=score, item_kind=kind,
                              labeller=str(row.get("labeller") or "").strip(), note=str(row.get("note") or ""))
        except RecordError as exc:
            problems.append((line, str(exc)))
            continue
        by_item.setdefault((kind, item_id), []).append((line, label))

    items: dict[tuple[str, str], ResolvedLabel] = {}
    for (kind, item_id), entries in by_item.items():
        bad = False
        seen: dict[str, tuple[int, int]] = {}  # labeller -> (line, score)
        for line, label in entries:
            prev = seen.get(label.labeller)
            if prev is None:
                seen[label.labeller] = (line, label.score)
            elif prev[1] == label.score:
                problems.append((line, f"duplicate row: {kind} {item_id!r} by labeller {label.labeller!r} "
                                       f"already labelled {label.score} on line {prev[0]}"))
                bad = True
            else:
                problems.append((line, f"conflicting labels: {kind} {item_id!r} by labeller {label.labeller!r} "
                                       f"scored {label.score} here and {prev[1]} on line {prev[0]}"))
                bad = True
        scores = sorted(s for _, s in seen.values())
        if not bad and scores[-1] - scores[0] > policy.max_disagreement:
            where = ", ".join(f"line {ln}: {s} by {who!r}" for who, (ln, s) in seen.items())
            problems.append((min(ln for ln, _ in seen.values()),
                             f"conflicting labels: {kind} {item_id!r} scored {scores[0]}..{scores[-1]} "
                             f"(more than {policy.max_disagreement} apart; {where})"))
            bad = True
        if bad:
            continue
        n = len(scores)
        resolved = scores[(n - 1) // 2]  # lower median: rounds a between-scores median down
        if n > 1:
            notes.append(f"{kind} {item_id!r}: labellers gave {scores}, resolved to {resolved} (lower median)")
        items[(kind, item_id)] = ResolvedLabel(item_id, kind, resolved, tuple(lb for _, lb in entries),
                                               tuple(ln for ln, _ in entries))
    if known_ids is not None:
        entries = ((kind, item_id, tuple(ln for ln, _ in found)) for (kind, item_id), found in by_item.items())
        id_problems, id_notes, unknown = _id_problems(entries, known_ids, allow_unknown)
        problems.extend(id_problems)
        notes.extend(id_notes)
        items = {k: v for k, v in items.items() if k not in unknown}
    if problems:
        raise LabelFileError(path, problems)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LabelSet(path=path, sha256=digest, items=items, notes=tuple(notes))


def load_labels(path: str | Path, known_ids: KnownIds | None = None, policy: LabelPolicy | None = None,
                allow_unknown: bool = False) -> LabelSet:
    """Read and validate a CSV or JSONL label file (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(str(path), [(0, f"cannot read the file ({exc})")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(str(path), [(0, f"not UTF-8 text ({exc})")]) from None
    labels = parse_labels(text, str(path), known_ids, policy, allow_unknown)
    return dataclasses.replace(labels, sha256=hashlib.sha256(raw).hexdigest())


def write_labels_csv(labels: list[HandLabel], path: str | Path) -> None:
    """Write labels in the CSV format ``load_labels`` reads."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("item_id", "item_kind", "score", "labeller", "note"))
        for lb in labels:
            writer.writerow((lb.item_id, lb.item_kind, lb.score, lb.labeller, lb.note))
