"""Read and write Parquet tables through Beam's ``FileSystems`` (local paths and ``gs://`` alike).

Writes go to a temporary name and are renamed into place, so a crashed run never leaves a half-written table
that a rerun or a reader would trust.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems


def write_table(path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(path, buf.getvalue())


def write_bytes(path: str, data: bytes) -> None:
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path and not FileSystems.exists(parent):
        FileSystems.mkdirs(parent)
    tmp = path + ".tmp"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def read_table(path: str) -> pa.Table:
    return pq.read_table(io.BytesIO(read_bytes(path)))
