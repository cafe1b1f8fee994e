"""``python -m modeling generate`` on a tiny trained Genie: frames equal ``Genie.rollout``, outputs are laid out as
documented and byte-identical across runs, and every user mistake is one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

from modeling.__main__ import main
from modeling.generate import default_cols, grid_video
from modeling.genie import Genie
from modeling.maskgit import SamplingConfig
from modeling.prompts import load_prompt
from tests import media
from tests.genie_fixtures import train_tiny_genie

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pattern, run = train_tiny_genie(tmp_path_factory.mktemp("generate"))
    shard = sorted(run.parent.glob("shards/*.tar"))[0]
    return run, str(shard)


def generate(*args) -> int:
    return main(["generate", *map(str, args)])


def reference_uint8(frames: torch.Tensor) -> np.ndarray:
    """float (B, T, 3, H, W) -> uint8 (B, T, H, W, 3), written out here rather than borrowed from the CLI."""
    return (frames * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()


def test_frames_equal_genie_rollout_with_the_same_seed(tiny, tmp_path, capsys):
    run, shard = tiny
    out = tmp_path / "r.npy"
    assert generate("--checkpoint", run, "--prompt", shard, "--prompt-start", 3, "--prompt-frames", 2,
                    "--actions", "0,1,2", "--actions", "3,3,1", "--batch", 2, "--steps", 2, "--seed", 5,
                    "--out", out) == 0
    assert "wrote" in capsys.readouterr().out
    videos = np.load(out)
    assert videos.shape == (4, 5, 90, 160, 3) and videos.dtype == np.uint8

    genie = Genie.load(run)
    prompt = load_prompt(shard, start=3, num_frames=2)
    actions = torch.tensor([[0, 1, 2], [0, 1, 2], [3, 3, 1], [3, 3, 1]])
    expected = genie.rollout(prompt.expand(4, -1, -1, -1, -1), actions, SamplingConfig(steps=2), seed=5)
    assert np.array_equal(videos, reference_uint8(expected["frames"]))
    assert np.array_equal(videos[:, :2], np.broadcast_to(reference_uint8(prompt), (4, 2, 90, 160, 3)))
    assert not np.array_equal(videos[0, 2:], videos[1, 2:])  # two samples of one action sequence differ

    record = json.loads((tmp_path / "r.npy.json").read_text())
    assert record["actions"] == ["0,1,2", "0,1,2", "3,3,1", "3,3,1"] and record["seed"] == 5
    assert record["sampling"] == {"steps": 2, "temperature": 1.0, "schedule": "cosine"}
    assert record["grid_cols"] == 2  # two sequences x two samples: one row per action sequence

    uncached = tmp_path / "u.npy"
    assert generate("--checkpoint", run, "--prompt", shard, "--prompt-start", 3, "--prompt-frames", 2,
                    "--actions", "0,1,2", "--actions", "3,3,1", "--batch", 2, "--steps", 2, "--seed", 5,
                    "--no-cache", "--out", uncached) == 0
    diff = np.abs(np.load(uncached).astype(int) - videos)
    # same tokens; the decoder's cached and full-window paths round differently in the last float bit
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4

    stream = tmp_path / "s.npy"  # past the tiny model's 4-frame window: the rolling context is its own rollout
    assert generate("--checkpoint", run, "--prompt", shard, "--actions", "0,1,2,3,0,1", "--steps", 2, "--seed", 5,
                    "--context", "stream", "--out", stream) == 0
    expected = genie.rollout(load_prompt(shard, 0, 1), torch.tensor([[0, 1, 2, 3, 0, 1]]), SamplingConfig(steps=2),
                             seed=5, context="stream")
    assert np.array_equal(np.load(stream), reference_uint8(expected["frames"]))
    assert json.loads((tmp_path / "s.npy.json").read_text())["context"] == "stream"


def test_compile_gives_the_eager_frames(tiny, tmp_path):
    # Two prompt frames then three generated: cache lengths 2 and 3 (the tiny window keeps 3), two compiles.
    run, shard = tiny
    out = tmp_path / "c.npy"
    assert generate("--checkpoint", run, "--prompt", shard, "--prompt-frames", 2, "--actions", "0,3,1",
                    "--steps", 2, "--seed", 4, "--compile", "--out", out) == 0
    assert json.loads((tmp_path / "c.npy.json").read_text())["compiled"] is True
    expected = Genie.load(run).rollout(load_prompt(shard, num_frames=2), torch.tensor([[0, 3, 1]]),
                                       SamplingConfig(steps=2), seed=4)
    assert np.array_equal(np.load(out), reference_uint8(expected["frames"]))


def test_mp4_and_gif_are_byte_identical_across_runs_and_show_the_grid(tiny, tmp_path):
    run, shard = tiny
    common = ["--checkpoint", run, "--prompt", shard, "--random-actions", 3, "--batch", 3, "--steps", 2,
              "--seed", 11]
    assert generate(*common, "--out", tmp_path / "raw.npy") == 0
    videos = np.load(tmp_path / "raw.npy")
    for suffix in ("mp4", "gif"):
        first, second = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        assert generate(*common, "--out", first) == 0
        # the second run in a fresh interpreter: nothing cached in this process can make them agree
        subprocess.run([sys.executable, "-m", "modeling", "generate", *map(str, common), "--out", str(second)],
                       check=True, capture_output=True)
        assert first.read_bytes() == second.read_bytes(), suffix

    # 3 rollouts -> 2 columns (ceil(sqrt(3))), 2 rows, 2 px gutters. The tiny model's frames are noise that
    # H.264 and a GIF palette smear, so placement is checked exactly below (PNG strip, grid_video); here the
    # shared prompt frame must show in every tile of the first frame.
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert container.streams.video[0].average_rate == 10
        grid = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert grid.shape == (4, 2 * 90 + 2, 2 * 160 + 2, 3)
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 4 and gif.size == (322, 182) and gif.info["duration"] == 100
    first_gif = np.asarray(gif.convert("RGB"))
    for y, x in [(0, 0), (0, 162), (92, 0)]:
        assert media.psnr(grid[0, y:y + 90, x:x + 160], videos[0, 0]) > 40
        assert media.psnr(first_gif[y:y + 90, x:x + 160], videos[0, 0]) > 40
    assert (first_gif[92:, 162:] == first_gif[90, 0]).all()  # the empty fourth tile is gutter colour


def test_grid_places_rollout_i_at_row_i_div_cols():
    videos = np.zeros((5, 2, 90, 160, 3), np.uint8)
    videos[:, :, :, :, 0] = np.arange(5)[:, None, None, None] * 40 + 10  # rollout i is red level 40 i + 10
    videos[:, 1, :, :, 1] = 200  # frame 1 is greener
    grid = grid_video(videos, cols=3)
    assert grid.shape == (2, 2 * 90 + 2, 3 * 160 + 2 * 2, 3)
    for i in range(5):
        y, x = (i // 3) * 92, (i % 3) * 162
        assert np.array_equal(grid[:, y:y + 90, x:x + 160], videos[i])
    assert (grid[:, 90:92] == grid[0, 90, 0]).all() and (grid[:, :, 160:162] == grid[0, 0, 160]).all()
    assert grid[0, 90, 0].tolist() not in [v[0, 0, 0].tolist() for v in videos]  # gutters stand apart
    assert default_cols(num_sequences=3, batch=2) == 2  # a row per action sequence
    assert default_cols(num_sequences=1, batch=5) == 3 and default_cols(num_sequences=5, batch=1) == 3


def test_png_strip_has_one_row_per_rollout_and_scale_upsamples(tiny, tmp_path):
    run, shard = tiny
    common = ["--checkpoint", run, "--prompt", shard, "--actions", "1,2", "--actions", "0,0", "--steps", 2]
    assert generate(*common, "--out", tmp_path / "raw.npy") == 0
    assert generate(*common, "--out", tmp_path / "strip.png") == 0
    assert generate(*common, "--out", tmp_path / "big.png", "--scale", 2) == 0
    videos = np.load(tmp_path / "raw.npy")
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    assert strip.shape == (2 * 90 + 2, 3 * 160 + 2 * 2, 3)
    for b in range(2):
        for t in range(3):
            y, x = b * 92, t * 162
            assert np.array_equal(strip[y:y + 90, x:x + 160], videos[b, t])
    big = np.asarray(Image.open(tmp_path / "big.png"))
    assert big.shape == (2 * 180 + 2, 3 * 320 + 2 * 2, 3)
    assert np.array_equal(big[182:362:2, 644:964:2], videos[1, 2])  # row 1, column 2 at twice the size


def test_random_actions_follow_the_seed_and_the_model(tiny, tmp_path):
    run, shard = tiny

    def actions(seed):
        out = tmp_path / f"s{seed}.npy"
        assert generate("--checkpoint", run, "--prompt", shard, "--random-actions", 6, "--batch", 4,
                        "--steps", 1, "--seed", seed, "--out", out) == 0
        rows = json.loads((tmp_path / f"s{seed}.npy.json").read_text())["actions"]
        return [[int(a) for a in row.split(",")] for row in rows]

    a, b = actions(1), actions(2)
    assert len(a) == 4 and all(len(row) == 6 for row in a)
    assert {x for row in a + b for x in row} <= set(range(Genie.load(run).num_actions))
    assert a == actions(1) and a != b


@pytest.mark.parametrize("args, message", [
    (["--actions", "0,4"], "action 4 is out of range: this model has 4 latent actions (0..3)"),
    (["--actions", "0,x"], "'0,x' is not a comma-separated list of integers"),
    (["--actions", "0,1", "--actions", "2"], "every --actions needs the same length"),
    (["--random-actions", "3", "--batch", "0"], "--batch must be >= 1"),
    ([], "one of the arguments --actions --random-actions is required"),
    (["--actions", "1", "--prompt", "{tmp}/absent.png"], "prompt file not found"),
    (["--actions", "1", "--prompt", "{shard}#no_such_clip"], "has no sample 'no_such_clip'"),
    (["--actions", "1", "--out", "{tmp}/r.avi"], "--out must end in one of .mp4, .gif, .png, .npy"),
    (["--actions", "1", "--out", "{tmp}/missing/r.mp4"], "does not exist"),
    (["--actions", "1", "--checkpoint", "{tmp}/nowhere"], "run directory"),
    (["--actions", "1", "--checkpoint", "{tokenizer}"], "is a tokenizer run"),
    (["--actions", "1", "--steps", "0"], "MaskGIT steps must be >= 1"),
    (["--actions", "1", "--compile", "--no-cache"], "--compile compiles the cached step"),
])
def test_user_mistakes_are_one_line_errors_with_status_2(tiny, tmp_path, capsys, args, message):
    run, shard = tiny
    given = {"--checkpoint": str(run), "--prompt": shard, "--out": str(tmp_path / "r.mp4")}
    fill = {"tmp": tmp_path, "shard": shard, "tokenizer": run.parent / "tokenizer"}
    args = [a.format(**fill) for a in args]
    for flag, value in given.items():
        if flag not in args:
            args += [flag, value]
    rc = _run_main(["generate", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "r.mp4").exists()


def test_cuda_request_without_cuda_is_a_usage_error(tiny, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run, shard = tiny
    assert generate("--checkpoint", run, "--prompt", shard, "--actions", "1", "--device", "cuda",
                    "--out", tmp_path / "r.mp4") == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda: CUDA is not available on this machine"


def _run_main(argv: list[str]) -> int:
    """``main`` as the console script runs it: argparse's own exits become the status code."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def test_a_64x64_model_takes_prompts_at_its_own_frame_size(tmp_path):
    """Prompts are loaded at the run's frame size (CoinRun's 64x64), from a shard clip and from an image."""
    pattern, run = train_tiny_genie(tmp_path / "m64", steps=2, height=64, width=64)
    shard = sorted((tmp_path / "m64" / "shards").glob("*.tar"))[0]
    out = tmp_path / "r.npy"
    assert generate("--checkpoint", run, "--prompt", shard, "--actions", "0,1", "--steps", 2, "--out", out) == 0
    videos = np.load(out)
    assert videos.shape == (1, 3, 64, 64, 3)
    assert np.array_equal(videos[:, :1], reference_uint8(load_prompt(shard, size=(64, 64))))
    image = tmp_path / "wide.png"
    Image.fromarray(np.full((90, 300, 3), 200, np.uint8)).save(image)
    assert generate("--checkpoint", run, "--prompt", image, "--actions", "2", "--steps", 2, "--out", out) == 0
    assert np.load(out).shape == (1, 2, 64, 64, 3)
