"""The shard loader on real shards written with the pipeline's codec: windows match an independent decoder
(decord), actions come from the clip json, order is reproducible and resumable, workers split the shards, HTTP
URLs work, and bad input fails with a clear message."""

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

from modeling.data import ShardError, clip_windows, expand_shards, to_float_video
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
    batch = next(iter(clip_windows(str(directory), window=5, batch_size=3, seed=0)))
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
    loader = clip_windows(str(directory), window=4, batch_size=2, shuffle=False, num_workers=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(f"tiny{i:04d}_s000000000" for i in range(6))


def test_order_is_reproducible_and_depends_on_the_seed(shards):
    directory, _ = shards

    def first(seed, n=4):
        loader = clip_windows(str(directory), window=4, batch_size=2, seed=seed, resampled=True)
        return [(tuple(b["key"]), tuple(b["start"].tolist())) for b in itertools.islice(loader, n)]

    assert first(0) == first(0)
    assert first(0) != first(1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_skips_to_the_same_batches(shards, num_workers):
    directory, _ = shards

    def batches(start_batch, n):
        loader = clip_windows(str(directory), window=4, batch_size=2, seed=3, resampled=True,
                              num_workers=num_workers, start_batch=start_batch)
        return [(tuple(b["key"]), tuple(b["start"].tolist())) for b in itertools.islice(loader, n)]

    reference = batches(0, 7)
    for start in (1, 4):
        assert batches(start, 7 - start) == reference[start:]


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
        assert len(expand_shards(url)) == 3
        keys = [k for b in clip_windows(url, window=4, batch_size=3, shuffle=False) for k in b["key"]]
        assert len(keys) == 6
    finally:
        server.shutdown()
        server.server_close()


def test_clips_without_actions_get_minus_one(tmp_path):
    from tests.modeling_helpers import make_sample

    sample = make_sample(0, 20, np.random.default_rng(0))
    sample = type(sample).from_clip(sample.clip.replace(actions=None))
    with wds.TarWriter(str(tmp_path / "a.tar")) as sink:
        sink.write(sample.to_wds())
    batch = next(iter(clip_windows(str(tmp_path / "a.tar"), window=4, batch_size=1)))
    assert batch["actions"].tolist() == [[-1, -1, -1, -1]]


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards matched"):
        clip_windows(str(tmp_path / "nothing-*.tar"))
    small = write_tiny_shards(tmp_path / "small", n_clips=1, frames=8, height=72, width=128)
    with pytest.raises(ShardError, match="128x72.*160x90"):
        next(iter(clip_windows(small, window=4, batch_size=1)))
    short = write_tiny_shards(tmp_path / "short", n_clips=1, frames=8)
    with pytest.raises(ShardError, match="fewer than the window of 16"):
        next(iter(clip_windows(short, window=16, batch_size=1)))
