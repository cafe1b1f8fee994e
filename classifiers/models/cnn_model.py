"""The paper's model family: a ResNet18-style CNN trained from scratch on sampled frames (plain torch).

Genie (Bruce et al. 2024, App. B.1) trained "an 11M parameter ResNet18" as a good/bad classifier; ``ResNet`` is He
et al.'s ResNet18 with one logit (11.2M parameters, ``resnet18`` preset; torchvision is not a dependency). What
differs: each sample stacks two frames half a second apart (``classifiers.features.sample_frames``) so the net sees
motion, as a slideshow of gameplay stills looks like gameplay frame by frame; a clip's score is the mean over its
``samples`` instants. ``augment`` (flips, shifts) is off by default: it did not help on the demo corpus.

``device`` is where the net runs, not part of the model: weights are saved as CPU tensors, so a GPU-trained model
scores on a CPU-only worker. Randomness comes from seeded generators, never torch's global RNG: training twice
gives the same model and leaves other code's RNG state alone.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from classifiers.features import SAMPLES_PER_CLIP, sample_frames
from classifiers.models.base import ClipModel

DEVICES = ("cpu", "cuda")


def default_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    width: int = 64  # channels of the first stage; stages use width * (1, 2, 4, 8) (ResNet18: 64)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per stage (ResNet18: 2, 2, 2, 2)
    in_channels: int = 6  # two RGB frames stacked (see module docstring)
    samples: int = SAMPLES_PER_CLIP  # instants per clip (training examples per clip; score = their mean)
    epochs: int = 10
    batch_size: int = 32  # frame samples per step
    lr: float = 1e-3  # AdamW
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # torch intra-op threads while training/scoring (0: leave torch's setting)
    augment: bool = False  # random horizontal flips and shifts while training (see module docstring)
    max_shift: int = 12  # pixels, for the random shifts
    device: str = dataclasses.field(default_factory=default_device)  # "cpu" or "cuda" (see module docstring)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"CNN device must be one of {DEVICES}, got {self.device!r}")


PRESETS: dict[str, CNNConfig] = {
    "resnet18": CNNConfig(),  # 11.2M parameters, as in the paper
    "small": CNNConfig(width=16, epochs=12),  # 0.7M: minutes on a laptop CPU
    "tiny": CNNConfig(width=4, blocks=(1, 1, 1, 1), epochs=6, batch_size=16),  # tests
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with a single logit: P(good) = sigmoid(logit)."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], w
        for i, n in enumerate(config.blocks):
            c_out = w * 2 ** i
            for j in range(n):
                stages.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(x.mean(dim=(2, 3))).squeeze(-1)


def _init_parameters(net: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default initialisation of every layer (what each ``reset_parameters`` draws), taken from
    ``gen`` in module order instead of the global RNG: the weights are those ``torch.manual_seed(seed)``
    followed by building the net would give, without touching the global state."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                bound = 1 / math.sqrt(m.weight[0].numel())  # 1 / sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # ones, zeros and fresh running statistics: no randomness


def _to_tensor(samples: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 centred on 0."""
    return torch.from_numpy(np.ascontiguousarray(samples)).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


def _augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Flip half the batch left-right and shift it all by a random offset (wrapping): a clip's quality does
    not depend on which way the player runs or exactly where the camera sits."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift:
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy // 2, dx), dims=(2, 3))
    return x


class CNNClipModel(ClipModel):
    family: ClassVar[str] = "cnn"
    file_name: ClassVar[str] = "model.pt"

    def __init__(self, config: CNNConfig | None = None):
        self.config = config or PRESETS["resnet18"]
        if self.config.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("CNN device 'cuda' asked for, but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device 'cpu'")
        self.device = torch.device(self.config.device)
        self.net = self._new_net()

    def _new_net(self) -> ResNet:
        """A freshly initialised net on ``device``: built on the meta device (no memory, no random draws),
        then given real CPU storage and the seeded initial weights (``_init_parameters``), then moved."""
        with torch.device("meta"):
            net = ResNet(self.config)
        net.to_empty(device="cpu")
        _init_parameters(net, torch.Generator().manual_seed(self.config.seed))
        return net.to(self.device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        self.check_frames(frames)
        return sample_frames(frames, self.config.samples)

    def _threads(self):
        return _Threads(self.config.threads)

    def fit(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        c = self.config
        inputs = np.asarray(inputs)  # (N, S, H, W, C)
        targets = np.asarray(targets, dtype=np.float32)
        n, s = inputs.shape[:2]
        flat = inputs.reshape(n * s, *inputs.shape[2:])
        flat_y = torch.from_numpy(np.repeat(targets, s)).to(self.device)
        pos = float(targets.sum())
        pos_weight = torch.tensor((len(targets) - pos) / pos if pos else 1.0, device=self.device)
        gen = torch.Generator().manual_seed(c.seed)  # shuffling and augmentation (CPU; batches move after)
        self.net = self._new_net()
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps = c.epochs * max(1, -(-len(flat) // c.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=steps)
        with self._threads():
            self.net.train()
            for _ in range(c.epochs):
                order = torch.randperm(len(flat), generator=gen)
                for i in range(0, len(flat), c.batch_size):
                    idx = order[i:i + c.batch_size]
                    if len(idx) < 2:  # BatchNorm needs >1 sample
                        continue
                    x = _to_tensor(flat[idx.numpy()])
                    if c.augment:
                        x = _augment(x, c.max_shift, gen)
                    logits = self.net(x.to(self.device))
                    loss = F.binary_cross_entropy_with_logits(logits, flat_y[idx.to(self.device)],
                                                              pos_weight=pos_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
        self.net.eval()

    @torch.no_grad()
    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs)
        n, s = inputs.shape[:2]
        self.net.eval()
        with self._threads():
            flat = inputs.reshape(n * s, *inputs.shape[2:])
            probs = [torch.sigmoid(self.net(_to_tensor(flat[i:i + 64]).to(self.device))).cpu()
                     for i in range(0, len(flat), 64)]
        p = torch.cat(probs).reshape(n, s).mean(dim=1) if probs else torch.zeros(0)
        return p.double().numpy()

    def config_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.config)
        d["blocks"] = list(d["blocks"])
        return d

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CNNClipModel:
        config = dict(config)
        config["blocks"] = tuple(config.get("blocks", (2, 2, 2, 2)))
        return cls(CNNConfig(**config))

    def save(self, directory: Path) -> None:
        """The state dict as CPU tensors, whatever the device: the file loads anywhere."""
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save(state, Path(directory) / self.file_name)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> CNNClipModel:
        """The saved net on this machine's default device; the training device in ``config`` is ignored
        (a model trained on a GPU must load on a CPU-only worker)."""
        model = cls.from_config({**config, "device": default_device()})
        state = torch.load(Path(directory) / cls.file_name, map_location="cpu", weights_only=True)
        model.net.load_state_dict(state)
        model.net.eval()
        return model


class _Threads:
    """Temporarily set torch's intra-op thread count (0: leave it)."""

    def __init__(self, n: int):
        self.n, self.old = n, None

    def __enter__(self):
        if self.n:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.old is not None:
            torch.set_num_threads(self.old)
