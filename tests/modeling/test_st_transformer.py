"""ST-transformer: shapes, causality in time, spatial mixing within a frame, RoPE offsets, cached stepping."""

from __future__ import annotations

import pytest
import torch

from modeling.st_transformer import STTransformer, apply_rope, rope_cos_sin

torch.set_num_threads(1)


@pytest.fixture
def model() -> STTransformer:
    torch.manual_seed(0)
    return STTransformer(dim=32, heads=2, layers=2, causal=True).eval()


def test_shape_and_dtype(model):
    x = torch.randn(2, 5, 7, 32)
    y = model(x)
    assert y.shape == x.shape and y.dtype == torch.float32


def test_causal_in_time(model):
    x = torch.randn(2, 6, 7, 32)
    y = model(x)
    x2 = x.clone()
    x2[:, 3] += torch.randn_like(x2[:, 3])
    y2 = model(x2)
    torch.testing.assert_close(y2[:, :3], y[:, :3])
    assert not torch.allclose(y2[:, 3:], y[:, 3:])


def test_non_causal_model_sees_the_future():
    torch.manual_seed(0)
    model = STTransformer(dim=32, heads=2, layers=1, causal=False).eval()
    x = torch.randn(1, 4, 3, 32)
    x2 = x.clone()
    x2[:, 3] = torch.randn_like(x2[:, 3])
    assert not torch.allclose(model(x)[:, 0], model(x2)[:, 0])


def test_spatial_attention_mixes_tokens_of_a_frame(model):
    x = torch.randn(1, 3, 7, 32)
    x2 = x.clone()
    x2[:, 1, 0] = torch.randn(32)  # one token of frame 1
    y, y2 = model(x), model(x2)
    assert not torch.allclose(y[:, 1, 1:], y2[:, 1, 1:])  # the other tokens of that frame change
    torch.testing.assert_close(y[:, 0], y2[:, 0])  # earlier frames do not


def test_rope_scores_depend_only_on_offsets():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    scores = []
    for shift in (0, 5, 1000):
        cq, sq = rope_cos_sin(torch.tensor([shift + 3]), 16)
        ck, sk = rope_cos_sin(torch.tensor([shift + 1]), 16)
        scores.append((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores[0], scores[2], atol=1e-4, rtol=1e-4)


def test_forward_is_shift_invariant_in_time(model):
    x = torch.randn(2, 4, 7, 32)
    torch.testing.assert_close(model(x, start_pos=0), model(x, start_pos=37), atol=1e-5, rtol=1e-5)


def test_step_with_cache_equals_forward(model):
    x = torch.randn(2, 5, 7, 32)
    full = model(x)
    from modeling.st_transformer import TemporalKVCache

    cache = TemporalKVCache(max_frames=16)
    for t in range(5):
        y, kvs = model.step(x[:, t], cache)
        torch.testing.assert_close(y, full[:, t], atol=1e-5, rtol=1e-5)
        cache.append(kvs)
    assert cache.num_frames == 5 and cache.next_pos == 5


def test_activation_checkpointing_gives_the_same_gradients(model):
    x = torch.randn(2, 3, 7, 32)
    model.train()
    model(x).square().sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.checkpointing = True
    model(x).square().sum().backward()
    for a, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a)


def test_qk_norm_matches_rmsnorm_in_every_dtype():
    """QKNorm is nn.RMSNorm with the weight cast to the input's dtype (the fused kernel needs them equal): same
    values as the float32 reference, bf16 out for bf16 in, gradients reaching the float32 weight, same keys."""
    from modeling.st_transformer import QKNorm

    torch.manual_seed(0)
    ref, qk = torch.nn.RMSNorm(8), QKNorm(8)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
    qk.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(qk(x), ref(x))
    y = qk(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref(x), atol=3e-2, rtol=3e-2)
    y.float().sum().backward()
    assert qk.weight.grad is not None and qk.weight.grad.dtype == torch.float32
    assert list(qk.state_dict()) == list(ref.state_dict()) == ["weight"]
