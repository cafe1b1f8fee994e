"""The one shard opener (``schemas.shard_source``) and writer (``schemas.shard_writer``): every spec form, its
errors, and the same answer for the classifier's ``--clips`` and the model's ``--shards``."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from classifiers.clip_source import SourceProblem, iter_samples
from modeling.data import ClipWindowDataset, LoaderConfig
from schemas import shard_source, shard_writer
from schemas.clip_format import SHARD_DIR, shard_name
from schemas.shard_source import ShardError, ShardSourceError
from tests.modeling_helpers import make_sample


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run output directory with three shards of two 4-frame clips each (``shards/shard-0000{0,1,2}.tar``)."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    clips = [make_sample(i, 4, rng).clip for i in range(6)]
    for index in range(3):
        shard_writer.write_shard(str(root / SHARD_DIR / shard_name(index)), clips[2 * index:2 * index + 2])
    return root


def paths(run_dir: Path, *indices: int) -> list[str]:
    return [str(run_dir / SHARD_DIR / shard_name(i)) for i in indices]


def test_every_spec_form_names_the_same_shards(run_dir):
    shards = run_dir / SHARD_DIR
    everything = paths(run_dir, 0, 1, 2)
    assert shard_source.resolve(str(run_dir)) == everything  # a run directory: its shards/*.tar
    assert shard_source.resolve(run_dir) == everything  # as a Path too
    assert shard_source.resolve(str(shards)) == everything  # a directory of shards
    assert shard_source.resolve(str(shards / "*.tar")) == everything  # a glob
    assert shard_source.resolve(str(shards / "shard-{00000..00002}.tar")) == everything  # a brace pattern
    assert shard_source.resolve(str(shards / "shard-00001.tar")) == paths(run_dir, 1)  # one tar
    # a '::' list keeps the order named; a Python list of specs is the same list
    listed = f"{shards / 'shard-00002.tar'}::{shards / 'shard-{00000..00001}.tar'}"
    assert shard_source.resolve(listed) == paths(run_dir, 2, 0, 1)
    assert shard_source.resolve([str(shards / "shard-00002.tar"), str(shards / "shard-0000[01].tar")]) == \
        paths(run_dir, 2, 0, 1)
    # a shard named twice is read once
    assert shard_source.resolve(f"{run_dir}::{shards / 'shard-00000.tar'}") == everything


def test_remote_urls_resolve_without_the_network(run_dir):
    """gs:// (and http, pipe:) parts cannot be listed offline: they are kept as named, braces expanded."""
    assert shard_source.resolve("gs://bucket/run/shards/shard-{00000..00002}.tar") == [
        f"gs://bucket/run/shards/shard-0000{i}.tar" for i in range(3)]
    local = paths(run_dir, 0)[0]
    assert shard_source.resolve(f"{local}::gs://bucket/a.tar") == [local, "gs://bucket/a.tar"]
    assert shard_source.resolve(["pipe:cat a.tar", "http://127.0.0.1:9/b.tar"]) == ["pipe:cat a.tar",
                                                                                  "http://127.0.0.1:9/b.tar"]
    assert shard_source.is_remote("gs://b/x.tar") and not shard_source.is_remote("/tmp/x.tar")


def test_specs_that_name_no_shards_or_missing_ones_are_one_error(run_dir, tmp_path):
    shards = run_dir / SHARD_DIR
    (tmp_path / "empty").mkdir()
    for spec in (str(tmp_path / "nowhere"), str(tmp_path / "empty"), str(tmp_path / "none-*.tar"),
                 str(tmp_path / "shard-{00000..00002}.tar")):
        with pytest.raises(ShardSourceError, match="no shards matched .*a run directory.*gs:// URLs"):
            shard_source.resolve(spec)
    with pytest.raises(ShardSourceError, match=r"3 of 6 shard paths .* match no file: .*shard-00003\.tar"):
        shard_source.resolve(str(shards / "shard-{00000..00005}.tar"))
    with pytest.raises(ShardSourceError, match="1 of 2 .*typo.tar"):
        shard_source.resolve(f"{shards / 'shard-00000.tar'}::{shards / 'typo.tar'}")
    with pytest.raises(ShardSourceError, match="empty"):  # a directory without shards inside a list
        shard_source.resolve([str(shards), str(tmp_path / "empty")])
    assert issubclass(ShardSourceError, FileNotFoundError)  # the command-line tools report it as a user error


