"""benchmarks/lam_probe.py: the probe of a trained LAM against true actions, with the action gap and the
supervised ceiling (an inverse-dynamics classifier with the LAM's encoder), end to end on tiny data."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modeling.__main__ import main
from modeling.configs import get_config
from tests.modeling_helpers import write_tiny_shards

torch.set_num_threads(1)
PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "lam_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("lam_probe", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_of_a_perfect_and_a_constant_labelling():
    lam_probe = load_probe()
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert lam_probe.scores(truth + 3, truth)["nmi"] == 1.0 and lam_probe.scores(truth + 3, truth)["many_to_one"] == 1
    flat = lam_probe.scores(np.zeros(6, int), truth)
    assert flat["nmi"] == 0.0 and flat["codes"] == 1 and flat["many_to_one"] == flat["majority"]


def test_ami_removes_what_more_codes_earn_by_chance_and_each_code_is_broken_down_by_effect():
    """Codes drawn independently of the action: with 64 codes on 600 transitions NMI and many-to-one rise well
    above nothing (a finer partition alone), AMI stays near 0. Codes that follow the effects get AMI 1."""
    lam_probe = load_probe()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 600)
    noise = lam_probe.scores(rng.integers(0, 64, 600), truth)
    assert noise["nmi"] > 0.1 and noise["many_to_one"] > noise["majority"] + 0.1 and abs(noise["ami"]) < 0.03
    assert lam_probe.scores(truth * 2 + rng.integers(0, 2, 600), truth)["ami"] > 0.5
    codes = np.array([5, 5, 5, 9, 9, 2])
    effects = np.array([0, 0, 4, 3, 3, 2])
    rows = lam_probe.by_code(codes, effects)
    assert rows == [{"code": 2, "transitions": 1, "effects": [0, 0, 1, 0, 0, 0]},
                    {"code": 5, "transitions": 3, "effects": [2, 0, 0, 0, 1, 0]},
                    {"code": 9, "transitions": 2, "effects": [0, 0, 0, 2, 0, 0]}]
    table = lam_probe.by_code_table(rows)
    assert "| 5 | 3 | **0.67** | 0.00 | 0.00 | 0.00 | 0.33 | 0.00 |" in table.splitlines()


def test_the_ceiling_shares_the_lam_encoder_and_the_probe_reports_it(tmp_path):
    lam_probe = load_probe()
    cfg = get_config("tiny").lam
    model = lam_probe.InverseDynamics(cfg, 6)
    assert not hasattr(model.lam, "decoder") and not hasattr(model.lam, "vq")
    assert model(torch.rand(2, 4, 3, 90, 160)).shape == (2, 3, 6)
    assert model.infer_clip_actions(torch.rand(1, 10, 3, 90, 160)).shape == (1, 9)

    write_tiny_shards(tmp_path / "data" / "shards", n_clips=2, frames=16)
    run = tmp_path / "lam"
    assert main(["train", "lam", "--shards", str(tmp_path / "data" / "shards"), "--config", "tiny", "--out",
                 str(run), "--set", "train_lam_dynamics.max_steps=2"]) == 0
    result = lam_probe.probe(str(run), str(tmp_path / "data"), ceiling_train=str(tmp_path / "data" / "shards"),
                             oracle_steps=2, log=lambda _: None)
    assert result["transitions"] == 2 * 15 and result["ceiling"]["steps"] == 2
    assert {"gap_db", "psnr_true"} <= set(result["check"]) and "nmi_share_of_ceiling" in result
    assert "supervised ceiling (2 steps" in lam_probe.table(result)
    assert sum(row["transitions"] for row in result["by_code"]) == result["transitions"]
    assert "| code | transitions | left |" in lam_probe.table(result)
    assert result["oracle_decoder"]["steps"] == 2 and "worth" in lam_probe.table(result)
    viewed = lam_probe.probe(str(run), str(tmp_path / "data"), ceiling_train=str(tmp_path / "data" / "shards"),
                             ceiling_view=16, log=lambda _: None)
    assert viewed["ceiling"]["view"] == 16 and ", central 16 px)" in lam_probe.table(viewed)


def test_a_ceiling_with_the_player_view_reads_the_frame_centre_alone():
    """``--ceiling-view``: the classifier's logits move when pixels inside the central square change and stay put
    when every pixel outside it does; the view itself is the frame inside the square and grey outside."""
    lam_probe = load_probe()
    torch.manual_seed(0)
    model = lam_probe.InverseDynamics(get_config("tiny").lam, 6, view=16).eval()
    video = torch.rand(1, 4, 3, 90, 160)
    inside = torch.zeros(90, 160, dtype=torch.bool)
    inside[37:53, 72:88] = True  # (90 - 16) // 2, (160 - 16) // 2
    view = lam_probe.player_view(video, 16)
    assert torch.equal(view[..., inside], video[..., inside]) and bool((view[..., ~inside] == 0.5).all())
    with torch.no_grad():
        logits = model(video)
        assert torch.equal(model(torch.where(inside, video, torch.rand_like(video))), logits)
        assert not torch.allclose(model(torch.where(inside, torch.rand_like(video), video)), logits)
    assert torch.equal(lam_probe.player_view(video, 0), video)


@pytest.mark.parametrize("argv, message", [
    (["--ceiling-view", "16"], "--ceiling-view needs --ceiling-train"),
    (["--ceiling-train", "CEILING", "--ceiling-view", "-4"], "--ceiling-view must be >= 0 px"),
])
def test_the_probe_refuses_a_ceiling_view_it_cannot_use(tmp_path, monkeypatch, capsys, argv, message):
    lam_probe = load_probe()
    argv = [str(tmp_path) if a == "CEILING" else a for a in argv]
    monkeypatch.setattr("sys.argv", ["lam_probe.py", "--lam", str(tmp_path), "--shards", str(tmp_path), *argv])
    with pytest.raises(SystemExit) as exit_info:
        lam_probe.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_camera_shifts_recover_a_known_scroll_and_the_report_counts_bits():
    """A random texture scrolled by known integer shifts (np.roll, an independent reference): the search finds each
    shift; a code equal to the vertical shift has NMI 1 with it; an action that sets the shift explains all the bits
    the past leaves (i.i.d. shifts: about log2(6) of them)."""
    load_probe()  # puts benchmarks/ on sys.path
    motion = importlib.import_module("lam_motion")
    rng = np.random.default_rng(0)
    world = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    moves = np.stack([rng.integers(-1, 2, 300), rng.integers(0, 2, 300)], axis=1)
    frames, y, x = [], 0, 0
    for dy, dx in [(0, 0), *moves]:
        y, x = y + dy, x + dx
        frames.append(np.roll(world, (-y, -x), axis=(0, 1))[:64, :64])
    shifts = motion.camera_shifts(np.stack(frames))
    np.testing.assert_array_equal(shifts, moves)
    report = motion.motion_report([shifts], codes=shifts[:, 0] + 3, actions=shifts[:, 0] * 10 + shifts[:, 1])
    assert report["nmi_code_dy"] == 1.0 and report["nmi_code_dx"] < 0.05
    assert 1.5 < report["bits_motion_given_past"] < 2.6 and report["bits_motion_given_past_and_action"] == 0.0
    with pytest.raises(ValueError, match="line up"):
        motion.motion_report([shifts], codes=shifts[:-1, 0], actions=shifts[:, 0])


def test_action_visibility_finds_an_action_drawn_at_the_player_and_none_in_a_still_camera():
    """Synthetic episodes: a still textured view whose centre (where the camera keeps the player) is painted, in
    x_{t+1}, with a grey level set by the action a_t (i.i.d.). The crop of x_{t+1} tells the action exactly; the
    camera, which never moves, and the crop of x_t (the previous action's) tell nothing."""
    load_probe()
    visibility = importlib.import_module("action_visibility")
    rng = np.random.default_rng(1)
    world = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)

    def episode(length: int) -> SimpleNamespace:
        actions = rng.integers(0, 15, length)
        frames = np.repeat(world[None], length + 1, axis=0)
        for t, a in enumerate(actions):
            frames[t + 1, 26:38, 26:38] = 20 * visibility.COINRUN_CLASSES[a] + 10
        return SimpleNamespace(frames=frames, actions=actions)

    train_x, train_y = visibility.views([episode(150) for _ in range(2)])
    test_x, test_y = visibility.views([episode(150)])
    assert train_x["player crop of x_t+1"].shape == (300, 256) and len(train_y) == 300
    result = visibility.scores(train_x, train_y, test_x, test_y, rounds=10)
    assert result["player crop of x_t+1"] == (1.0, 1.0)
    assert result["camera shift"][0] < 0.02 and result["player crop of x_t"][0] < 0.05


