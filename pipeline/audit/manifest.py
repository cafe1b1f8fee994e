"""``manifest/``: one row per kept clip, for finding clips without opening shards.

The row is the ``Clip`` record itself (one definition of a clip's fields) with the bytes left out and
``location`` naming the shard (``shards/shard-00003.tar``): key, video id, start/end, frames, quality score,
ground-truth actions and the source video's metadata (``video`` struct). The table is a partitioned Parquet
dataset (``manifest/part-00000-of-00004.parquet``, ``pipeline.io.partitioned``) written by the workers that
hold the rows: parts by hash of the clip key, rows sorted by clip key within a part, so the files are
identical on every run with the same inputs. Read it as one table with ``pd.read_parquet(out + "/manifest")``,
``pyarrow.dataset.dataset(...)`` or DuckDB's ``read_parquet('out/manifest/*.parquet')``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems

from pipeline.io import partitioned
from schemas import Clip

MANIFEST_DIR = "manifest"


def manifest_dir(output_dir: str) -> str:
    return FileSystems.join(output_dir, MANIFEST_DIR)


class WriteManifest(partitioned.WritePartitioned):
    """Manifest Clips (no bytes) -> ``<output_dir>/manifest/part-*.parquet``; one (part, rows) per part."""

    def __init__(self, output_dir: str, rows_per_part: int = partitioned.ROWS_PER_PART, slice_label: str = ""):
        super().__init__(manifest_dir(output_dir), Clip, key=operator.attrgetter("clip_key"),
                         sort_columns=["clip_key"], rows_per_part=rows_per_part, slice_label=slice_label)


def read_manifest(output_dir: str) -> Iterator[Clip]:
    """The manifest's rows, streamed part by part."""
    return partitioned.read_dataset(manifest_dir(output_dir), Clip)
