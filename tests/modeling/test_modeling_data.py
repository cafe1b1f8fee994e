"""The shard loader on real shards written with the pipeline's codec: windows match an independent decoder
(decord), actions come from the clip json, order is reproducible and resumable (by replay, and from saved
stream positions without reopening finished shards), workers split the shards, HTTP URLs work, and bad input
(including named shards that do not exist) fails with a clear message."""

from __future__ import annotations

import functools
import http.server
import io
import itertools
import json
import threading

import decord
import numpy as np
import pytest
import torch
import webdataset as wds

from modeling import data
from modeling.data import ClipWindowDataset, LoaderConfig, clip_windows, to_float_video
from schemas import shard_writer
from schemas.shard_source import ShardError, resolve
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    return directory, write_tiny_shards(directory, n_clips=6, frames=24, clips_per_shard=2)


def _raw_clips(paths):
    return {s["__key__"]: s for s in wds.DataPipeline(wds.SimpleShardList(paths), wds.tarfile_to_samples())}


def test_windows_match_an_independent_decoder_and_the_json_actions(shards):
    directory, paths = shards
    raw = _raw_clips(paths)
    batch = next(iter(clip_windows(str(directory), LoaderConfig(window=5, batch_size=3, seed=0))))
    assert batch["video"].dtype == torch.uint8 and batch["video"].shape == (3, 5, 90, 160, 3)
    assert batch["actions"].dtype == torch.long and batch["actions"].shape == (3, 5)
    for video, key, start, actions in zip(batch["video"], batch["key"], batch["start"], batch["actions"],
                                          strict=True):
        start = int(start)
        reader = decord.VideoReader(io.BytesIO(raw[key]["mp4"]), ctx=decord.cpu(0))
        expected = reader.get_batch(list(range(start, start + 5))).asnumpy()
        assert np.abs(video.numpy().astype(int) - expected).mean() < 1.0

        assert actions.tolist() == json.loads(raw[key]["json"])["actions"][start:start + 5]
    floats = to_float_video(batch["video"])
    assert floats.shape == (3, 5, 3, 90, 160) and floats.dtype == torch.float32
    assert floats.min() >= 0.0 and floats.max() <= 1.0


def test_one_pass_over_workers_sees_every_clip_once(shards):
    directory, _ = shards
    loader = clip_windows(str(directory), LoaderConfig(window=4, batch_size=2, shuffle=False, num_workers=2))
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(f"tiny{i:04d}_s000000000" for i in range(6))