def test_forward_gain_prices_an_action_drawn_at_the_player_and_nothing_when_the_player_ignores_it():
    """The forward models at the player: where x_{t+1}'s centre is painted by the action, the action makes the crop
    predictable (a large gain, and a whole-frame share of it scaled by the crop's area); where it is painted by a
    coin toss the action does not see, the action is worth nothing."""
    load_probe()
    visibility = importlib.import_module("action_visibility")
    rng = np.random.default_rng(2)
    world = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)

    def episode(length: int, drawn: bool) -> SimpleNamespace:
        actions = rng.integers(0, 15, length)
        frames = np.repeat(world[None], length + 1, axis=0)
        for t, a in enumerate(actions):
            level = visibility.COINRUN_CLASSES[a] if drawn else rng.integers(0, 6)
            frames[t + 1, 26:38, 26:38] = 40 * level + 10
        return SimpleNamespace(frames=frames, actions=actions)

    drawn = visibility.forward_gain([episode(200, True) for _ in range(2)], [episode(200, True)], steps=300)
    assert drawn["gain_db"] > 10 and drawn["crop_psnr_with"] > 30
    assert drawn["frame_mse_gain"] == pytest.approx(
        (10 ** (-drawn["crop_psnr_without"] / 10) - 10 ** (-drawn["crop_psnr_with"] / 10)) * 256 / 4096)
    assert 0 < drawn["frame_gain_db_at_copy"] < drawn["gain_db"]
    ignored = visibility.forward_gain([episode(200, False) for _ in range(2)], [episode(200, False)], steps=300)
    assert abs(ignored["gain_db"]) < 0.3
