"""Per-item tables as partitioned Parquet datasets, written in parallel by the workers that hold the rows.

A table (``outcomes/``, ``manifest/``) is a directory of parts, ``part-00003-of-00064.parquet``, which pandas,
``pyarrow.dataset`` and DuckDB read as one table; no process holds more than a part. Deterministic bytes: the part
count follows from the row count (``parts_for``), a row's part is a stable hash (sha1) of its key, each part is
sorted on a total order, and every part 0..n-1 is written, empty ones too. Cost: one shuffle keyed by part. Rows
cross it as pickled tuples of column values (``encode_row``), not record objects, because Beam hands a writer its
part as one list and objects cost several times the memory
(docs/measurements/2026-12-04-audit-worker-memory.md); they become Arrow ``BATCH_ROWS`` at a time.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.io import storage
from pipeline.runtime import process_memory
from schemas import Record, from_table
from schemas.stats import TableParts

ROWS_PER_PART = 20_000
BATCH_ROWS = 2_000  # rows decoded and converted to Arrow at a time while a part is gathered
_PART = re.compile(r"^part-(?:(s\d{5})-)?(\d{5})-of-(\d{5})\.parquet$")


def parts_for(num_rows: int, rows_per_part: int = ROWS_PER_PART) -> int:
    return max(1, math.ceil(num_rows / max(rows_per_part, 1)))


def part_of(key: str, num_parts: int) -> int:
    """Stable across processes and runs (Python's ``hash`` of a str is salted per process)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:16], 16) % num_parts


def part_name(index: int, num_parts: int, slice_label: str = "") -> str:
    """``part-00003-of-00064.parquet``; with the slice label of a local run cut into slices
    (``pipeline.local.local_slices``), ``part-s00002-00003-of-00064.parquet``: each slice writes its own parts."""
    middle = f"{slice_label}-" if slice_label else ""
    return f"part-{middle}{index:05d}-of-{num_parts:05d}.parquet"


def part_paths(dataset_dir: str) -> list[str]:
    """The part files of a dataset directory, sorted (an empty list when there is none)."""
    return storage.match(FileSystems.join(dataset_dir, "part-*.parquet"))


def encode_row(record: Record) -> bytes:
    """A record as the shuffle carries it to its part writer: its row's values, pickled. ``to_row`` and
    ``arrow_schema`` both follow ``fields()``, so the values are in schema order."""
    return pickle.dumps(tuple(record.to_row().values()), protocol=pickle.HIGHEST_PROTOCOL)


def decode_rows(encoded: list[bytes], schema: pa.Schema) -> pa.Table:
    """``encode_row``'s output back as a table: the same values ``schemas.to_table`` would have built."""
    names = schema.names
    return pa.Table.from_pylist([dict(zip(names, pickle.loads(b), strict=True)) for b in encoded], schema=schema)


def sorted_part(batches: list[pa.Table], schema: pa.Schema, sort_columns: list[str]) -> pa.Table:
    """One part's rows in their total order: the sort columns ascending, nulls first (as Python sorts None)."""
    table = pa.concat_tables(batches) if batches else schema.empty_table()
    try:  # pyarrow >= 20 takes the null placement per key (and warns about the table-wide option)
        table = table.sort_by([(c, "ascending", "at_start") for c in sort_columns])
    except (TypeError, ValueError):
        table = table.sort_by([(c, "ascending") for c in sort_columns], null_placement="at_start")
    return table.combine_chunks()


def write_part(path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(path, buf.getvalue())


def remove_stale_parts(dataset_dir: str, num_parts: int) -> list[str]:
    """Delete parts an earlier run left with another part count, or from slices (this run wrote all
    ``num_parts``, unsliced)."""
    stale = []
    for path in part_paths(dataset_dir):
        match = _PART.match(path.rsplit("/", 1)[-1])
        if match is None or match.group(1) or int(match.group(3)) != num_parts:
            stale.append(path)
    storage.delete(stale)
    return stale


def remove_parts_except(dataset_dir: str, keep: set[str]) -> list[str]:
    """Delete the parts whose file names are not in ``keep`` (what a run cut into slices wrote)."""
    stale = [path for path in part_paths(dataset_dir) if path.rsplit("/", 1)[-1] not in keep]
    storage.delete(stale)
    return stale


def part_rows(path: str) -> int:
    """A part's row count, from its Parquet footer (the rows are not read)."""
    def footer_rows() -> int:
        with FileSystems.open(path) as f:
            return pq.ParquetFile(f).metadata.num_rows

    return storage.retrying(f"reading {path}", footer_rows)


def iter_batches(dataset_dir: str, columns: list[str] | None = None,
                 batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Every row of a dataset directory, a bounded batch at a time (one part open at once): what the
    ``audit`` command streams instead of loading a table."""
    for path in part_paths(dataset_dir):
        yield from iter_part_batches(path, columns, batch_rows)


def iter_part_batches(path: str, columns: list[str] | None = None,
                      batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """One part's rows, a bounded batch at a time."""
    parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))  # one part in memory at a time (bounded)
    yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)


