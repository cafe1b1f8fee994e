"""glibc's tuning for worker processes has one home (``process_memory.ALLOCATOR_ENV``): local runs put it in
the environment their SDK workers inherit, and the worker image sets the same values."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline import job
from pipeline.runtime import process_memory

ROOT = Path(__file__).resolve().parents[2]


def test_worker_image_sets_the_same_allocator_env():
    env_lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    image = dict(re.findall(r"(\w+)=(\S+)", " ".join(env_lines)))
    assert {k: image.get(k) for k in process_memory.ALLOCATOR_ENV} == process_memory.ALLOCATOR_ENV


def test_local_runs_give_their_workers_the_allocator_env(monkeypatch):
    for name in process_memory.ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    job.local_options([], workers=2)
    assert {k: os.environ.get(k) for k in process_memory.ALLOCATOR_ENV} == process_memory.ALLOCATOR_ENV


def test_a_value_the_user_set_stays(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    job.local_options([], workers=2)
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
