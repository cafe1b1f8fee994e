"""Training and inference see the same thing: the tokens and latent actions a run's dynamics model was trained
on are those evaluation and generation give it (one precision policy, recorded with the run), and a latent
action the LAM re-assigns (dead-code reset) loses its old meaning in the dynamics model too."""

from __future__ import annotations

import pytest
import torch

from modeling.checkpoint import read_run_config
from modeling.configs import get_config
from modeling.data import LoaderConfig, clip_windows
from modeling.genie import Genie
from modeling.precision import autocast
from modeling.tokenizer import VideoTokenizer
from modeling.train import LamDynamicsObjective, make_optimizer
from tests.genie_fixtures import train_tiny_genie

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A tiny Genie trained (briefly) under the bf16 policy, on CPU: (shard pattern, run directory)."""
    return train_tiny_genie(tmp_path_factory.mktemp("bf16"), steps=2, extra=["--set", "precision=bf16"])


def test_inference_sees_the_tokens_and_actions_training_saw(bf16_run):
    """The objective's forward under the run's autocast (what training computes) against Genie's inference
    entry points on a loaded run: identical tokens and actions. fp32 inference (the former default) flips
    some tokens of the same run, so the comparison can fail."""
    pattern, run = bf16_run
    cfg = read_run_config(run)[0]
    assert cfg.precision == "bf16"
    genie = Genie.load(run)
    assert genie.precision == "bf16"
    batch = next(iter(clip_windows(pattern, LoaderConfig(window=cfg.tokenizer.num_frames, batch_size=4,
                                                         shuffle=False))))
    # Two training steps leave the tokenizer on a few codes, which no precision change flips; a random tokenizer
    # and noise added to the flat colours of the tiny clips make precision decide some argmins (the fp32 check).
    torch.manual_seed(0)
    genie.tokenizer = VideoTokenizer(cfg.tokenizer).eval()
    noise = torch.randint(0, 64, batch["video"].shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    batch["video"] = batch["video"] // 2 + noise * 2
    objective = LamDynamicsObjective(cfg, genie.tokenizer, seed=0, rank=0)
    objective.lam.load_state_dict(genie.lam.state_dict())
    objective.dynamics.load_state_dict(genie.dynamics.state_dict())
    with torch.no_grad(), autocast(cfg.precision, "cpu"):
        trained = objective.train()({"video": batch["video"]}, micro_step=0)
    video = batch["video"].permute(0, 1, 4, 2, 3).float() / 255
    with genie.autocast():
        tokens = genie.tokenizer.encode(video)
    assert torch.equal(tokens, trained["tokens"])
    assert torch.equal(genie.infer_actions(video), trained["actions"])
    with torch.no_grad():
        fp32_tokens = genie.tokenizer.encode(video)
    flipped = float((fp32_tokens != trained["tokens"]).float().mean())
    assert flipped > 0, "fp32 and bf16 give the same tokens: this test could not tell the policies apart"


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision must be one of"):
        get_config("tiny", {"precision": "fp16"})
    assert get_config("coinrun").precision == "bf16" and get_config("tiny").precision == "fp32"


def test_a_reset_lam_code_is_forgotten_by_the_dynamics_model():
    """One real training step, then LAM code 1 is starved: the reset re-initialises the LAM code, copies the
    dynamics model's "no action" row into action row 1, and zeroes the optimizer moments of both rows; every
    other row is untouched."""
    cfg = get_config("tiny")
    torch.manual_seed(0)
    objective = LamDynamicsObjective(cfg, VideoTokenizer(cfg.tokenizer).eval(), seed=0, rank=0)
    optimizer = make_optimizer(objective.trained(), cfg.train_lam_dynamics, torch.device("cpu"))
    video = (torch.rand(2, 4, 90, 160, 3) * 255).to(torch.uint8)
    objective({"video": video}, 0)["loss"].backward()
    optimizer.step()
    lam_codes, table = objective.lam.vq.codebook.weight, objective.dynamics.action_emb.weight
    before_codes, before_table = lam_codes.detach().clone(), table.detach().clone()
    objective.lam.vq.usage.fill_(1.0 / cfg.lam.num_actions)
    objective.lam.vq.usage[1] = 0.0
    assert objective.reset_dead_codes(optimizer) == 1
    none = objective.dynamics.no_action_id
    assert torch.equal(table[1], table[none]) and not torch.equal(table[1], before_table[1])
    assert not torch.equal(lam_codes[1], before_codes[1])
    others = [i for i in range(cfg.lam.num_actions) if i != 1]
    assert torch.equal(table[others], before_table[others]) and torch.equal(lam_codes[others], before_codes[others])
    for param in (lam_codes, table):
        state = optimizer.state[param]
        assert not state["exp_avg"][1].any() and not state["exp_avg_sq"][1].any()
        assert state["exp_avg_sq"][others].any()
