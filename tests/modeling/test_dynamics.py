"""MaskGIT dynamics: shapes, causality, the training mask, both action variants, learning on CPU, and the
KV-cached step-by-step inference against full forward passes (including a sliding window)."""

from __future__ import annotations

import pytest
import torch

from modeling.configs import DynamicsConfig, get_config
from modeling.dynamics import DynamicsModel

torch.set_num_threads(1)
MODES = ["additive", "token"]


def make(mode: str = "additive", **kw) -> DynamicsModel:
    torch.manual_seed(0)
    cfg = get_config("tiny", {"dynamics.action_conditioning": mode}).dynamics
    for k, v in kw.items():
        setattr(cfg, k, v)
    return DynamicsModel(cfg).eval()


def random_batch(model: DynamicsModel, b: int = 2, t: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = model.cfg.token_grid
    tokens = torch.randint(0, model.cfg.vocab_size, (b, t, h, w), generator=g)
    actions = torch.randint(0, model.cfg.num_actions, (b, t - 1), generator=g)
    return tokens, actions


@pytest.mark.parametrize("mode", MODES)
def test_shapes_and_dtypes(mode):
    model = make(mode)
    tokens, actions = random_batch(model)
    logits = model(tokens, actions)
    assert logits.shape == (*tokens.shape, model.cfg.vocab_size) and logits.dtype == torch.float32
    out = model.loss(tokens, actions)
    assert out["loss"].ndim == 0 and 0 <= float(out["acc"]) <= 1
    with pytest.raises(ValueError, match="actions must be"):
        model(tokens, actions[:, :1])


@pytest.mark.parametrize("mode", MODES)
def test_causal_in_time_and_conditioned_on_the_right_action(mode):
    model = make(mode)
    tokens, actions = random_batch(model, t=4)
    logits = model(tokens, actions)
    changed = tokens.clone()
    changed[:, 2] = (changed[:, 2] + 1) % model.cfg.vocab_size
    torch.testing.assert_close(model(changed, actions)[:, :2], logits[:, :2])
    other = actions.clone()
    other[:, 1] = (other[:, 1] + 1) % model.cfg.num_actions  # the action that produced frame 2
    moved = model(tokens, other)
    torch.testing.assert_close(moved[:, :2], logits[:, :2])
    assert not torch.allclose(moved[:, 2], logits[:, 2])


def test_mask_token_replaces_masked_inputs():
    model = make()
    tokens, actions = random_batch(model)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, 1:, 0, 0] = True
    scrambled = tokens.clone()
    scrambled[mask] = (scrambled[mask] + 7) % model.cfg.vocab_size  # what is under the mask must not matter
    torch.testing.assert_close(model(tokens, actions, mask), model(scrambled, actions, mask))


