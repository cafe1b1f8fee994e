"""Shards read exactly their clips' bytes: one ranged read per clip, many in flight, handed over in key order.

The object store is the test's fake (``tests.object_store``: GCS's request model, counted); the ``gs://`` path
of ``storage.read_range`` runs google-cloud-storage's real client against a local HTTP server that answers the
JSON API's media downloads (GCS itself cannot be reached from the tests). ``benchmarks/shard_reads.py``
measures the ratios at a shard's real size and with a per-request latency.
"""

from __future__ import annotations

import http.server
import re
import threading
import urllib.parse

import pytest
import webdataset as wds

from pipeline import shards
from pipeline.io import clip_store, storage
from tests.object_store import FakeObjectStore, packed_clips


@pytest.fixture
def store():
    FakeObjectStore.reset()
    yield FakeObjectStore
    FakeObjectStore.reset()


def test_a_shard_reads_each_clip_once_with_one_request(store, tmp_path):
    clips = packed_clips("fakeobj://b/cache", videos=12, clips_per_video=6, clip_bytes=3000, keep_every=2)
    expected = {c.clip_key: clip_store.read_exact(c) for c in clips}
    store.requests.clear()
    store.bytes_read = 0
    written, _, unread = shards._write_shard(str(tmp_path / "s.tar"), reversed(clips), concurrency=4)
    assert not unread
    assert [c.clip_key for c in written] == sorted(expected)
    samples = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert {s["__key__"]: s["mp4"] for s in samples} == expected
    assert dict(store.requests) == {"get": len(clips)}  # no metadata request, no read-ahead
    assert store.bytes_read == sum(len(b) for b in expected.values())
    assert store.bytes_read / (tmp_path / "s.tar").stat().st_size <= 1.1


def test_the_store_counts_what_an_opened_reader_reads_ahead(store):
    """The count can fail: through ``open`` (Beam's GCS reader), a clip costs a metadata request and its pack's
    read-ahead, which is what a shard writer used to pay per clip."""
    clips = packed_clips("fakeobj://b/cache", videos=3, clips_per_video=6, clip_bytes=3000, keep_every=2)
    store.requests.clear()
    store.bytes_read = 0
    for clip in clips:
        with clip_store.Reader() as reader:
            reader.read(clip)
    assert store.requests["metadata"] == len(clips)
    assert store.bytes_read >= 2 * sum(clip_store.size_of(c) for c in clips)


def test_in_order_refuses_another_order_and_raises_a_reads_error_at_its_clip(store):
    clips = packed_clips("fakeobj://b/cache", videos=2, clips_per_video=4, clip_bytes=100, keep_every=1)
    with clip_store.in_order(clips, concurrency=3) as read, pytest.raises(ValueError, match="out of the order"):
        read(clips[1])
    missing = clips[2].replace(location=clip_store.reference("fakeobj://b/cache/gone.clips.bin", 0, 100))
    with clip_store.in_order([clips[0], missing], concurrency=2) as read:
        assert read(clips[0]) == clip_store.read_exact(clips[0])
        with pytest.raises(FileNotFoundError):
            read(missing)


def test_a_local_ranged_read_is_exact_and_refuses_a_short_file(tmp_path):
    path = tmp_path / "pack.clips.bin"
    path.write_bytes(bytes(range(256)) * 4)
    assert storage.read_range(str(path), 250, 12) == (bytes(range(256)) * 4)[250:262]
    with pytest.raises(ValueError, match="8 of 12 bytes at offset 1016"):
        storage.read_range(str(path), 1016, 12)


class _MediaDownloads(http.server.BaseHTTPRequestHandler):
    """GCS's JSON API, the part a ranged read uses: ``GET /download/storage/v1/b/B/o/NAME?alt=media`` with a
    ``Range`` header answered 206; bucket metadata (the client's background lookup) answered with a name."""

    objects: dict[tuple[str, str], bytes] = {}
    ranges: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urllib.parse.urlparse(self.path)
        media = re.fullmatch(r"/download/storage/v1/b/([^/]+)/o/(.+)", url.path)
        if media is None:
            bucket = re.fullmatch(r"/storage/v1/b/([^/]+)", url.path)
            body = f'{{"name": "{bucket.group(1)}", "location": "US"}}'.encode() if bucket else b"{}"
            self.send_response(200 if bucket else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data = self.objects[(media.group(1), urllib.parse.unquote(media.group(2)))]
        self.ranges.append(self.headers["Range"])
        start, end = map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers["Range"]).groups())
        body = data[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_gcs_ranged_read_is_one_get_of_exactly_the_range(monkeypatch):
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the 'dataflow' extra)")
    data = bytes(range(256)) * 40
    _MediaDownloads.objects[("bucket", "out/cache/segment/v.clips.bin")] = data
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MediaDownloads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
        from apache_beam.io.gcp import gcsio

        # no credentials can be found here (Beam would retry the lookup for ~20 s): Beam's anonymous client
        monkeypatch.setattr(gcsio.auth, "get_service_credentials", lambda options: None)
        monkeypatch.setattr(storage, "_GCS_CLIENT", None)
        got = storage.read_range("gs://bucket/out/cache/segment/v.clips.bin", 1000, 3000)
        assert got == data[1000:4000] and _MediaDownloads.ranges == ["bytes=1000-3999"]
    finally:
        server.shutdown()
        monkeypatch.setattr(storage, "_GCS_CLIENT", None)


def test_reads_in_flight_follow_the_store(tmp_path):
    """Many for an object store (each read waits on a request), one for local files and inline bytes."""
    remote = packed_clips("fakeobj://b/cache", videos=2, clips_per_video=2, clip_bytes=10, keep_every=1)
    local = [c.replace(location=clip_store.reference(str(tmp_path / "p.clips.bin"), 0, 10)) for c in remote]
    inline = [c.replace(mp4=b"x" * 10, location="") for c in remote]
    assert clip_store.reads_in_flight(remote) == clip_store.READ_CONCURRENCY
    assert clip_store.reads_in_flight(local) == clip_store.reads_in_flight(inline) == 1
    assert clip_store.reads_in_flight(local + remote[:1]) == clip_store.READ_CONCURRENCY
    (tmp_path / "p.clips.bin").write_bytes(bytes(range(10)))
    with clip_store.in_order(local, concurrency=1) as read:  # no pool: each clip read when asked for
        assert [read(c) for c in local] == [bytes(range(10))] * len(local)