def test_order_is_reproducible_and_depends_on_the_seed(shards):
    directory, _ = shards

    def first(seed, n=4):
        loader = clip_windows(str(directory), LoaderConfig(window=4, batch_size=2, seed=seed, resampled=True))
        return [(tuple(b["key"]), tuple(b["start"].tolist())) for b in itertools.islice(loader, n)]

    assert first(0) == first(0)
    assert first(0) != first(1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_skips_to_the_same_batches(shards, num_workers):
    directory, _ = shards

    def batches(start_batch, n):
        loader = clip_windows(str(directory), LoaderConfig(window=4, batch_size=2, seed=3, resampled=True,
                                                           num_workers=num_workers, start_batch=start_batch))
        return [(tuple(b["key"]), tuple(b["start"].tolist())) for b in itertools.islice(loader, n)]

    reference = batches(0, 7)
    for start in (1, 4):
        assert batches(start, 7 - start) == reference[start:]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_positions_continues_exactly_without_reopening_finished_shards(shards, num_workers,
                                                                                    monkeypatch):
    """Each batch carries its worker's stream position; from the positions of the last consumed batches a new
    loader continues with exactly the batches the uninterrupted one yields next. A batch of 3 windows with 2
    windows per clip ends mid-clip, and a 3-sample buffer spans shards, so both partial states are exercised."""
    directory, _ = shards
    opened: list[str] = []
    read_shard = ClipWindowDataset._read_shard
    monkeypatch.setattr(ClipWindowDataset, "_read_shard", staticmethod(lambda url: opened.append(url)
                                                                       or read_shard(url)))
    decoded = []
    decode = data.decode_clip
    monkeypatch.setattr(data, "decode_clip", lambda *a: decoded.append(a[1:]) or decode(*a))

    def loader(start_batch=0, resume=None):
        return clip_windows(str(directory), LoaderConfig(window=4, batch_size=3, seed=5, resampled=True, shuffle_buffer=3,
                                                         windows_per_clip=2, num_workers=num_workers,
                                                         start_batch=start_batch), resume=resume)

    reference = list(itertools.islice(loader(), 14))
    as_tuples = [(tuple(b["key"]), tuple(b["start"].tolist())) for b in reference]
    assert len(set(as_tuples)) > 10  # a real shuffle, not one batch repeated
    for n in (1, 5, 11):
        positions = {b["position"]["worker"]: b["position"] for b in reference[:n]}
        opened.clear()
        decoded.clear()
        resumed = iter(loader(start_batch=n, resume=positions))
        first = next(resumed)
        if num_workers == 0:  # the patches only see this process
            buffered = {tuple(r)[0] for r in reference[n - 1]["position"]["buffer"]}
            assert len(opened) <= len(buffered) + 2  # buffered samples' shards, a partly cut clip's, the current
            assert len(decoded) == 3  # the first batch's windows, nothing decoded to skip
        rest = [first, *itertools.islice(resumed, 13 - n)]
        assert [(tuple(b["key"]), tuple(b["start"].tolist())) for b in rest] == as_tuples[n:]
    if num_workers == 0:  # replaying to batch 11 instead reads every shard up to there
        opened.clear()
        next(iter(loader(start_batch=11)))
        assert len(opened) >= 8
        # Shards that no longer hold what the position says (rewritten since the checkpoint) are an error.
        moved = {0: {**reference[10]["position"], "read": 99}}
        with pytest.raises(ShardError, match="fewer samples than when the checkpoint was written"):
            next(iter(loader(start_batch=11, resume=moved)))


def test_named_shards_that_do_not_exist_are_an_error(shards, tmp_path):
    directory, paths = shards
    with pytest.raises(FileNotFoundError, match=r"3 of 6 shard paths .* match no file: .*shard-00003\.tar"):
        resolve(str(directory / "shard-{00000..00005}.tar"))
    with pytest.raises(FileNotFoundError, match="typo.tar"):
        resolve(f"{paths[0]}::{directory / 'typo.tar'}")
    with pytest.raises(FileNotFoundError, match="none-"):  # a glob in a list that matches nothing
        resolve(f"{paths[0]}::{directory / 'none-*.tar'}")
    with pytest.raises(FileNotFoundError, match="match no file"):
        clip_windows([paths[0], str(tmp_path / "gone.tar")])
    assert resolve(f"{paths[0]}::http://127.0.0.1:9/a.tar") == [paths[0], "http://127.0.0.1:9/a.tar"]
    assert resolve(str(directory / "shard-{00000..00002}.tar")) == paths


def test_http_urls(shards):
    directory, paths = shards
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/shard-{{00000..00002}}.tar"
        assert len(resolve(url)) == 3
        keys = [k for b in clip_windows(url, LoaderConfig(window=4, batch_size=3, shuffle=False)) for k in b["key"]]
        assert len(keys) == 6
    finally:
        server.shutdown()
        server.server_close()


def test_clips_without_actions_get_minus_one(tmp_path):
    from tests.modeling_helpers import make_sample

    sample = make_sample(0, 20, np.random.default_rng(0))
    sample = type(sample).from_clip(sample.clip.replace(actions=None))
    shard_writer.write_shard(str(tmp_path / "a.tar"), [sample.clip])
    batch = next(iter(clip_windows(str(tmp_path / "a.tar"), LoaderConfig(window=4, batch_size=1))))
    assert batch["actions"].tolist() == [[-1, -1, -1, -1]]


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards matched"):
        clip_windows(str(tmp_path / "nothing-*.tar"))
    small = write_tiny_shards(tmp_path / "small", n_clips=1, frames=8, height=72, width=128)
    with pytest.raises(ShardError, match="128x72.*160x90"):
        next(iter(clip_windows(small, LoaderConfig(window=4, batch_size=1))))
    short = write_tiny_shards(tmp_path / "short", n_clips=1, frames=8)
    with pytest.raises(ShardError, match="fewer than the window of 16"):
        next(iter(clip_windows(short, LoaderConfig(window=16, batch_size=1))))


def test_a_short_tail_piece_of_a_video_is_skipped_not_an_error(tmp_path):
    """An episode longer than a clip ends in a short last piece (clip_index > 0): it holds no window, so the loader
    skips it; the windows come from the full pieces only (each window's actions are one clip's actions)."""
    import dataclasses

    from schemas import ids
    from tests.modeling_helpers import make_sample

    rng = np.random.default_rng(3)
    head = make_sample(0, 12, rng, video_id="episode").clip
    tail = dataclasses.replace(make_sample(1, 3, rng, video_id="episode").clip, clip_index=1,
                               clip_key=ids.clip_key("episode", 1.2))
    path = str(tmp_path / "shard-00000.tar")
    shard_writer.write_shard(path, [tail, head])
    batches = list(clip_windows(path, LoaderConfig(window=8, batch_size=1, shuffle=False, windows_per_clip=1)))
    assert len(batches) == 1
    assert batches[0]["actions"][0].tolist() == head.actions[:8]
