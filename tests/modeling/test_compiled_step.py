"""Compiled generation (``Genie.compile_generation``): the same tokens as eager, one graph per cache length.

CUDA graphs need a GPU (``benchmarks/device_check.py`` measures them there); what can fail on a CPU is checked here:
that Dynamo captures the whole step (``fullgraph``), that a new position replays a graph instead of compiling
another (a recompile per frame would make every frame pay for compiling), and that Inductor's code gives the
eager model's tokens.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

from modeling.maskgit import SamplingConfig
from tests.modeling.test_genie import long_rollout_case, prompt_video, random_genie

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("context", ["window", "stream"])
@pytest.mark.parametrize("conditioning", ["additive", "token"])
def test_compiled_steps_match_eager_with_one_graph_per_cache_length(conditioning, context):
    genie, prompt, actions, sampling = long_rollout_case(conditioning, prompt_frames=1)
    eager = genie.rollout(prompt, actions, sampling, seed=7, context=context)
    counter = CompileCounter()
    genie.compile_generation(backend=counter, mode=None)
    compiled = genie.rollout(prompt, actions, sampling, seed=7, context=context)
    assert torch.equal(compiled["tokens"], eager["tokens"])
    torch.testing.assert_close(compiled["frames"], eager["frames"], atol=1e-5, rtol=0)
    # A one-frame prompt: the cache holds 1, 2, ..., T-1 frames, then stays full for the 2T frames after.
    assert counter.frame_count == genie.window - 1
    again = genie.rollout(prompt_video(batch=2, frames=2, seed=1), actions, sampling, seed=8, context=context)
    assert counter.frame_count == genie.window - 1  # new positions and prompts replay the graphs
    assert again["tokens"].shape[1] == 2 + actions.shape[1]


def test_inductor_gives_the_eager_tokens():
    genie = random_genie(layers=2)
    prompt = prompt_video(batch=1, frames=genie.window - 1)  # a full cache from the start: one graph to compile
    actions = torch.tensor([[0, 1, 2, 3, 1]])
    sampling = SamplingConfig(steps=3, temperature=1.0)
    eager = genie.rollout(prompt, actions, sampling, seed=2, context="stream")
    genie.compile_generation()  # Inductor, mode="reduce-overhead" (no CUDA graphs on a CPU)
    compiled = genie.rollout(prompt, actions, sampling, seed=2, context="stream")
    assert torch.equal(compiled["tokens"], eager["tokens"])
    torch.testing.assert_close(compiled["frames"], eager["frames"], atol=1e-5, rtol=0)


def test_compiled_logits_are_a_copy_the_next_step_leaves_alone():
    genie = random_genie()
    genie.compile_generation(backend=CompileCounter(), mode=None)
    session = genie.start(prompt_video(batch=1, frames=2))
    grid = genie.dynamics.cfg.token_grid
    tokens = torch.zeros(1, *grid, dtype=torch.long)
    action = torch.tensor([1])
    first = genie.dynamics_step(tokens, action, torch.ones(1, *grid, dtype=torch.bool), session._dyn_cache)
    kept = first.clone()
    genie.dynamics_step(tokens + 1, action, torch.zeros(1, *grid, dtype=torch.bool), session._dyn_cache)
    assert torch.equal(first, kept)
    torch.testing.assert_close(first, genie.dynamics.forward_step(tokens, action, torch.ones(1, *grid,
                               dtype=torch.bool), session._dyn_cache), atol=1e-5, rtol=0)
