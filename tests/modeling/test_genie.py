"""Genie inference: MaskGIT sampling, cached vs uncached generation, sliding context, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch

from modeling.configs import get_config
from modeling.dynamics import DynamicsModel
from modeling.genie import Genie
from modeling.lam import LatentActionModel
from modeling.maskgit import SamplingConfig, masked_counts, sample_frame
from modeling.tokenizer import VideoTokenizer
from tests.genie_fixtures import train_tiny_genie

torch.set_num_threads(1)


def random_genie(action_conditioning: str = "additive", seed: int = 0, layers: int = 1) -> Genie:
    cfg = get_config("tiny", {"dynamics.action_conditioning": action_conditioning, "dynamics.layers": layers,
                              "tokenizer.dec_layers": layers})
    torch.manual_seed(seed)
    return Genie(VideoTokenizer(cfg.tokenizer), LatentActionModel(cfg.lam), DynamicsModel(cfg.dynamics), cfg)


def prompt_video(batch: int = 2, frames: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, frames, 3, 90, 160, generator=torch.Generator().manual_seed(seed))


def long_rollout_case(conditioning: str, prompt_frames: int) -> tuple[Genie, torch.Tensor, torch.Tensor,
                                                                      SamplingConfig]:
    """A two-layer Genie (a one-layer model would hide a cache that is only right for layer 1), a batch-2 prompt
    and actions for three windows: rollouts that slide past the window several times over."""
    genie = random_genie(conditioning, layers=2)
    actions = torch.randint(0, genie.num_actions, (2, 3 * genie.window), generator=torch.Generator().manual_seed(5))
    return genie, prompt_video(batch=2, frames=prompt_frames), actions, SamplingConfig(steps=4, temperature=1.0)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_genie(tmp_path_factory.mktemp("genie"))[1]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "square"])
@pytest.mark.parametrize("steps", [1, 3, 25, 200])
def test_masked_counts_follow_the_schedule_and_always_progress(schedule, steps):
    n = 66
    counts = masked_counts(n, SamplingConfig(steps=steps, schedule=schedule))
    assert len(counts) == steps and counts[-1] == 0
    assert all(b < a for a, b in zip([n, *counts], counts, strict=False) if a > 0)  # >= 1 token per step
    if steps == 25 and schedule == "cosine":
        assert counts[0] == math.floor(n * math.cos(math.pi / 2 / 25))


def test_sample_frame_commits_tokens_once_and_follows_sharp_logits():
    target = torch.randint(0, 10, (2, 3, 4), generator=torch.Generator().manual_seed(1))
    calls = []

    def logits_fn(tokens, mask):
        calls.append((tokens.clone(), mask.clone()))
        return torch.nn.functional.one_hot(target, 10).float() * 50.0

    cfg = SamplingConfig(steps=5, temperature=1.0)
    out = sample_frame(logits_fn, 2, (3, 4), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(out, target)
    assert len(calls) == 5
    assert calls[0][1].all()
    for (tok_a, mask_a), (tok_b, mask_b) in zip(calls, calls[1:], strict=False):
        assert not (mask_b & ~mask_a).any()  # a committed token is never masked again
        assert torch.equal(tok_a[~mask_a], tok_b[~mask_a])  # ... nor changed
    assert [int(m[0].sum()) for _, m in calls[1:]] == masked_counts(12, cfg)[:-1]


def test_temperature_sampling_matches_the_softmax_distribution():
    p = torch.tensor([0.2, 0.8])
    logits = p.log().expand(1, 50, 50, 2)  # 2500 independent tokens sampled in one MaskGIT step
    out = sample_frame(lambda t, m: logits, 1, (50, 50), SamplingConfig(steps=1, temperature=1.0),
                       torch.Generator().manual_seed(3))
    assert abs(out.float().mean().item() - 0.8) < 0.03  # binomial sd ~0.008
    hot = sample_frame(lambda t, m: logits, 1, (50, 50), SamplingConfig(steps=1, temperature=4.0),
                       torch.Generator().manual_seed(3))
    assert abs(hot.float().mean().item() - 0.5857) < 0.03  # softmax(log p / 4) = 0.4143 / 0.5857
    greedy = sample_frame(lambda t, m: logits, 1, (50, 50), SamplingConfig(steps=1, temperature=0.0))
    assert bool((greedy == 1).all())


@pytest.mark.parametrize("context", ["window", "stream"])
@pytest.mark.parametrize("conditioning", ["additive", "token"])
def test_cached_and_uncached_generation_give_identical_tokens(conditioning, context):
    genie, prompt, actions, sampling = long_rollout_case(conditioning, prompt_frames=2)
    cached = genie.rollout(prompt, actions, sampling, seed=7, use_cache=True, context=context)
    uncached = genie.rollout(prompt, actions, sampling, seed=7, use_cache=False, context=context)
    assert cached["tokens"].shape == (2, 2 + 3 * genie.window, 6, 11)
    assert torch.equal(cached["tokens"], uncached["tokens"])  # across the sliding window, several times over
    torch.testing.assert_close(cached["frames"], uncached["frames"], atol=1e-4, rtol=0)
    assert torch.equal(cached["frames"][:, :2], prompt)


@pytest.mark.parametrize("context", ["window", "stream"])
def test_the_cache_stays_one_window_long(context):
    genie = random_genie()
    session = genie.start(prompt_video(batch=1, frames=1), context=context)
    for i in range(3 * genie.window):
        session.step(i % genie.num_actions, SamplingConfig(steps=2))
    assert session._dyn_cache.num_frames == genie.window - 1
    assert session._dec_cache.num_frames == genie.tokenizer.cfg.num_frames - 1
    assert session.num_frames == 1 + 3 * genie.window


def test_rollouts_are_deterministic_for_a_seed_and_depend_on_it():
    genie = random_genie()
    prompt, actions = prompt_video(), torch.tensor([[0, 1, 2], [3, 3, 3]])
    a = genie.rollout(prompt, actions, SamplingConfig(steps=3), seed=1)["tokens"]
    b = genie.rollout(prompt, actions, SamplingConfig(steps=3), seed=1)["tokens"]
    c = genie.rollout(prompt, actions, SamplingConfig(steps=3), seed=2)["tokens"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_long_prompt_keeps_the_last_window_and_infers_its_actions():
    genie = random_genie()
    prompt = prompt_video(batch=1, frames=genie.window + 3)
    session = genie.start(prompt)
    kept = prompt[:, -(genie.window - 1):]
    assert session.num_frames == genie.window - 1
    assert torch.equal(torch.stack(session.frames, 1), kept)
    assert torch.equal(torch.stack(session.tokens, 1), genie.tokenizer.encode(kept))
    inferred = torch.stack(session.actions[1:], 1)
    assert torch.equal(inferred, genie.infer_actions(kept))
    assert session.actions[0].tolist() == [-1]


def test_bad_actions_and_prompts_are_refused_with_clear_messages():
    genie = random_genie()
    session = genie.start(prompt_video(batch=2, frames=1))
    with pytest.raises(ValueError, match=r"actions must be in 0\.\.3"):
        session.step(genie.num_actions)
    with pytest.raises(ValueError, match="one action per rollout"):
        session.step([0, 1, 2])
    with pytest.raises(ValueError, match="prompt must be float"):
        genie.start(torch.rand(1, 1, 3, 64, 64))
    with pytest.raises(ValueError, match="prompt must be float"):
        genie.start((prompt_video() * 255).to(torch.uint8))


def test_a_trained_run_loads_and_generates(trained_run):
    genie = Genie.load(trained_run)
    assert genie.num_actions == 4 and genie.window == 4 and genie.frame_size == (90, 160)
    out = genie.rollout(prompt_video(batch=1, frames=1), torch.tensor([[0, 1, 2, 3, 0]]), SamplingConfig(steps=2))
    frames = out["frames"]
    assert frames.shape == (1, 6, 3, 90, 160)
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1
    # the decoded frames are the tokenizer's decoding of the generated tokens (window ending at each frame)
    last = genie.tokenizer.decode(out["tokens"][:, -genie.window:])[:, -1]
    torch.testing.assert_close(frames[:, -1], last, atol=1e-4, rtol=0)


def test_sampling_defaults_to_the_presets_temperature():
    """The paper samples at temperature 1.0 for CoinRun and 2.0 for Platformers: a rollout without explicit
    sampling options uses the run's preset, not one global default."""
    assert (get_config("coinrun").sampling.temperature, get_config("platformers-small").sampling.temperature) == (
        1.0, 2.0)
    genie = random_genie()
    genie.sampling = SamplingConfig(steps=3, temperature=2.0)
    prompt, actions = prompt_video(batch=2, frames=1), torch.tensor([[0, 1, 2], [3, 2, 1]])
    default = genie.rollout(prompt, actions, seed=3)["tokens"]
    assert torch.equal(default, genie.rollout(prompt, actions, SamplingConfig(3, 2.0), seed=3)["tokens"])
    assert not torch.equal(default, genie.rollout(prompt, actions, SamplingConfig(3, 1.0), seed=3)["tokens"])


def test_bf16_autocast_generation_runs_and_returns_float_frames():
    genie = random_genie(layers=2)
    genie.precision = "bf16"
    out = genie.rollout(prompt_video(batch=1, frames=2), torch.tensor([[0, 1, 2, 3, 0]]), SamplingConfig(steps=2))
    assert out["frames"].dtype == torch.float32 and out["frames"].shape == (1, 7, 3, 90, 160)
    assert float(out["frames"].min()) >= 0 and float(out["frames"].max()) <= 1
    assert out["tokens"].dtype == torch.long and int(out["tokens"].max()) < genie.tokenizer.codebook_size