def test_the_classifier_and_the_model_accept_the_same_specs(run_dir):
    shards = run_dir / SHARD_DIR
    keys = [s.key for s in shard_source.read_samples(str(run_dir))]
    assert len(keys) == 6
    for spec in (str(run_dir), str(shards), str(shards / "*.tar"), str(shards / "shard-{00000..00002}.tar"),
                 f"{shards / 'shard-00000.tar'}::{shards / 'shard-0000[12].tar'}"):
        assert ClipWindowDataset(spec, LoaderConfig(window=4)).urls == shard_source.resolve(spec), spec
        assert [s.key for s in iter_samples(spec)] == keys, spec
    with pytest.raises(ShardSourceError, match="--clips"):  # the classifier names its flag
        next(iter_samples(str(run_dir / "nowhere")))


def _write_tar(path: Path, members: dict[str, bytes]) -> str:
    """A hand-written tar (for deliberately broken shards only: valid ones come from shard_writer)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_unreadable_shards_and_samples(run_dir, tmp_path):
    good = paths(run_dir, 0)[0]
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar file at all" * 100)
    no_mp4 = _write_tar(tmp_path / "no_mp4.tar", {"k.json": json.dumps({"clip_key": "k"}).encode()})
    with pytest.raises(ShardError, match="cannot read shard .*garbage.tar"):
        list(shard_source.read_samples(str(garbage)))
    with pytest.raises(ShardError, match="no_mp4.tar: sample 'k' is not a valid ShardSample"):
        list(shard_source.read_samples(no_mp4))
    # with on_error, bad shards and samples are reported and skipped; the good ones still come through
    problems: list[tuple[str, str]] = []
    samples = list(shard_source.read_samples([str(garbage), no_mp4, good],
                                             on_error=lambda url, key, exc: problems.append((url, key))))
    assert len(samples) == 2 and problems == [(str(garbage), ""), (no_mp4, "k")]
    reported: list[SourceProblem] = []
    assert len(list(iter_samples(f"{garbage}::{no_mp4}::{good}", reported))) == 2
    assert [(p.shard, p.key) for p in reported] == problems
    assert list(shard_source.raw_samples(None)) == []


def test_the_writer_sorts_fixes_headers_hashes_and_is_atomic(tmp_path):
    import hashlib

    rng = np.random.default_rng(1)
    clips = [make_sample(i, 4, rng).clip for i in range(3)]
    path = tmp_path / "new" / "shard-00000.tar"
    written, sha256 = shard_writer.write_shard(str(path), reversed(clips))
    assert [c.clip_key for c in written] == sorted(c.clip_key for c in clips)
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{c.clip_key}.{ext}" for c in written for ext in ("json", "mp4")]
    assert {(m.mtime, m.mode, m.uname, m.gname) for m in members} == {(0, 0o444, "genie", "genie")}
    assert [s.clip.mp4 for s in shard_source.read_samples(str(path))] == [c.mp4 for c in written]

    def fail(clip):
        raise OSError("the clip's bytes are gone")

    with pytest.raises(OSError, match="gone"):
        shard_writer.write_shard(str(path), clips, read=fail)
    assert os.listdir(path.parent) == ["shard-00000.tar"]  # the old shard is kept, no temporary is left
    assert [c.clip_key for c in written] == [s.key for s in shard_source.read_samples(str(path))]
