"""``manifest.parquet``: one row per kept clip, for finding clips without opening shards.

The row is the ``Clip`` record itself (one definition of a clip's fields) with the bytes left out and
``location`` naming the shard (``shards/shard-00003.tar``): key, video id, start/end, frames, quality score,
ground-truth actions and the source video's metadata (``video`` struct). Rows are sorted by clip key, so
the file is identical on every run with the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipeline import tables
from schemas import Clip, from_table, to_table

MANIFEST = "manifest.parquet"


def manifest_table(clips: Iterable[Clip]) -> pa.Table:
    rows = sorted((c.replace(mp4=None) for c in clips), key=lambda c: c.clip_key)
    return to_table(rows, Clip)


def write_manifest(output_dir: str, clips: Iterable[Clip]) -> str:
    path = FileSystems.join(output_dir, MANIFEST)
    tables.write_table(path, manifest_table(clips))
    return path


def read_manifest(output_dir: str) -> list[Clip]:
    return from_table(tables.read_table(FileSystems.join(output_dir, MANIFEST)), Clip)
