"""Run directories and checkpoints: what a training run leaves behind, and how to load models back from it.

Layout of a run directory::

    config.json              {"genie": GenieConfig.to_dict(), "phase": "tokenizer" | "lam-dynamics" | "dynamics",
                              "tokenizer_run": <tokenizer run dir, lam-dynamics and dynamics runs>,
                              "init_run": <the lam-dynamics run a dynamics run started from>}
    checkpoints/latest.pt    the newest checkpoint (written to a temp name, then renamed: never half-written)
    checkpoints/step-000005000.pt ...  numbered copies (the newest ``keep`` are kept)
    tb/                      TensorBoard event files

A checkpoint holds the model state dicts, the optimizer state, the step, and the data state (batches consumed,
the data seed and layout, and every loader worker's stream position; ``modeling.data.StreamPosition``) so that a
resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from modeling.configs import GenieConfig
from modeling.dynamics import DynamicsModel
from modeling.lam import LatentActionModel, lam_from_state
from modeling.tokenizer import VideoTokenizer

PHASE_TOKENIZER = "tokenizer"
PHASE_LAM = "lam"  # the LAM alone on pixels (no tokenizer, no dynamics): labels for behaviour cloning
PHASE_LAM_DYNAMICS = "lam-dynamics"
PHASE_DYNAMICS = "dynamics"  # dynamics-only training on token shards, from a lam-dynamics run (LAM frozen)
PHASES = (PHASE_TOKENIZER, PHASE_LAM, PHASE_LAM_DYNAMICS, PHASE_DYNAMICS)


def write_run_config(run_dir: str | Path, cfg: GenieConfig, phase: str, tokenizer_run: str | None = None,
                     init_run: str | None = None) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"genie": cfg.to_dict(), "phase": phase}
    if tokenizer_run is not None:
        doc["tokenizer_run"] = str(Path(tokenizer_run).resolve())
    if init_run is not None:
        doc["init_run"] = str(Path(init_run).resolve())
    (run_dir / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True))


def read_run_config(run_dir: str | Path) -> tuple[GenieConfig, str, str | None]:
    """(config, phase, tokenizer run dir or None) of a run; clear errors for a directory that is not a run."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {path} does not exist")
    doc = json.loads(path.read_text())
    if doc.get("phase") not in PHASES:
        raise ValueError(f"{path}: phase must be one of {PHASES}, got {doc.get('phase')!r}")
    return GenieConfig.from_dict(doc["genie"]), doc["phase"], doc.get("tokenizer_run")


def checkpoint_path(run_dir: str | Path, which: str | int = "latest") -> Path:
    name = "latest.pt" if which == "latest" else f"step-{int(which):09d}.pt"
    return Path(run_dir) / "checkpoints" / name


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], step: int, keep: int = 3,
                    numbered: bool = True) -> Path:
    """Write ``latest.pt`` atomically (and a numbered copy), pruning numbered copies beyond ``keep``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    latest = checkpoint_path(run_dir)
    tmp = latest.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    if numbered:
        numbered_path = checkpoint_path(run_dir, step)
        numbered_path.unlink(missing_ok=True)
        os.link(tmp, numbered_path)  # a second name for the same bytes: no second write
        for old in sorted(ckpt_dir.glob("step-*.pt"))[:-keep] if keep > 0 else []:
            old.unlink()
    os.replace(tmp, latest)
    return latest


def load_checkpoint(run_dir: str | Path, which: str | int = "latest", map_location: Any = "cpu") -> dict[str, Any]:
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


def load_tokenizer(run_dir: str | Path, map_location: Any = "cpu", which: str | int = "latest") -> VideoTokenizer:
    """The trained tokenizer of a tokenizer run, or the one a lam-dynamics run was trained on; eval mode."""
    cfg, phase, tokenizer_run = read_run_config(run_dir)
    if phase in (PHASE_LAM_DYNAMICS, PHASE_DYNAMICS):
        if tokenizer_run is None:
            raise ValueError(f"{run_dir}/config.json does not name its tokenizer run")
        return load_tokenizer(tokenizer_run, map_location)
    if phase == PHASE_LAM:
        raise ValueError(f"{run_dir} is a {PHASE_LAM!r} run: it holds a LAM, no tokenizer")
    model = VideoTokenizer(cfg.tokenizer)
    model.load_state_dict(load_checkpoint(run_dir, which, map_location)["models"]["tokenizer"])
    return model.to(map_location if isinstance(map_location, str | torch.device) else "cpu").eval()


def load_lam(run_dir: str | Path, map_location: Any = "cpu", which: str | int = "latest"
             ) -> tuple[LatentActionModel, GenieConfig]:
    """(lam, config) of any run that trained a LAM (lam, lam-dynamics or dynamics), in eval mode."""
    cfg, phase, _ = read_run_config(run_dir)
    if phase == PHASE_TOKENIZER:
        raise ValueError(f"{run_dir} is a {phase!r} run: it has no LAM (train a {PHASE_LAM!r} or "
                         f"{PHASE_LAM_DYNAMICS!r} run)")
    lam = lam_from_state(cfg.lam, load_checkpoint(run_dir, which, map_location)["models"]["lam"])
    cfg.lam = lam.cfg  # the config the saved weights fit (``legacy_config``: a LAM without conv stem or pixel head)
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    return lam.to(device).eval(), cfg


def load_genie(run_dir: str | Path, map_location: Any = "cpu", which: str | int = "latest"
               ) -> tuple[VideoTokenizer, LatentActionModel, DynamicsModel, GenieConfig]:
    """(tokenizer, lam, dynamics, config) of a lam-dynamics (or dynamics) run, in eval mode on ``map_location``."""
    cfg, phase, _ = read_run_config(run_dir)
    if phase not in (PHASE_LAM_DYNAMICS, PHASE_DYNAMICS):
        raise ValueError(f"{run_dir} is a {phase!r} run; load_genie needs a {PHASE_LAM_DYNAMICS!r} run")
    tokenizer = load_tokenizer(run_dir, map_location)
    state = load_checkpoint(run_dir, which, map_location)["models"]
    lam, dynamics = lam_from_state(cfg.lam, state["lam"]), DynamicsModel(cfg.dynamics)
    cfg.lam = lam.cfg
    dynamics.load_state_dict(state["dynamics"])
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    return tokenizer, lam.to(device).eval(), dynamics.to(device).eval(), cfg

