"""Read and write Parquet tables through Beam's ``FileSystems`` (local paths and ``gs://`` alike).

Writes go through ``storage.write_bytes`` (a temporary name renamed into place), so a crashed run never
leaves a half-written table that a rerun or a reader would trust.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.storage import read_bytes, write_bytes


def write_table(path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(path, buf.getvalue())


def read_table(path: str) -> pa.Table:
    return pq.read_table(io.BytesIO(read_bytes(path)))
