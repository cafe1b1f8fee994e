"""Storage faults end as outcomes, not as a failed job: whole local runs into the fake object store
(``tests.object_store``, the stand-in for GCS, which cannot be reached from the tests) with faults injected.

- one operation in ten on the job's data (downloads, clip store, shards, tables) fails once: the outputs are
  those of a clean run (every operation is retried inside its step, ``storage.retrying``). The launcher's own
  few files (the search plan, the run's record) are not in the count: a launcher that cannot reach the store
  stops with one line, and the rerun resumes;
- a prefix that always fails (one video's clip store entry): that video ends ``failed: storage_error``,
  everything else is done, the run exits 75 naming the count, and a rerun after the fault clears completes
  with the clean run's outputs;
- the audit's own tables refused for good: the run fails (exit 1) with one line naming the stage and the write.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from pipeline import run
from pipeline.audit import exit_status
from pipeline.download import DownloadConfig, download_one
from pipeline.io import partitioned, storage
from schemas import CandidateVideo, DownloadedVideo, Outcome
from tests import media
from tests.object_store import FakeObjectStore, ServiceUnavailable

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")


@pytest.fixture
def store(monkeypatch):
    FakeObjectStore.reset()
    monkeypatch.setattr(storage, "RETRY", storage.RetryPolicy(attempts=4, base_s=0.0))  # no pauses in tests
    yield FakeObjectStore
    FakeObjectStore.reset()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    with open(root / "catalog.jsonl", "w") as f:
        for name, seconds in (("vid-a", 33.0), ("vid-b", 16.5)):
            path = media.write_video(root / f"{name}.mp4", fps=10, duration_s=seconds, width=160, height=90)
            f.write(json.dumps({"id": name, "url": path.as_uri(), "duration_s": seconds,
                                "title": "Celeste speedrun gameplay"}) + "\n")
    return root / "catalog.jsonl"


DATA = ("cache", "shards", "outcomes", "manifest")  # what the job's steps read and write on the store


def _run(catalog, output: str) -> int:
    """A run into the store. The downloads stay local: the decoding child process reads them, and the fake
    store lives in this process only (``test_a_download_the_store_refuses_fails_alone`` covers the download's
    writes)."""
    downloads = Path(tempfile.gettempdir(), "storage-faults-downloads", output.rsplit("/", 1)[-1])
    return run.main(["--catalog", str(catalog), "--output", output, "--download-dir", str(downloads),
                     "--in-process", "--quiet", "--shard-size-mb", "0.05"])


def _dataset(output: str) -> dict[str, str]:
    """The run's dataset and its records: shards, manifest and outcome parts, sha256 by path under the output."""
    return {k[len(output) + 1:]: hashlib.sha256(v).hexdigest() for k, v in FakeObjectStore.objects.items()
            if k.startswith(tuple(f"{output}/{d}/" for d in ("shards", "manifest", "outcomes")))}


def _outcomes(output: str) -> dict[str, tuple[str, str]]:
    rows = [r for p in partitioned.part_paths(f"{output}/outcomes")
            for batch in partitioned.iter_part_batches(p) for r in batch.to_pylist()]
    return {r["item_id"]: (r["outcome"], r["reason"]) for r in rows if r["item_kind"] == "video"}


@pytest.mark.parametrize("phase", [0, 4, 7])
def test_one_operation_in_ten_failing_once_changes_nothing(store, catalog, phase):
    """Three phases of the count: each fails a different tenth of the run's operations."""
    assert _run(catalog, "fakeobj://bucket/clean") == 0
    clean = _dataset("fakeobj://bucket/clean")
    out = "fakeobj://bucket/faulty"
    store.inject_every(10, ServiceUnavailable("503 backend error"), tuple(f"{out}/{d}/" for d in DATA), phase)
    assert _run(catalog, out) == 0
    faulted = {entry.split()[1][len(out) + 1:].split("/")[0] for _, entry in store.ops("fault")}
    store.every = None
    assert len(faulted) >= 3, faulted  # the faults hit several stages' files
    assert {k for k in clean if k.startswith("shards/")} and _dataset(out) == clean


def test_a_prefix_that_always_fails_ends_its_items_and_a_rerun_completes(store, catalog, capsys):
    assert _run(catalog, "fakeobj://bucket/clean") == 0
    out = "fakeobj://bucket/out"
    store.inject("create", f"{out}/cache/segment/vid-a", ServiceUnavailable("503 backend error"), times=10**6)
    capsys.readouterr()
    code = _run(catalog, out)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == exit_status.DEFERRED, err
    assert any("storage_error: 1 item(s) failed because the storage kept refusing" in line for line in err), err
    ended = _outcomes(out)
    assert ended["vid-a"] == ("failed", "storage_error") and ended["vid-b"] == ("kept", "")
    stats = json.loads(store.objects[f"{out}/stats.json"])
    assert stats["reason_counts"]["video:segment:failed:storage_error"] == 1
    assert stats["conservation"]["ok"] is True
    store.faults.clear()
    assert _run(catalog, out) == 0  # the fault cleared: the rerun retries the video and completes
    assert _outcomes(out)["vid-a"] == ("kept", "")
    clean = _dataset("fakeobj://bucket/clean")
    assert {k: v for k, v in _dataset(out).items() if k.startswith("shards/")} == \
        {k: v for k, v in clean.items() if k.startswith("shards/")}


def test_an_audit_table_the_store_refuses_fails_the_run_naming_it(store, catalog, capsys):
    """An outcome cannot be recorded where the outcomes cannot be written: after the retries the run fails,
    with one line naming the stage and the write."""
    out = "fakeobj://bucket/out"
    store.inject("create", f"{out}/outcomes/part-", ServiceUnavailable("503 backend error"), times=10**6)
    capsys.readouterr()
    code = _run(catalog, out)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("run FAILED in stage 'audit': StorageFailed: writing fakeobj://bucket/out/outcomes/part-"), err
    assert "still failing after 4 attempts" in err[0] and "full traceback in " in err[0]


def test_a_download_the_store_refuses_fails_alone(store, catalog):
    """The download's writes (the video, then its marker) are retried; a store that keeps refusing ends the
    video ``failed: storage_error`` (not recorded as final: a rerun downloads it again)."""
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    candidates = [CandidateVideo(video_id=r["id"], source="catalog", url=r["url"], title=r["title"]) for r in rows]
    config = DownloadConfig(download_dir="fakeobj://bucket/dl", isolate_probe=False)
    store.inject("finalize", "fakeobj://bucket/dl/vid-a", ServiceUnavailable("503 backend error"), times=3)
    stored = download_one(candidates[0], config)  # 3 refusals, the 4th attempt lands
    assert isinstance(stored, DownloadedVideo) and stored.path in store.objects
    store.inject("finalize", "fakeobj://bucket/dl/vid-b", ServiceUnavailable("503 backend error"), times=10**6)
    refused = download_one(candidates[1], config)
    assert isinstance(refused, Outcome) and (refused.outcome, refused.reason) == ("failed", "storage_error")
    assert "still failing after 4 attempts" in refused.detail
    assert not [k for k in store.objects if "/dl/vid-b" in k]  # no marker, no failure record: a rerun retries
