"""``python -m modeling evaluate`` on a tiny Genie trained through the real CLI, on real tiny shards.

The weights are meaningless (a few steps), so the tests check the computation, not the quality: ΔtPSNR is
exactly 0 for a model that ignores actions by construction and non-zero once actions matter; rollout PSNRs
pair generated frame k with real frame k; latent-action agreement pairs LAM action k (x_k -> x_{k+1}) with the
shard's action k (taken after frame k), checked with a pixel-reading stand-in for the LAM whose actions are
right by construction; determinism for a seed; the report files; clear errors.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from io import BytesIO

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from modeling.__main__ import main
from modeling.data import LoaderConfig, clip_windows, to_float_video
from modeling.evaluate import (
    FRAME_GAP,
    GRID_HEADER,
    GRID_PAD,
    NO_TRUE_ACTIONS,
    EvalOptions,
    evaluate,
    rollout_against,
)
from modeling.genie import load_genie_run
from modeling.maskgit import SamplingConfig
from schemas.figures import to_uint8
from schemas.shard_writer import write_shard
from tests.genie_fixtures import train_tiny_genie
from tests.modeling_helpers import MOVES, make_sample

torch.set_num_threads(1)
FAST = SamplingConfig(steps=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(shard pattern, lam-dynamics run, root) of a tiny trained Genie: T = 4, 4 latent actions, 6 clips."""
    root = tmp_path_factory.mktemp("evaluate")
    pattern, run = train_tiny_genie(root)
    return pattern, run, root


def _quiet(*_):
    pass


def _run(tiny, **kw):
    pattern, run, _ = tiny
    genie = load_genie_run(run)
    opts = EvalOptions(**{"num_clips": 4, "batch_size": 2, "sampling": FAST, **kw})
    return genie, evaluate(genie, pattern, opts, log=_quiet)


