"""A tiny trained Genie (tokenizer run + lam-dynamics run) on tiny real shards, for generation/evaluation tests.

Trained through the real CLI for a handful of steps: the weights are meaningless but real, so every code path
(checkpoint loading, tokenizer, LAM, dynamics, decoding) runs exactly as it does on a real run.
"""

from __future__ import annotations

from pathlib import Path

from modeling.__main__ import main
from tests.modeling_helpers import write_tiny_shards


def _fast(section: str, steps: int) -> list[str]:
    out = []
    for key, value in {"log_every": 1, "warmup_steps": 1, "max_steps": steps, "ckpt_every": steps,
                       "image_every": 10_000}.items():
        out += ["--set", f"{section}.{key}={value}"]
    return out


def train_tiny_genie(root: str | Path, steps: int = 4, n_clips: int = 6, frames: int = 16,
                     extra: list[str] | None = None, height: int = 90, width: int = 160) -> tuple[str, Path]:
    """Write tiny shards under ``root/shards`` and train a tiny Genie; returns (shard pattern, lam-dynamics run).

    ``extra`` adds ``--set`` overrides to both phases (e.g. ``["--set", "dynamics.action_conditioning=token"]``);
    ``height`` x ``width``: the clips' and the models' frame size.
    """
    root = Path(root)
    write_tiny_shards(root / "shards", n_clips=n_clips, frames=frames, clips_per_shard=3, height=height, width=width)
    pattern = str(root / "shards" / "shard-*.tar")
    extra = list(extra or [])
    if (height, width) != (90, 160):
        extra += ["--set", f"tokenizer.frame_height={height}", "--set", f"tokenizer.frame_width={width}"]
    tok, genie = root / "tokenizer", root / "genie"
    if main(["train", "tokenizer", "--shards", pattern, "--config", "tiny", "--out", str(tok),
             *_fast("train_tokenizer", steps), *extra]) != 0:
        raise RuntimeError("tiny tokenizer training failed")
    if main(["train", "lam-dynamics", "--shards", pattern, "--config", "tiny", "--tokenizer", str(tok),
             "--out", str(genie), *_fast("train_lam_dynamics", steps), *extra]) != 0:
        raise RuntimeError("tiny lam-dynamics training failed")
    return pattern, genie