class _WritePartFn(beam.DoFn):
    """(part index, encoded rows) -> the part file; yields the part's (name, row count), one small record per
    part. After each part it hands glibc's freed pages back (``process_memory.release_freed``)."""

    def __init__(self, dataset_dir: str, record_type: type[Record], sort_columns: list[str], slice_label: str = ""):
        self.dataset_dir = dataset_dir
        self.record_type = record_type
        self.sort_columns = sort_columns
        self.slice_label = slice_label

    def process(self, element, num_parts: int):
        index, rows = element
        schema = self.record_type.arrow_schema()
        batches, pending = [], []
        for encoded in rows:
            if encoded is None:  # the marker that makes every part exist, empty or not
                continue
            pending.append(encoded)
            if len(pending) >= BATCH_ROWS:
                batches.append(decode_rows(pending, schema))
                pending = []
        if pending:
            batches.append(decode_rows(pending, schema))
        name = part_name(index, num_parts, self.slice_label)
        table = sorted_part(batches, schema, self.sort_columns)
        del batches
        write_part(FileSystems.join(self.dataset_dir, name), table)
        num_rows = table.num_rows
        del table
        process_memory.release_freed()
        yield name, num_rows


class PartsSummaryFn(beam.CombineFn):
    """(part name, rows) per written part -> ``TableParts``: a table's entry in stats.json."""

    def create_accumulator(self):
        return TableParts(parts=0, rows=0)

    def add_input(self, acc, part):
        _, rows = part
        return TableParts(acc.parts + 1, acc.rows + rows)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return TableParts(sum(a.parts for a in accs), sum(a.rows for a in accs))

    def extract_output(self, acc):
        return acc


class WritePartitioned(beam.PTransform):
    """Records -> ``<dataset_dir>/part-*-of-N.parquet``; outputs one ``(part name, rows)`` per part.

    ``key`` names a record's partition key (``item_id``, ``clip_key``); ``sort_columns`` order the rows in
    a part and must make a total order of distinct rows. ``num_rows`` is a singleton PCollection of the
    record count (the caller usually has it already, for its stats).
    """

    def __init__(self, dataset_dir: str, record_type: type[Record], key: Callable[[Record], str],
                 sort_columns: list[str], rows_per_part: int = ROWS_PER_PART, slice_label: str = ""):
        super().__init__()
        self.dataset_dir = dataset_dir
        self.record_type = record_type
        self.key = key
        self.sort_columns = sort_columns
        self.rows_per_part = rows_per_part
        self.slice_label = slice_label

    def expand(self, records):
        key, rows_per_part = self.key, self.rows_per_part
        num_parts = (records
                     | "CountRows" >> beam.combiners.Count.Globally()
                     | "NumParts" >> beam.Map(parts_for, rows_per_part))
        parts = beam.pvalue.AsSingleton(num_parts)
        every_part = (records.pipeline
                      | "Seed" >> beam.Create([None])
                      | "EveryPart" >> beam.FlatMap(lambda _, n: ((i, None) for i in range(n)), n=parts))
        keyed = records | "ChoosePart" >> beam.Map(lambda r, n: (part_of(key(r), n), encode_row(r)), n=parts)
        return ((keyed, every_part)
                | "WithEmptyParts" >> beam.Flatten()
                | "GroupByPart" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WritePartFn(self.dataset_dir, self.record_type, self.sort_columns,
                                                     self.slice_label), num_parts=parts))


def read_dataset(dataset_dir: str, record_type: type[Record]) -> Iterable[Record]:
    """The records of a dataset directory, streamed part by part (for tests and small tables)."""
    for path in part_paths(dataset_dir):
        table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
        yield from from_table(table, record_type)
