"""What a shard writer reads from the object store, and what the store's latency costs it.

    .venv/bin/python benchmarks/shard_reads.py [--clips 1900] [--clip-kb 140] [--pack-clips 10]
                                               [--latency-ms 50] [--concurrency 64] [--with-slow-reference]

The store is the tests' fake object store (counts requests and bytes as GCS serves Beam, sleeps ``--latency-ms``
per request). One shard is written by ``pipeline.shards._write_shard``, each clip from its own pack. Rows: the
shard writer (``--concurrency`` and 1 in flight) at zero and ``--latency-ms`` latency, and the pack reader
``clip_store.Reader`` as reference (``--with-slow-reference``: also at latency). Columns: requests, MB read, read
ratio (target <= 1.1), wall seconds, ratio to zero latency (target <= 2 for the shard writer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import shards  # noqa: E402
from pipeline.io import clip_store, storage  # noqa: E402
from schemas import shard_writer  # noqa: E402
from tests.object_store import FakeObjectStore, packed_clips  # noqa: E402

SHARD = "fakeobj://bucket/out/shards/shard-00000.tar"


def write(clips, reader: str, concurrency: int) -> None:
    if reader == "ranged":
        shards._write_shard(SHARD, clips, concurrency)
        return
    with clip_store.Reader() as opened:  # the reference: one open per pack, Beam's read-ahead
        shard_writer.write_shard(SHARD, clips, read=opened.read, create=storage.atomic_create)


def measure(clips, reader: str, concurrency: int, latency_s: float) -> dict:
    FakeObjectStore.requests.clear()
    FakeObjectStore.bytes_read, FakeObjectStore.latency_s = 0, latency_s
    started = time.perf_counter()
    write(clips, reader, concurrency)
    wall = time.perf_counter() - started
    FakeObjectStore.latency_s = 0.0
    written = len(FakeObjectStore.objects[SHARD])
    return {"requests": sum(v for k, v in FakeObjectStore.requests.items() if k != "upload"),
            "read_mb": FakeObjectStore.bytes_read / 1e6, "ratio": FakeObjectStore.bytes_read / written,
            "wall_s": wall, "shard_mb": written / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1900, help="clips in the shard (one per pack)")
    parser.add_argument("--clip-kb", type=int, default=140)
    parser.add_argument("--pack-clips", type=int, default=10, help="clips per pack (the rest were dropped)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=clip_store.READ_CONCURRENCY)
    parser.add_argument("--with-slow-reference", action="store_true",
                        help="also time the reference reader at --latency-ms (about 2 x clips x latency)")
    args = parser.parse_args(argv)
    FakeObjectStore.reset()
    clips = packed_clips("fakeobj://bucket/out/cache/segment", videos=args.clips, clips_per_video=args.pack_clips,
                         clip_bytes=args.clip_kb * 1024, keep_every=args.pack_clips)
    latency = args.latency_ms / 1000
    runs = [("ranged", args.concurrency, 0.0), ("ranged", args.concurrency, latency), ("ranged", 1, 0.0),
            ("ranged", 1, latency), ("open + read-ahead", 1, 0.0)]
    if args.with_slow_reference:
        runs.append(("open + read-ahead", 1, latency))
    print(f"{len(clips)} clips of {args.clip_kb} KB, each from its own pack of {args.pack_clips} clips")
    print(f"{'reader':>18} {'in flight':>9} {'latency ms':>10} {'requests':>9} {'MB read':>8} {'read ratio':>10} "
          f"{'wall s':>7} {'x zero-latency':>14}")
    zero: dict[tuple[str, int], float] = {}
    worst = 0.0
    for reader, concurrency, latency_s in runs:
        r = measure(clips, reader, concurrency, latency_s)
        base = zero.setdefault((reader, concurrency), r["wall_s"])
        slowdown = r["wall_s"] / base
        if reader == "ranged" and concurrency == args.concurrency:
            worst = max(worst, slowdown)
        print(f"{reader:>18} {concurrency:>9} {latency_s * 1000:>10.0f} {r['requests']:>9} {r['read_mb']:>8.1f} "
              f"{r['ratio']:>10.2f} {r['wall_s']:>7.2f} {slowdown:>14.2f}")
    print(f"shard writer ({args.concurrency} in flight): {args.latency_ms:g} ms per request costs {worst:.2f}x its "
          f"zero-latency time (target <= 2); shard {r['shard_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
