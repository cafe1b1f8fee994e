"""The partitioned tables' writer: the shuffle's row encoding, the part writer on Beam's real runner, and the
memory release it does after each part."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.io import partitioned
from pipeline.runtime import process_memory
from schemas import CandidateVideo, Clip, Outcome, ids, to_table


def _clips() -> list[Clip]:
    hostile = CandidateVideo(video_id="../../etc/passwd\u202e\x00", source="youtube", url="https://e.x/v?a=1&b=2",
                             title="\U0001f3ae \"quoted\" \\ back\nline", duration_s=None,
                             extra={"tags": ["a", "b"], "nested": {"n": 1.5}, "null": None})
    out = []
    for i in range(7):
        key = ids.clip_key(ids.video_key(hostile.video_id), 16.0 * i)
        out.append(Clip(clip_key=key, video_id=hostile.video_id, clip_index=i, start_s=16.0 * i,
                        end_s=16.0 * i + 16, num_frames=160, fps=10.0, width=160, height=90,
                        location="shard-00000.tar", quality_score=None if i % 2 else i / 10,
                        actions=None if i % 3 else [i % 4] * 160, video=None if i == 5 else hostile))
    return out


def _outcomes() -> list[Outcome]:
    return [Outcome(item_id=f"v{i}", item_kind="video", stage="download", outcome="failed" if i % 2 else "kept",
                    reason="http_404" if i % 2 else "", detail="\udcff undecodable \u00e9" if i == 3 else "",
                    video_id=f"v{i}", duration_s=None if i == 2 else 600.5 + i) for i in range(9)]


def test_encoded_rows_build_the_same_table_as_the_records():
    """The shuffle's encoding loses nothing: nested records, dict and list columns, nulls, hostile text."""
    for records, record_type in ((_clips(), Clip), (_outcomes(), Outcome)):
        expected = to_table(records, record_type)
        decoded = partitioned.decode_rows([partitioned.encode_row(r) for r in records], record_type.arrow_schema())
        assert decoded.equals(expected)
        assert decoded.schema.equals(expected.schema, check_metadata=True)


def test_written_parts_hold_every_record_sorted(tmp_path, monkeypatch):
    """Through Beam's real runner, with parts decoded in several batches: every row once, sorted per part, and
    the same rows as ``to_table`` of the records."""
    monkeypatch.setattr(partitioned, "BATCH_ROWS", 3)
    records = _outcomes() + [Outcome(item_id=f"c{i:03d}", item_kind="clip", stage="quality", outcome="dropped",
                                     reason="low_quality", detail=f"score {i}", video_id="v1", duration_s=16.0)
                             for i in range(40)]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (p | beam.Create(records)
             | partitioned.WritePartitioned(str(tmp_path), Outcome, key=lambda r: r.item_id,
                                            sort_columns=["item_id"], rows_per_part=10))
    paths = partitioned.part_paths(str(tmp_path))
    assert len(paths) == partitioned.parts_for(len(records), 10) == 5
    rows = []
    for path in paths:
        ids_in_part = pq.read_table(path).column("item_id").to_pylist()
        assert ids_in_part == sorted(ids_in_part)
        rows += pq.read_table(path).to_pylist()
    expected = to_table(records, Outcome).to_pylist()
    assert sorted(rows, key=lambda r: r["item_id"]) == sorted(expected, key=lambda r: r["item_id"])


def test_release_freed_gives_freed_heap_pages_back():
    """In a fresh process: 200 MB of small malloc blocks freed (one kept at the top, so glibc cannot shrink the
    heap by itself) stay in RSS until ``release_freed``."""
    script = textwrap.dedent("""
        import ctypes, sys
        from pipeline.runtime import process_memory
        def rss_mb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(2048) for _ in range(100_000)]
        for b in blocks:
            ctypes.memset(b, 1, 2048)
        for b in blocks[:-1]:
            libc.free(b)
        before = rss_mb()
        released = process_memory.release_freed()
        print(released, before, rss_mb())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2], env={"MALLOC_ARENA_MAX": "1", "PATH": "/usr/bin:/bin"})
    released, before, after = out.stdout.split()
    if released == "False":  # not glibc: nothing to release with, and nothing claimed
        assert not process_memory.release_freed()
        return
    assert float(before) - float(after) > 150, out.stdout
