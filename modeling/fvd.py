"""Fréchet Video Distance (Unterthiner et al. 2018): the Fréchet distance between Gaussians fitted to features of
real and of generated videos from a video network (Kinetics-400 I3D for FVD proper).

The I3D weights cannot be downloaded here, so the network is the user's (``--i3d PATH``): any TorchScript file or
``torch.nn.Module`` mapping preprocessed videos (B, 3, T, 224, 224) to one feature vector each. Preprocessing
follows the reference (google-research/frechet_video_distance): bilinear resize to 224 x 224 without a crop,
values in [-1, 1], T = 16 as in the paper; the features are I3D's 400 logits. A module whose ``forward`` takes
StyleGAN-V's flags (``i3d_torchscript.pt``) gets ``rescale=False, resize=False, return_features=True``.

FVD depends on the number of videos (400-d covariances need hundreds), so compare values on equal numbers only.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

I3D_SIZE = (224, 224)
I3D_FLAGS = {"rescale": False, "resize": False, "return_features": True}  # StyleGAN-V TorchScript I3D


def preprocess_i3d(videos: torch.Tensor, size: tuple[int, int] = I3D_SIZE) -> torch.Tensor:
    """videos float (B, T, 3, H, W) in [0, 1] -> (B, 3, T, size) in [-1, 1] (bilinear resize, no crop)."""
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"expected videos (B, T, 3, H, W), got {tuple(videos.shape)}")
    b, t = videos.shape[:2]
    frames = F.interpolate(videos.flatten(0, 1).float(), size=size, mode="bilinear", align_corners=False)
    frames = frames.clamp(0, 1) * 2 - 1
    return frames.view(b, t, 3, *size).permute(0, 2, 1, 3, 4).contiguous()


def _forward_args(module: torch.nn.Module) -> set[str]:
    schema = getattr(module.forward, "schema", None)  # TorchScript methods carry their schema
    if schema is not None:
        return {a.name for a in schema.arguments}
    return set(inspect.signature(module.forward).parameters)


class VideoFeatures:
    """Feature vectors of videos from a video network (I3D for FVD), with the standard I3D preprocessing."""

    def __init__(self, module: torch.nn.Module, device: torch.device | str = "cpu",
                 size: tuple[int, int] = I3D_SIZE):
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.size = size
        args = _forward_args(module)
        self.kwargs = {k: v for k, v in I3D_FLAGS.items() if k in args}

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> VideoFeatures:
        """A TorchScript file (``torch.jit.save``); clear errors for a missing or non-TorchScript file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"I3D weights {path} do not exist (FVD needs a TorchScript I3D file)")
        try:
            module = torch.jit.load(str(path), map_location=torch.device(device))
        except Exception as e:  # torch raises RuntimeError/ValueError variants for non-TorchScript files
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path} is not a TorchScript module (torch.jit.load failed: {reason})") from e
        return cls(module, device)

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, batch_size: int = 8) -> np.ndarray:
        """videos float (N, T, 3, H, W) in [0, 1] -> features float64 (N, D)."""
        out = []
        for chunk in videos.split(batch_size):
            x = preprocess_i3d(chunk.to(self.device), self.size)
            try:
                feats = self.module(x, **self.kwargs)
            except RuntimeError as e:
                raise ValueError(f"the feature network failed on input {tuple(x.shape)} (B, 3, T, H, W); "
                                 f"I3D needs enough frames, the reference uses 16: "
                                 f"{str(e).strip().splitlines()[0]}") from e
            out.append(feats.reshape(feats.shape[0], -1).double().cpu().numpy())
        return np.concatenate(out)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D); N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.atleast_2d(np.cov(features, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between N(mu1, S1) and N(mu2, S2).

    Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the inner matrix is symmetric PSD, so its eigenvalues
    are real and >= 0 (up to rounding, clipped), which avoids the complex parts ``scipy.linalg.sqrtm`` of the
    non-symmetric product picks up on rank-deficient covariances (fewer videos than feature dimensions).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched Gaussian parameters: {mu1.shape}, {sigma1.shape}, {mu2.shape}, "
                         f"{sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(value, 0.0)  # a squared distance: negative only by rounding


def frechet_distance_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def fvd(real: torch.Tensor, fake: torch.Tensor, features: VideoFeatures, batch_size: int = 8) -> float:
    """FVD between real and generated videos float (N, T, 3, H, W) in [0, 1]."""
    return frechet_distance_features(features(real, batch_size), features(fake, batch_size))
