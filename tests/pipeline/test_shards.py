"""Shards: deterministic bytes whatever the input order, read back with webdataset, full-size clips decode."""

from __future__ import annotations

import hashlib
import random
import tarfile
import threading

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import shards, stage
from pipeline.audit.manifest import WriteManifest, read_manifest
from pipeline.io import storage
from schemas import CandidateVideo, Clip, clip_codec, ids, shard_source
from tests import media


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Six full-size clips (160 frames, 160x90) from two videos, one with ground-truth actions."""
    video = CandidateVideo(video_id="vid.one", source="test", url="file:///x.mp4", title="Celeste jump")
    out = []
    for n in range(6):
        frames = np.stack([media.pattern_frame(n * 16 + k / 10, 160, 90) for k in range(160)])
        vid = "vid.one" if n < 3 else "two"
        out.append(Clip(clip_key=ids.clip_key(vid, n * 16.0), video_id=vid, clip_index=n, start_s=n * 16.0,
                        end_s=n * 16.0 + 16, num_frames=160, fps=10.0, width=160, height=90,
                        mp4=clip_codec.encode_clip(frames, preset="ultrafast"),
                        actions=[k % 15 for k in range(160)] if n % 2 else None, video=video,
                        quality_score=0.5 + n / 20))
    return out


def write_with_beam(clip_list: list[Clip], out_dir, target_bytes: int) -> None:
    """WriteShards on the Beam runner; its manifest records go to <out_dir>/manifest/ (two rows per part)."""
    with beam.Pipeline(runner=FnApiRunner()) as p:
        written = p | beam.Create(clip_list) | shards.WriteShards(shards.ShardConfig(str(out_dir), target_bytes))
        _ = written[stage.MAIN] | WriteManifest(str(out_dir), rows_per_part=2)


def test_shard_bytes_do_not_depend_on_input_order(tmp_path, clips):
    total = sum(len(c.mp4) for c in clips)
    write_with_beam(clips, tmp_path / "a", total // 3)
    shuffled = clips[:]
    random.Random(3).shuffle(shuffled)
    write_with_beam(shuffled, tmp_path / "b", total // 3)
    names_a = shards.shard_paths(str(tmp_path / "a"))
    names_b = shards.shard_paths(str(tmp_path / "b"))
    assert len(names_a) == 3 and [p.rsplit("/", 1)[1] for p in names_a] == [p.rsplit("/", 1)[1] for p in names_b]
    for a, b in zip(names_a, names_b, strict=True):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()
    assert not list((tmp_path / "a" / "shards").glob(".*tmp*"))  # no temporary file is left behind


def test_tar_headers_are_fixed_and_members_follow_the_key_rules(tmp_path, clips):
    path = str(tmp_path / "s.tar")
    shards.write_shard(path, reversed(clips))
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{c.clip_key}.{ext}" for c in sorted(clips, key=lambda c: c.clip_key)
                                         for ext in ("json", "mp4")]
    assert {(m.mtime, m.mode, m.uname) for m in members} == {(0, 0o444, "genie")}


def test_shards_read_back_with_webdataset_and_decode_to_full_clips(tmp_path, clips):
    write_with_beam(clips, tmp_path, 1 << 30)
    samples = list(shard_source.read_samples(str(tmp_path)))
    assert [s.key for s in samples] == sorted(c.clip_key for c in clips)
    by_key = {c.clip_key: c for c in clips}
    for sample in samples:
        frames = clip_codec.decode_clip(sample.clip.mp4)
        assert frames.shape == (160, 90, 160, 3)
        original = by_key[sample.key]
        assert sample.clip.actions == original.actions and sample.clip.quality_score == original.quality_score
        assert sample.clip.video.title == "Celeste jump" and sample.clip.mp4 == original.mp4
    rows = list(read_manifest(str(tmp_path)))
    assert len(list((tmp_path / "manifest").glob("part-*-of-00003.parquet"))) == 3  # 6 rows, 2 per part
    assert sorted(r.clip_key for r in rows) == sorted(by_key)
    assert {r.location for r in rows} == {"shards/shard-00000.tar"} and all(r.mp4 is None for r in rows)


def test_shard_choice_is_a_stable_hash():
    assert shards.shard_of("abc_s000000000", 7) == int(hashlib.sha1(b"abc_s000000000").hexdigest()[:16], 16) % 7
    assert shards.num_shards_for(0, 100) == 1 and shards.num_shards_for(250, 100) == 3


def test_stale_shards_from_a_bigger_earlier_run_are_removed(tmp_path, clips):
    total = sum(len(c.mp4) for c in clips)
    write_with_beam(clips, tmp_path, total // 3)
    assert len(shards.shard_paths(str(tmp_path))) == 3
    write_with_beam(clips, tmp_path, 1 << 30)
    assert shards.remove_stale_shards(str(tmp_path), ["shard-00000.tar"])
    assert [p.rsplit("/", 1)[1] for p in shards.shard_paths(str(tmp_path))] == ["shard-00000.tar"]


def test_parallel_shard_writers_into_a_new_output_all_succeed(tmp_path, clips):
    """Workers writing the first shards of a fresh output at the same moment: none may fail for the shard
    directory another one just created (an earlier check-then-mkdirs lost that race)."""
    fn = shards._WriteShardFn(shards.ShardConfig(str(tmp_path / "fresh"), 1))
    start = threading.Barrier(len(clips))
    results: dict[int, list] = {}

    def write(index: int) -> None:
        start.wait()
        results[index] = list(fn.process((index, [clips[index]])))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = [o.value for out in results.values() for o in out
                if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == stage.OUTCOMES]
    assert sorted((o.outcome, o.reason) for o in outcomes) == [("kept", "")] * len(clips), outcomes
    assert len(shards.shard_paths(str(tmp_path / "fresh"))) == len(clips)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "sub" / "table.bin"
    storage.write_bytes(str(dest), b"old")
    with pytest.raises(RuntimeError), storage.atomic_create(str(dest)) as out:
        out.write(b"half of the new")
        raise RuntimeError("disk gone")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in dest.parent.iterdir()) == ["table.bin"]