def test_training_mask_rate_is_uniform_half_to_one_and_spares_frame_one():
    model = make()
    g = torch.Generator().manual_seed(0)
    mask = model.sample_mask(torch.Size((4000, 3, 4, 8)), torch.device("cpu"), g)
    assert not mask[:, 0].any()
    rates = mask[:, 1:].float().flatten(1).mean(1)
    assert rates.min() > 0.3 and rates.max() <= 1.0  # 64 Bernoulli draws around a rate in [0.5, 1]
    assert abs(float(rates.mean()) - 0.75) < 0.01
    # the rate is uniform: its quartiles are near 0.625, 0.75, 0.875 (binomial noise aside)
    q = torch.quantile(rates, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(q, torch.tensor([0.625, 0.75, 0.875]), atol=0.03, rtol=0)


def test_loss_is_cross_entropy_on_masked_tokens_of_later_frames():
    model = make()
    tokens, actions = random_batch(model)
    g = torch.Generator().manual_seed(3)
    out = model.loss(tokens, actions, generator=g)
    mask = model.sample_mask(tokens.shape, tokens.device, torch.Generator().manual_seed(3))
    logits = model(tokens, actions, mask)
    expected = torch.nn.functional.cross_entropy(logits[mask], tokens[mask])
    torch.testing.assert_close(out["loss"], expected)
    # The result holds no logits (B, T, h, w, V): only the first example's argmax tokens, for sample images.
    assert torch.equal(out["predicted"], logits[:1].argmax(-1))
    held = max(v.numel() for v in out.values() if torch.is_tensor(v))
    assert held == tokens[:1].numel() and held * model.cfg.vocab_size * tokens.shape[0] == logits.numel()


def test_forgotten_actions_mean_no_action():
    """After the LAM resets a code, the dynamics row of that action is the "no action" row: the model then
    predicts for it exactly what it predicts without an action, and other actions are untouched."""
    model = make()
    tokens, _ = random_batch(model, b=1)
    with torch.no_grad():
        model.action_emb.weight.normal_()  # rows as after training: all different
    before = model.action_emb.weight.clone()
    model.forget_actions(torch.tensor([2]))
    after = model.action_emb.weight
    assert torch.equal(after[2], after[model.no_action_id]) and not torch.equal(before[2], after[2])
    kept = [i for i in range(model.cfg.num_actions + 1) if i != 2]
    assert torch.equal(before[kept], after[kept])
    none = model(tokens, torch.full((1, 3), -1))
    torch.testing.assert_close(model(tokens, torch.full((1, 3), 2)), none)
    assert not torch.allclose(model(tokens, torch.full((1, 3), 1)), none)


@pytest.mark.parametrize("mode", MODES)
def test_learns_action_dependent_dynamics(mode):
    """Next frame = previous frame shifted by the action: loss falls by a set margin, and the trained model is
    better with the true actions than with wrong ones."""
    model = make(mode).train()
    h, w = model.cfg.token_grid
    g = torch.Generator().manual_seed(0)
    b, t = 8, 4
    first = torch.randint(0, 8, (b, 1, h, w), generator=g)
    actions = torch.randint(0, model.cfg.num_actions, (b, t - 1), generator=g)
    frames = [first[:, 0]]
    for i in range(t - 1):
        frames.append(torch.stack([torch.roll(f, shifts=int(a), dims=1)
                                   for f, a in zip(frames[-1], actions[:, i], strict=True)]))
    tokens = torch.stack(frames, dim=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(150):
        out = model.loss(tokens, actions, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    model.eval()
    wrong = (actions + 1) % model.cfg.num_actions
    with torch.no_grad():
        right_loss = float(model.loss(tokens, actions, generator=torch.Generator().manual_seed(9))["loss"])
        wrong_loss = float(model.loss(tokens, wrong, generator=torch.Generator().manual_seed(9))["loss"])
    assert right_loss < wrong_loss, (right_loss, wrong_loss)


@pytest.mark.parametrize("context", ["window", "stream"])
@pytest.mark.parametrize("mode", MODES)
def test_cached_steps_equal_full_forward_including_sliding_window(mode, context):
    # Two layers: with one, a rolling cache would equal a fresh window by accident (only deeper layers' keys of
    # old frames depend on frames that have left the window).
    model = make(mode, layers=2)
    window = 3
    tokens, actions = random_batch(model, t=8, seed=1)
    full = model(tokens, actions)
    cache = model.new_cache(tokens.shape[0], max_frames=window, context=context)
    for t in range(tokens.shape[1]):
        action = None if t == 0 else actions[:, t - 1]
        mask = torch.rand(tokens[:, t].shape, generator=torch.Generator().manual_seed(t)) < 0.5
        step = model.forward_step(tokens[:, t], action, mask, cache)
        again = model.forward_step(tokens[:, t], action, mask, cache)
        torch.testing.assert_close(step, again)  # forward_step leaves the cache alone
        frame_mask = torch.zeros(tokens[:, :t + 1].shape, dtype=torch.bool)
        frame_mask[:, -1] = mask
        lo = max(0, t - window + 1)
        if context == "stream":  # the whole history, each layer attending to the last `window` frames
            reference = model(tokens[:, :t + 1], actions[:, :t], frame_mask, window=window)[:, -1]
        else:  # a fresh forward over the last `window` frames, its first frame without an action (as in training)
            reference = model(tokens[:, lo:t + 1], actions[:, lo:t], frame_mask[:, lo:])[:, -1]
        if t < window and not mask.any():
            torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step, reference, atol=1e-5, rtol=1e-5)
        model.commit(tokens[:, t], action, cache)
        assert cache.num_frames == min(t + 1, window - 1)


def test_the_two_contexts_differ_past_the_window():
    """The band-masked stream and the fresh window are different computations once frames leave the window."""
    model = make(layers=2)
    tokens, actions = random_batch(model, t=6, seed=2)
    stream = model(tokens, actions, window=3)[:, -1]
    fresh = model(tokens[:, -3:], actions[:, -2:])[:, -1]
    assert (stream - fresh).abs().max() > 1e-3


def test_defaults_follow_the_paper():
    cfg = DynamicsConfig()
    assert (cfg.mask_rate_min, cfg.mask_rate_max, cfg.num_frames) == (0.5, 1.0, 16)
    with pytest.raises(ValueError, match="action_conditioning"):
        DynamicsModel(DynamicsConfig(layers=1, dim=32, heads=2, action_conditioning="concat"))
