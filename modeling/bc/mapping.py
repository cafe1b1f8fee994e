"""Latent -> real action, fitted on k labelled transitions (the paper's "few labelled samples").

Each latent code maps to the true action most often seen with it among the k transitions; a code absent from
them maps to the most frequent true action of the k. With k = 0 nothing real is known, so the mapping is the
identity on indices (latent code i plays Procgen action i): a fixed, uninformed mapping, the floor of the curve.
"""

from __future__ import annotations

import numpy as np


def fit_mapping(latents: np.ndarray, actions: np.ndarray, num_latents: int) -> np.ndarray:
    """(num_latents,) int64: the real action each latent code plays."""
    if len(latents) == 0:
        return np.arange(num_latents, dtype=np.int64)
    majority = np.bincount(actions).argmax()
    mapping = np.full(num_latents, majority, np.int64)
    for code in range(num_latents):
        seen = actions[latents == code]
        if len(seen):
            mapping[code] = np.bincount(seen).argmax()
    return mapping


def sample_labelled(num_transitions: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k transitions whose true actions the mapping may see (all when k exceeds them)."""
    return rng.choice(num_transitions, size=min(k, num_transitions), replace=False)
