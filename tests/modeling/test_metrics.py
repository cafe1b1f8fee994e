"""modeling.metrics against independent references: numpy PSNR, a scipy.ndimage SSIM written the way
skimage.metrics.structural_similarity computes it (skimage is not installed here), sklearn's NMI, and
hand-computed many-to-one and code-usage cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.ndimage import gaussian_filter
from sklearn.metrics import normalized_mutual_info_score

from modeling.metrics import (
    action_agreement,
    code_usage,
    confidence_interval,
    contingency,
    many_to_one,
    normalized_mutual_info,
    psnr,
    ssim,
)

torch.set_num_threads(1)


def _images(seed: int, shape=(3, 3, 40, 52)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    target = gaussian_filter(target, sigma=(0,) * (len(shape) - 2) + (2, 2))  # structure, not white noise
    pred = np.clip(target + rng.normal(0, 0.05, shape) + 0.02, 0, 1)
    return pred, target


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """skimage's algorithm (gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1) in
    numpy/scipy: per channel, filter with truncate=3.5 (an 11-tap window), crop 5 pixels, mean; then mean."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for xc, yc in zip(x, y, strict=True):
        f = lambda z: gaussian_filter(z, sigma=1.5, truncate=3.5, mode="reflect")  # noqa: E731
        ux, uy = f(xc), f(yc)
        vx, vy, vxy = f(xc * xc) - ux * ux, f(yc * yc) - uy * uy, f(xc * yc) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        values.append(s[5:-5, 5:-5].mean())
    return float(np.mean(values))


def test_psnr_per_item_and_mean_match_numpy():
    pred, target = _images(0)
    mse = ((pred - target) ** 2).reshape(len(pred), -1).mean(1)
    expected = 10 * np.log10(1.0 / mse)
    got = psnr(torch.from_numpy(pred), torch.from_numpy(target), reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    mean = psnr(torch.from_numpy(pred), torch.from_numpy(target)).item()
    assert mean == pytest.approx(expected.mean(), rel=1e-5)
    same = torch.full((2, 4), 0.5)
    assert psnr(same, same).item() == pytest.approx(100.0)  # floored MSE
    zero_db = psnr(torch.zeros(1, 4), torch.full((1, 4), 2.0), data_range=2.0).item()
    assert zero_db == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_the_skimage_algorithm():
    pred, target = _images(1)
    got = ssim(torch.from_numpy(pred), torch.from_numpy(target), reduction="none").numpy()
    expected = [_ssim_reference(p, t) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert 0.2 < float(np.mean(expected)) < 0.99  # a case where SSIM is informative, not saturated
    same = torch.from_numpy(target)
    np.testing.assert_allclose(ssim(same, same, reduction="none").numpy(), 1.0, atol=1e-5)


def test_ssim_flattens_video_dims_and_rejects_small_images():
    pred, target = _images(2, shape=(2, 3, 3, 24, 30))
    per = ssim(torch.from_numpy(pred), torch.from_numpy(target), reduction="none")
    assert per.shape == (6,)
    assert per[4].item() == pytest.approx(_ssim_reference(pred[1, 1], target[1, 1]), abs=2e-5)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 10, 20), torch.zeros(1, 3, 10, 20))


def test_nmi_matches_sklearn_and_its_limits():
    rng = np.random.default_rng(0)
    for n, k_l, k_a in [(50, 3, 4), (400, 8, 6), (1000, 2, 2)]:
        a = rng.integers(0, k_a, n)
        latent = np.where(rng.random(n) < 0.6, a % k_l, rng.integers(0, k_l, n))  # partly informative
        reference = normalized_mutual_info_score(a, latent)
        assert normalized_mutual_info(latent, a) == pytest.approx(reference, abs=1e-10)
    true = rng.integers(0, 6, 500)
    permuted = np.array([3, 5, 0, 1, 4, 2])[true]
    assert normalized_mutual_info(permuted, true) == pytest.approx(1.0)
    independent = rng.integers(0, 6, 20_000)
    assert normalized_mutual_info(independent, true.repeat(40)) < 0.002
    assert normalized_mutual_info([2, 2, 2], [1, 1, 1]) == 1.0  # both constant: sklearn's convention
    assert normalized_mutual_info_score([1, 1, 1], [2, 2, 2]) == 1.0
    assert normalized_mutual_info([0, 0, 0, 0], [0, 1, 0, 1]) == 0.0  # collapsed LAM: no information


def test_many_to_one_accuracy_hand_computed():
    latent = [0, 0, 0, 1, 1, 2, 2, 2]
    true = [1, 1, 2, 0, 2, 2, 2, 3]
    # latent 0 -> 1 (2 of 3), latent 1 -> 0 (tie 0/2: smallest id; 1 of 2), latent 2 -> 2 (2 of 3)
    accuracy, mapping = many_to_one(latent, true)
    assert mapping == {0: 1, 1: 0, 2: 2}
    assert accuracy == pytest.approx(5 / 8)
    assert contingency(latent, true).tolist() == [[0, 2, 1, 0], [1, 0, 1, 0], [0, 0, 2, 1]]


def test_action_agreement_ignores_unknown_true_actions():
    latent = np.array([[0, 1, 1, 3], [2, 0, 3, 1]])
    true = np.array([[2, 0, 0, -1], [1, 2, -1, 0]])  # -1: unknown (last frame of a clip)
    report = action_agreement(latent, true, num_latent=4)
    assert report["transitions"] == 6
    assert report["many_to_one_accuracy"] == 1.0 and report["nmi"] == pytest.approx(1.0)
    assert report["mapping"] == {"0": 2, "1": 0, "2": 1}
    assert report["majority_baseline"] == pytest.approx(3 / 6)
    assert len(report["contingency"]) == 4 and report["contingency"][3] == [0, 0, 0]
    with pytest.raises(ValueError, match="no transition"):
        action_agreement([1, 2], [-1, -1])


def test_code_usage_counts_and_perplexity():
    usage = code_usage(torch.tensor([[0, 0, 1, 3], [3, 3, 0, 0]]), num_actions=5)
    assert usage["counts"] == [4, 1, 0, 3, 0] and usage["codes_used"] == 3 and usage["transitions"] == 8
    p = np.array([4, 1, 3]) / 8
    assert usage["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert code_usage(np.arange(8) % 4, 4)["perplexity"] == pytest.approx(4.0)
    assert code_usage(np.zeros(9, int), 4)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0..3"):
        code_usage([4], 4)


def test_confidence_interval_matches_scipys_one_sample_t_test():
    values = np.random.default_rng(0).normal(1.0, 2.0, 12)
    mean, half = confidence_interval(values)
    reference = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(values.mean())
    assert (mean - half, mean + half) == pytest.approx((reference.low, reference.high))
    assert confidence_interval([3.0]) == (3.0, 0.0)
