"""Commits on object stores, on a fake one registered with Beam (``tests/object_store.py``: rename = copy +
delete, uploads visible only when finalized, injectable transient errors and crashes).

- final names are written directly (one upload, no temporary, no rename), and a failed upload leaves the old
  object as it was;
- a transient storage error raises (the runner retries the bundle) while a permanent one is an outcome;
- a crash between two steps of a segment commit leaves no entry a rerun would trust;
- a whole run into ``fakeobj://`` writes the same shards and manifest as a run into a local directory.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import run, segment, shards, stage
from pipeline.io import clip_store, storage
from pipeline.segment import SegmentConfig, cache_paths, cached_segment
from schemas import CandidateVideo, Clip, DownloadedVideo, clip_codec, ids
from tests import media
from tests.object_store import Crash, FakeObjectStore, ServiceUnavailable

ROOT = "fakeobj://bucket/out"


@pytest.fixture(autouse=True)
def store(monkeypatch):
    FakeObjectStore.reset()
    monkeypatch.setattr(storage, "RETRY", storage.RetryPolicy(attempts=3, base_s=0.0))  # no pauses in tests
    yield FakeObjectStore
    FakeObjectStore.reset()


def small_clips(n: int = 3) -> list[Clip]:
    video = CandidateVideo(video_id="v", source="test", url="file:///v.mp4", title="t")
    out = []
    for i in range(n):
        frames = np.stack([media.pattern_frame(i + k / 10, 32, 18) for k in range(5)])
        out.append(Clip(clip_key=ids.clip_key("v", i), video_id="v", clip_index=i, start_s=float(i), end_s=i + 0.5,
                        num_frames=5, fps=10.0, width=32, height=18, video=video,
                        mp4=clip_codec.encode_clip(frames, preset="ultrafast")))
    return out


def test_final_names_are_written_directly_and_match_a_local_write(store, tmp_path):
    clips = small_clips()
    dest = f"{ROOT}/shards/shard-00000.tar"
    shards.write_shard(dest, clips)
    assert store.ops("create") == [("create", dest)] and store.ops("finalize") == [("finalize", dest)]
    assert not store.ops("copy") and not store.ops("delete") and list(store.objects) == [dest]
    shards.write_shard(str(tmp_path / "local.tar"), clips)  # locally: temporary + rename, the same bytes
    assert store.objects[dest] == (tmp_path / "local.tar").read_bytes()


def test_a_failed_upload_leaves_the_old_object_and_nothing_else(store):
    dest = f"{ROOT}/stats.json"
    storage.write_bytes(dest, b"old")
    with pytest.raises(RuntimeError), storage.atomic_create(dest) as out:
        out.write(b"half of the new")
        raise RuntimeError("worker lost the disk")
    assert store.objects == {dest: b"old"}
    store.inject("finalize", dest, ServiceUnavailable("503"), times=3)
    with pytest.raises(storage.StorageFailed, match="writing fakeobj://bucket/out/stats.json: ServiceUnavailable"):
        storage.write_bytes(dest, b"new")  # 3 attempts, each abandoned
    assert store.objects == {dest: b"old"}
    store.inject("finalize", dest, ServiceUnavailable("503"), times=2)
    storage.write_bytes(dest, b"new")  # the third attempt
    assert store.objects == {dest: b"new"}


def test_transient_errors_are_retried_then_outcomes_and_permanent_ones_are_outcomes(store):
    clips = small_clips()
    fn = shards._WriteShardFn(shards.ShardConfig(ROOT, 1))

    def outcomes(index):
        return [o.value for o in fn.process((index, clips)) if getattr(o, "tag", None) == stage.OUTCOMES]

    store.inject("create", "shard-00000", ServiceUnavailable("503 backend error"), times=2)
    assert [o.outcome for o in outcomes(0)] == ["kept"] * 3  # the third attempt wrote it
    store.inject("create", "shard-00001", ServiceUnavailable("503 backend error"), times=100)
    refused = outcomes(1)  # the attempts spent: the clips fail, the bundle does not
    assert {(o.outcome, o.reason) for o in refused} == {("failed", "storage_error")} and len(refused) == 3
    assert "still failing after 3 attempts" in refused[0].detail and "shard-00001" in refused[0].detail
    assert not [k for k in store.objects if "shard-00001" in k]
    store.inject("create", "shard-00002", PermissionError("403 forbidden"))
    failed = outcomes(2)
    assert {(o.outcome, o.reason) for o in failed} == {("failed", "shard_error")} and len(failed) == 3
    assert storage.is_transient(ServiceUnavailable()) and not storage.is_transient(PermissionError())
    assert not storage.is_transient(storage.StorageFailed("spent"))


def test_a_clip_whose_bytes_cannot_be_read_fails_alone(store):
    clips = small_clips()
    pack = f"{ROOT}/cache/segment/v{clip_store.PACK_SUFFIX}"
    store.objects[pack] = b"".join(c.mp4 for c in clips)
    offsets = np.cumsum([0] + [len(c.mp4) for c in clips])
    by_ref = [c.replace(mp4=None, location=clip_store.reference(pack, int(offsets[i]), len(c.mp4)))
              for i, c in enumerate(clips)]
    by_ref[1] = by_ref[1].replace(location=clip_store.reference(f"{ROOT}/gone{clip_store.PACK_SUFFIX}", 0, 10))
    fn = shards._WriteShardFn(shards.ShardConfig(ROOT, 1))
    out = list(fn.process((0, by_ref)))
    ended = {o.value.item_id: (o.value.outcome, o.value.reason) for o in out
             if getattr(o, "tag", None) == stage.OUTCOMES}
    assert ended == {by_ref[0].clip_key: ("kept", ""), by_ref[1].clip_key: ("failed", "shard_error"),
                     by_ref[2].clip_key: ("kept", "")}
    index = [o.value for o in out if getattr(o, "tag", None) == shards.INDEX]
    assert index[0]["clips"] == 2


def _video(path) -> DownloadedVideo:
    sha, size = storage.sha256_file(str(path))
    return DownloadedVideo(candidate=CandidateVideo(video_id="v", source="t", url=path.as_uri()), path=str(path),
                           size_bytes=size, sha256=sha)


def test_a_crash_between_two_steps_of_a_segment_commit_is_redone_on_rerun(store, tmp_path):
    path = media.write_video(tmp_path / "a.mp4", fps=25, duration_s=2.2, width=160, height=90)
    config = SegmentConfig(clip_frames=10, isolate=False, cache_dir=f"{ROOT}/cache/segment")
    clips_path, outcomes_path = cache_paths(_video(path), config)
    store.inject("create", outcomes_path, Crash())  # killed after the pack and the references, before the marker
    with pytest.raises(Crash):
        cached_segment(_video(path), config, None)
    assert segment.pack_path(clips_path) in store.objects and outcomes_path not in store.objects
    again = cached_segment(_video(path), config, None)  # no marker: not trusted, segmented and committed again
    assert outcomes_path in store.objects and len(again.clips) == 2
    assert all(c.location.startswith(f"{ROOT}/cache/segment/") for c in again.clips)
    inline = segment.segment_video(_video(path), SegmentConfig(clip_frames=10, isolate=False))
    assert [clip_store.clip_bytes(c) for c in again.clips] == [c.mp4 for c in inline.clips]


def test_a_run_into_an_object_store_writes_what_a_local_run_writes(store, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_video(videos / "a.mp4", fps=25, duration_s=33.0, width=160, height=90)
    media.write_video(videos / "b.mp4", fps=30, duration_s=16.5, width=160, height=90)
    with open(tmp_path / "catalog.jsonl", "w") as f:
        for name in ("a", "b"):
            f.write(json.dumps({"id": name, "url": (videos / f"{name}.mp4").as_uri(),
                                "title": "Celeste speedrun gameplay", "duration_s": 20}) + "\n")
    common = ["--catalog", str(tmp_path / "catalog.jsonl"), "--in-process", "--shard-size-mb", "0.05"]
    assert run.main([*common, "--output", ROOT, "--download-dir", str(tmp_path / "dl")]) == 0
    assert run.main([*common, "--output", str(tmp_path / "local")]) == 0
    remote = {k[len(ROOT) + 1:]: v for k, v in store.objects.items() if k.startswith(ROOT + "/shards/")
              or k.startswith(ROOT + "/manifest/")}
    local = {str(p.relative_to(tmp_path / "local")): p.read_bytes()
             for d in ("shards", "manifest") for p in (tmp_path / "local" / d).iterdir()}
    assert len([k for k in remote if k.startswith("shards/")]) >= 2 and remote == local
    packs = [k for k in store.objects if k.endswith(clip_store.PACK_SUFFIX)]
    assert len(packs) == 2 and all(("range", k) in store.log for k in packs)  # shards read the store by reference
    assert not store.ops("copy")  # nothing was renamed on the object store
    assert not [k for k in store.objects if storage.TEMP_INFIX in k]


