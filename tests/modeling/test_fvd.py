"""modeling.fvd: the Fréchet distance against closed forms and scipy's sqrtm formula, the I3D preprocessing,
and the feature path through tiny stand-in networks saved with TorchScript (scripted with the StyleGAN-V I3D
flags, and a traced plain ``forward(x)``), since real I3D weights cannot be downloaded here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn

from modeling.fvd import (
    VideoFeatures,
    frechet_distance,
    frechet_distance_features,
    fvd,
    gaussian_stats,
    preprocess_i3d,
)

torch.set_num_threads(1)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Commuting covariances (same eigenvectors): Tr (S1 S2)^1/2 = sum sqrt(l1 l2), so
    # d = |mu1 - mu2|^2 + sum (sqrt(l1) - sqrt(l2))^2.
    q = _rotation(5, 1)
    l1, l2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(l1) - np.sqrt(l2)) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T  # general, non-commuting
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    root = scipy.linalg.sqrtm(s1 @ s2)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_of_samples_from_two_known_gaussians():
    rng = np.random.default_rng(3)
    q = _rotation(3, 4)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    l1, l2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 0.5, 0.5])
    x = rng.multivariate_normal(mu1, q @ np.diag(l1) @ q.T, size=40_000)
    y = rng.multivariate_normal(mu2, q @ np.diag(l2) @ q.T, size=40_000)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(l1) - np.sqrt(l2)) ** 2).sum()
    assert frechet_distance_features(x, y) == pytest.approx(expected, rel=0.03)
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-9)


def test_identical_feature_sets_give_zero_even_when_rank_deficient():
    feats = np.random.default_rng(5).normal(size=(10, 64))  # fewer samples than dimensions: few videos
    assert frechet_distance_features(feats, feats.copy()) == pytest.approx(0.0, abs=1e-8)
    mu, sigma = gaussian_stats(feats)
    assert sigma.shape == (64, 64) and np.allclose(sigma, np.cov(feats.T))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(feats[:1])


def test_preprocess_i3d_layout_range_and_resize():
    video = torch.full((2, 5, 3, 90, 160), 0.25)
    video[1] = 1.0
    x = preprocess_i3d(video)
    assert x.shape == (2, 3, 5, 224, 224)
    assert torch.allclose(x[0], torch.tensor(-0.5)) and torch.allclose(x[1], torch.tensor(1.0))
    ramp = torch.linspace(0, 1, 160).expand(1, 1, 3, 90, 160)  # left-to-right ramp stays a ramp, in [-1, 1]
    row = preprocess_i3d(ramp)[0, 0, 0, 100]
    assert bool((row[1:] >= row[:-1]).all()) and row.min() >= -1 and row.max() <= 1
    assert row[0] < -0.95 and row[-1] > 0.95


class FlagNet(nn.Module):
    """Stand-in with the StyleGAN-V I3D signature: returns 4-d features only when asked for features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, kernel_size=(2, 8, 8), stride=(1, 8, 8))
        self.logits = nn.Linear(4, 7)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        if rescale or resize:  # our preprocessing already did both; the flags must turn them off
            x = x * 0.0
        feats = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        return feats if return_features else self.logits(feats)


class PlainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, kernel_size=(2, 16, 16), stride=(1, 16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


def _videos(seed: int, n: int = 6, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 4, 3, 90, 160, generator=g) * 0.5 + shift).clamp(0, 1)


def test_torchscript_feature_networks_and_fvd(tmp_path):
    torch.manual_seed(0)
    scripted = tmp_path / "flag_i3d.pt"
    torch.jit.script(FlagNet()).save(str(scripted))
    traced = tmp_path / "plain.pt"
    torch.jit.trace(PlainNet(), torch.rand(1, 3, 4, 224, 224)).save(str(traced))

    flag = VideoFeatures.load(scripted)
    assert flag.kwargs == {"rescale": False, "resize": False, "return_features": True}
    real, other = _videos(0), _videos(1, shift=0.4)
    feats = flag(real, batch_size=4)
    assert feats.shape == (6, 4) and feats.dtype == np.float64 and np.abs(feats).sum() > 0
    np.testing.assert_allclose(feats[4:], flag(real[4:]), rtol=1e-6)  # batching does not change features

    plain = VideoFeatures.load(traced)
    assert plain.kwargs == {} and plain(real).shape == (6, 6)
    for net in (flag, plain):
        assert fvd(real, real.clone(), net) == pytest.approx(0.0, abs=1e-8)
        assert fvd(real, other, net) > 1e-3


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="do not exist"):
        VideoFeatures.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        VideoFeatures.load(junk)
