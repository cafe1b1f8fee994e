"""Progress a person can read: done/total per stage for the whole job, with rate and ETA, every few seconds.

Beam's local runner reports its counters only when the job ends, and each worker sees only its own share, so
the workers tally what the launcher shows themselves: every process keeps one in-memory ``Counter`` and
rewrites one small JSON file (``<host>-<pid>.json``) in a progress directory at most every ``FLUSH_S``
seconds and at the end of each bundle; the launcher sums the files. The directory is a temporary one the
launcher makes for a local run; runs on a remote runner get none (Dataflow's console shows the job's
counters) and the tally is a no-op there. Cost: one file write per worker process every two seconds.

Keys: ``out/<stage>/<kind>/<outcome>`` for each Outcome (``aggregates.CountOutcomes``), ``pass/<kind>/<stage>``
for each item handed to a stage (``aggregates.register``), ``PLANNED`` for each item a local run's search plan read
(``pipeline.local.search_plan``, in the launcher, before the first job starts).
"""

from __future__ import annotations

import collections
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from schemas import reasons

FLUSH_S = 2.0
PLANNED = "plan/rows"


class _Tally:
    """This process's counts and when they were last written."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.written = 0.0
        self.dirty = False


_TALLIES: dict[str, _Tally] = {}  # per progress directory: one process may serve several runs (tests)
_TALLIES_LOCK = threading.Lock()


def _tally(progress_dir: str) -> _Tally:
    with _TALLIES_LOCK:
        return _TALLIES.setdefault(progress_dir, _Tally())


def count(progress_dir: str, key: str, n: int = 1) -> None:
    """Add ``n`` to ``key`` in this process's tally; write the tally if it is due (no-op without a directory)."""
    if not progress_dir:
        return
    tally = _tally(progress_dir)
    with tally.lock:
        tally.counts[key] += n
        tally.dirty = True
    if time.monotonic() - tally.written >= FLUSH_S:
        flush(progress_dir)


def flush(progress_dir: str) -> None:
    """Write this process's tally now (the end of a bundle: its last counts must not wait for the next one)."""
    if not progress_dir:
        return
    tally = _tally(progress_dir)
    if not tally.dirty:
        return
    with tally.lock:
        data, tally.dirty, tally.written = json.dumps(dict(tally.counts)), False, time.monotonic()
    path = Path(progress_dir, f"{socket.gethostname()}-{os.getpid()}.json")
    try:
        tmp = path.with_suffix(f".tmp{threading.get_ident()}")
        tmp.write_text(data)
        os.replace(tmp, path)
    except OSError:  # the launcher removed the directory (the run ended): progress is a courtesy, not data
        pass


def read_totals(progress_dir: str) -> collections.Counter:
    """The sum of every process's tally in ``progress_dir``."""
    total: collections.Counter = collections.Counter()
    for path in Path(progress_dir).glob("*.json"):
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):  # mid-replace or gone: the next read has it
            continue
    return total


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _done(counts: Mapping[str, int], stage: str, kind: str) -> int:
    return sum(n for k, n in counts.items() if k.startswith(f"out/{stage}/{kind}/"))


def progress_line(counts: Mapping[str, int], elapsed_s: float, rows: int | None) -> str:
    """``search 49/49 rows | download 30/41 videos | segment 25/30 videos | clips 80 cut, 60 decided, 20 kept |
    0.61 videos/s, elapsed 0:00:41, ETA 0:00:26``. ``rows``: the catalogs' row count (None: unknown, e.g. a
    YouTube search), the total every video's final outcome counts towards."""
    video, clip = reasons.ITEM_VIDEO, reasons.ITEM_CLIP
    segmented = _done(counts, reasons.STAGE_SEGMENT, video)
    # Counters are flushed per worker process at their own times, so a later step's tally can arrive before
    # an earlier one's (the download and the segmentation are even one fused step): a segmented video was
    # downloaded, and a video whose download ended was a candidate.
    downloaded = max(counts.get(f"pass/{video}/{reasons.STAGE_SEGMENT}", 0), segmented)
    download_ended = downloaded + _done(counts, reasons.STAGE_DOWNLOAD, video)
    candidates = max(counts.get(f"pass/{video}/{reasons.STAGE_DOWNLOAD}", 0), download_ended)
    read = candidates + _done(counts, reasons.STAGE_SEARCH, video)
    planned = counts.get(PLANNED, 0)
    parts = [f"planning {planned}/{rows if rows is not None else '?'} rows" if planned and not read else
             f"search {read}/{rows if rows is not None else '?'} rows",
             f"download {download_ended}/{candidates} videos",
             f"segment {segmented}/{downloaded} videos"]
    cut = counts.get(f"pass/{clip}/{reasons.STAGE_QUALITY}", 0)
    decided = counts.get(f"pass/{clip}/{reasons.STAGE_SHARD}", 0) + _done(counts, reasons.STAGE_QUALITY, clip)
    kept = counts.get(f"out/{reasons.STAGE_SHARD}/{clip}/{reasons.KEPT}", 0)
    parts.append(f"clips {cut} cut, {decided} scored, {kept} kept")
    finished = sum(n for k, n in counts.items() if k.startswith("out/") and k.split("/")[2] == video)
    rate = finished / elapsed_s if elapsed_s > 0 else 0.0
    timing = f"{rate:.2f} videos/s, elapsed {clock(elapsed_s)}"
    if rows and rate > 0 and finished < rows:
        timing += f", ETA {clock((rows - finished) / rate)}"
    return " | ".join(parts + [timing])


class Reporter:
    """The launcher's side: a thread that prints the job's progress line every ``every_s`` seconds.

    On a terminal the line is rewritten in place; elsewhere (a log, CI) a new line is printed only when
    something changed, at most every ``every_s`` seconds."""

    def __init__(self, progress_dir: str, rows: int | None, every_s: float | None = None, stream=None):
        self.progress_dir = progress_dir
        self.rows = rows
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (2.0 if self.tty else 10.0)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._last = ""
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.show()

    def show(self) -> None:
        line = "progress: " + progress_line(read_totals(self.progress_dir), time.monotonic() - self.started,
                                             self.rows)
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        elif line.rsplit(" | ", 1)[0] != self._last.rsplit(" | ", 1)[0]:  # news, not just the clock
            self.stream.write(line + "\n")
        self._last = line
        self.stream.flush()

    def stop(self) -> None:
        """Stop the thread and end the in-place line (the summary follows on a line of its own)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