def test_cli_writes_metrics_report_and_grid(tiny, tmp_path, capsys):
    pattern, run, _ = tiny
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(run), "--shards", pattern, "--out", str(out),
                 "--num-clips", "4", "--batch-size", "3", "--steps", "2", "--temperature", "1.5",
                 "--grid-rows", "3", "--grid-steps", "2"])
    assert code == 0
    assert re.search(r"Δ4PSNR [+-]\d+\.\d{3} dB .* NMI \d\.\d{3}", capsys.readouterr().out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_clips"] == 4 and m["frames_per_clip"] == 5  # t + 1 = 5 > the tokenizer's 4-frame window
    assert m["options"]["sampling"] == {"steps": 2, "temperature": 1.5, "schedule": "cosine"}
    tok = m["tokenizer"]
    assert tok["frames"] == 4 * 4 and 0 < tok["psnr"] < 100 and -1 <= tok["ssim"] <= 1
    dyn, delta = m["dynamics"], m["delta_t_psnr"]
    assert len(dyn["psnr_per_t"]) == len(dyn["random_actions_psnr_per_t"]) == len(dyn["ssim_per_t"]) == 4
    lam, rand = dyn["psnr_per_t"], dyn["random_actions_psnr_per_t"]
    assert delta["t"] == 4 and delta["value"] == delta["per_t"][-1] == dyn["psnr_at_t"] - rand[-1]
    assert delta["per_t"] == [a - b for a, b in zip(lam, rand, strict=True)]
    low, high = delta["interval_95"]
    assert low <= delta["value"] <= high
    usage = m["lam_usage"]
    assert usage["num_actions"] == 4 and sum(usage["counts"]) == usage["transitions"] == 4 * 4
    assert 1 <= usage["perplexity"] <= 4
    agree = m["action_agreement"]
    assert agree["available"] and agree["clips_with_actions"] == 4 and agree["transitions"] == 16
    assert np.array(agree["contingency"]).shape == (4, 4) and np.sum(agree["contingency"]) == 16
    assert 0 <= agree["nmi"] <= 1 and agree["majority_baseline"] <= agree["many_to_one_accuracy"] <= 1
    assert m["fvd"]["value"] is None and "--i3d" in m["fvd"]["note"]

    grid = Image.open(out / "consistency_grid.png")
    rows, actions, steps, (h, w) = 3, 4, 2, (90, 160)
    cell_w = steps * w + (steps - 1) * FRAME_GAP
    assert grid.size == (GRID_PAD + (w + GRID_PAD) + actions * (cell_w + GRID_PAD),
                         GRID_HEADER + GRID_PAD + rows * (h + GRID_PAD))
    # Cell placement: row r starts from clip r's first frame; column 1 + a holds action a's rollout.
    pixels = np.asarray(grid)
    video = to_float_video(_first_clips(pattern, 5, rows)["video"])
    top = GRID_HEADER + GRID_PAD + (h + GRID_PAD)  # row 1
    assert np.array_equal(pixels[top:top + h, GRID_PAD:GRID_PAD + w], to_uint8(video[1, 0]))
    genie = load_genie_run(run)
    rollout = genie.rollout(video[:, :1], torch.full((rows, steps), 2), SamplingConfig(2, 1.5), seed=0)
    cell = to_uint8(rollout["frames"][1, 1:])  # row 1, action 2: two generated frames
    left = GRID_PAD + (w + GRID_PAD) + 2 * (cell_w + GRID_PAD)
    assert np.array_equal(pixels[top:top + h, left:left + w], cell[0])
    assert np.array_equal(pixels[top:top + h, left + w + FRAME_GAP:left + 2 * w + FRAME_GAP], cell[1])
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # curves, rollouts, grid: self-contained
    assert Image.open(BytesIO(base64.b64decode(images[2]))).size == grid.size
    assert "Δ4PSNR" in page and "latent 3" in page and "<script" not in page


def test_deterministic_for_a_seed(tiny):
    _, first = _run(tiny, seed=3)
    _, again = _run(tiny, seed=3)
    _, other = _run(tiny, seed=4)
    assert first == again
    assert other["dynamics"]["random_actions_psnr_per_t"] != first["dynamics"]["random_actions_psnr_per_t"]


def test_delta_psnr_is_exactly_zero_when_actions_are_ignored(tiny):
    pattern, run, _ = tiny
    genie = load_genie_run(run)
    with torch.no_grad():
        genie.dynamics.action_emb.weight.zero_()  # every action (and "none") adds the same zero vector
    m = evaluate(genie, pattern, EvalOptions(num_clips=4, batch_size=2, sampling=FAST), log=_quiet)
    assert m["delta_t_psnr"]["per_t"] == [0.0] * 4 and m["delta_t_psnr"]["interval_95"] == [0.0, 0.0]
    assert m["dynamics"]["psnr_per_t"] == m["dynamics"]["random_actions_psnr_per_t"]
    # Control: once actions move the dynamics model strongly, LAM and random rollouts differ.
    with torch.no_grad():
        genie.dynamics.action_emb.weight.normal_(0, 5.0, generator=torch.Generator().manual_seed(0))
    m = evaluate(genie, pattern, EvalOptions(num_clips=4, batch_size=2, sampling=FAST), log=_quiet)
    assert any(d != 0.0 for d in m["delta_t_psnr"]["per_t"])


def _first_clips(pattern: str, frames: int, n: int) -> dict:
    return next(iter(clip_windows(pattern, LoaderConfig(window=frames, batch_size=n, shuffle=False))))


def test_rollout_psnr_pairs_generated_frame_k_with_real_frame_k(tiny):
    pattern, run, _ = tiny
    genie = load_genie_run(run)
    video = to_float_video(_first_clips(pattern, 5, 2)["video"])
    actions = torch.tensor([[0, 1, 2], [3, 3, 0]])
    generated, psnr_values, ssim_values = rollout_against(genie, video, actions, FAST, seed=7)
    direct = genie.rollout(video[:, :1], actions, FAST, seed=7)["frames"]
    assert torch.equal(generated, direct[:, 1:])
    mse = ((generated.numpy().astype(np.float64) - video[:, 1:4].numpy()) ** 2).mean(axis=(2, 3, 4))
    np.testing.assert_allclose(psnr_values.numpy(), 10 * np.log10(1 / mse), rtol=1e-4)
    assert ssim_values.shape == (2, 3)


def test_windowed_lam_inference(tiny):
    pattern, run, _ = tiny
    genie = load_genie_run(run)  # window T = 4
    video = to_float_video(_first_clips(pattern, 10, 2)["video"])
    assert torch.equal(genie.infer_actions(video[:, :4]), genie.lam.infer_actions(video[:, :4]))
    actions = genie.infer_actions(video)  # windows [0..3], [3..6], [6..9]: one shared frame each
    assert actions.shape == (2, 9)
    for start in (0, 3, 6):
        assert torch.equal(actions[:, start:start + 3], genie.lam.infer_actions(video[:, start:start + 4]))


class PixelOracleLAM(nn.Module):
    """Stand-in for the LAM that reads the tiny clips' square motion from pixels: for the transition
    x_k -> x_{k+1} it returns the move (0..3 = right, left, down, up) that best matches the square's
    displacement. Right by construction (except where the square is stuck at a border), so it checks the
    evaluation's alignment."""

    num_actions = 4

    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        square = (video.mean(2) > 0.55).float()  # square channels >= 160/255, background channels <= 119/255
        ys = torch.arange(video.shape[-2], dtype=torch.float32)[:, None]
        xs = torch.arange(video.shape[-1], dtype=torch.float32)[None, :]
        area = square.sum((-2, -1))
        centre = torch.stack([(square * ys).sum((-2, -1)) / area, (square * xs).sum((-2, -1)) / area], -1)
        moves = torch.from_numpy(MOVES).float()  # (4, 2) as (dy, dx)
        return ((centre[:, 1:] - centre[:, :-1]) @ moves.T).argmax(-1)

    infer_clip_actions = infer_actions  # any length: no trained window to respect


def test_agreement_alignment_with_a_pixel_oracle(tiny):
    pattern, run, _ = tiny
    genie = load_genie_run(run)
    genie.lam = PixelOracleLAM()
    m = evaluate(genie, pattern, EvalOptions(num_clips=6, batch_size=4, t=6, sampling=FAST), log=_quiet)
    agree = m["action_agreement"]
    assert agree["transitions"] == 6 * 6  # 7-frame windows: 6 transitions, all with known true actions
    # Aligned: the oracle's action k is the shard's action k. Off by one frame, they would be independent
    # random moves (~0.3 accuracy, NMI ~0.05).
    assert agree["many_to_one_accuracy"] >= 0.9 and agree["nmi"] >= 0.75
    assert agree["mapping"] == {"0": 0, "1": 1, "2": 2, "3": 3}


def test_agreement_is_skipped_without_true_actions(tiny, tmp_path):
    _, run, _ = tiny
    rng = np.random.default_rng(5)
    clips = [dataclasses.replace(make_sample(i, 8, rng).clip, actions=None) for i in range(2)]
    write_shard(str(tmp_path / "shard-00000.tar"), clips)
    genie = load_genie_run(run)
    opts = EvalOptions(num_clips=5, batch_size=4, sampling=FAST)
    m = evaluate(genie, str(tmp_path / "*.tar"), opts, log=_quiet)
    assert m["num_clips"] == 2  # fewer clips than asked: all of them
    assert m["action_agreement"] == {"available": False, "note": NO_TRUE_ACTIONS}
    assert m["lam_usage"]["transitions"] == 2 * 4


class TinyI3D(nn.Module):
    """A stand-in feature network with I3D's input layout (B, 3, T, 224, 224) -> (B, 5)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 5, kernel_size=(2, 16, 16), stride=(1, 16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4))


def test_fvd_with_a_torchscript_feature_network(tiny, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "i3d.pt"
    torch.jit.script(TinyI3D()).save(str(path))
    _, m = _run(tiny, num_clips=3, i3d=str(path), fvd_frames=6)
    assert m["frames_per_clip"] == 6 and m["fvd"]["num_videos"] == 3 and m["fvd"]["frames"] == 6
    assert m["fvd"]["feature_dim"] == 5 and m["fvd"]["value"] > 0 and np.isfinite(m["fvd"]["value"])
    assert len(m["delta_t_psnr"]["per_t"]) == 4  # the FVD horizon does not change the ΔtPSNR curve


@pytest.mark.parametrize("case, message", [
    ("missing_run", "run directory .* does not exist"),
    ("tokenizer_run", "is a tokenizer run; evaluate needs a lam-dynamics"),
    ("no_shards", "no shards matched"),
    ("bad_t", "t must be >= 1"),
    ("too_long", "fewer than the window of 21"),
    ("missing_i3d", "I3D weights .* do not exist"),
    ("bad_steps", "MaskGIT steps must be >= 1"),
    ("no_cuda", "CUDA is not available"),
])
def test_user_errors_exit_2_with_one_line(tiny, tmp_path, capsys, case, message):
    pattern, run, root = tiny
    args = {"--checkpoint": str(run), "--shards": pattern, "--out": str(tmp_path / "o")}
    extra: list[str] = []
    if case == "missing_run":
        args["--checkpoint"] = str(tmp_path / "nope")
    elif case == "tokenizer_run":
        args["--checkpoint"] = str(root / "tokenizer")
    elif case == "no_shards":
        args["--shards"] = str(tmp_path / "none-*.tar")
    elif case == "bad_t":
        extra = ["--t", "0"]
    elif case == "too_long":
        extra = ["--t", "20"]
    elif case == "missing_i3d":
        extra = ["--i3d", str(tmp_path / "i3d.pt")]
    elif case == "bad_steps":
        extra = ["--steps", "0"]
    elif case == "no_cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available on this machine")
        extra = ["--device", "cuda"]
    code = main(["evaluate", *[x for kv in args.items() for x in kv], *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0]), err[0]
