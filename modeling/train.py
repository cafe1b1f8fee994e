"""Training loops for the two phases of the Genie paper: the tokenizer first, then LAM + dynamics together.

    python -m modeling train tokenizer    --shards 'run/shards/*.tar' --config coinrun --out runs/tok
    python -m modeling train lam          --shards 'run/shards/*.tar' --config coinrun --out runs/lam   # LAM alone
    python -m modeling train lam-dynamics --shards 'run/shards/*.tar' --config coinrun --tokenizer runs/tok \
        --out runs/genie
    torchrun --nproc_per_node 8 -m modeling train ...          # DDP: one process per GPU

A run: AdamW (decay on matrices only), warm-up and cosine decay, gradient clipping, the run's precision policy
(``modeling.precision``), DDP under ``torchrun``, VQ dead-code resets, TensorBoard and a readable ``metrics.jsonl``.
Checkpoints resume EXACTLY (model, optimizer, step, every loader worker's stream position: ``modeling.data``);
the data layout is saved and a change warned about (``resume_data``); rerunning a command resumes its run. In
lam-dynamics the tokenizer is frozen and dynamics is conditioned on the LAM's action indices (no gradient into
the LAM), so one optimizer trains both on the sum of their losses; ``lam`` trains the LAM alone on pixels (for
``modeling.bc``) at a fraction of the cost.
"""

from __future__ import annotations

import gc
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from modeling import lam_check
from modeling.checkpoint import (
    PHASE_DYNAMICS,
    PHASE_LAM,
    PHASE_LAM_DYNAMICS,
    PHASE_TOKENIZER,
    PHASES,
    checkpoint_path,
    load_checkpoint,
    load_genie,
    load_tokenizer,
    read_run_config,
    save_checkpoint,
    write_run_config,
)
from modeling.configs import GenieConfig, TrainConfig, apply_overrides, get_config
from modeling.data import LoaderConfig, check_first_clip, clip_windows, to_float_video
from modeling.dynamics import DynamicsModel
from modeling.lam import LatentActionModel
from modeling.metrics import psnr
from modeling.precision import autocast as precision_autocast
from modeling.progress import finished_line, interrupted_line, progress_line
from modeling.schedule import lr_at
from modeling.st_transformer import STTransformer
from modeling.token_shards import TokenWindowDataset, token_windows
from modeling.tokenizer import VideoTokenizer
from modeling.vq import VectorQuantizer
from schemas import shard_source
from schemas.cli import UsageError
from schemas.shard_source import ShardError


class TokenizerObjective(nn.Module):
    """The tokenizer phase as one module (what DDP wraps): video -> loss and metrics."""

    def __init__(self, cfg: GenieConfig):
        super().__init__()
        self.tokenizer = VideoTokenizer(cfg.tokenizer)

    def forward(self, inputs: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        video = to_float_video(inputs["video"])
        out = self.tokenizer(video)
        out["psnr"] = psnr(out["recon"].detach(), video)
        out["video"] = video
        return out

    def trained(self) -> dict[str, nn.Module]:
        return {"tokenizer": self.tokenizer}

    def reset_dead_codes(self, optimizer: torch.optim.Optimizer, step: int = 0) -> int:
        return reset_codes(self.tokenizer.vq, optimizer).numel()


def lam_results(lam_out: dict[str, torch.Tensor], video: torch.Tensor) -> dict[str, torch.Tensor]:
    """The LAM's loss, logged metrics and outputs, as the lam and lam-dynamics phases both report them."""
    return {
        "loss": lam_out["loss"],
        "lam_loss": lam_out["recon_loss"],
        "lam_vq_loss": lam_out["vq_loss"],
        "lam_psnr": psnr(lam_out["pred"].detach(), video[:, 1:]),
        "lam_perplexity": lam_out["perplexity"],
        "lam_codes_used": lam_out["codes_used"],
        "pred": lam_out["pred"],
        "actions": lam_out["actions"],
        "video": video,
    }


class LamObjective(nn.Module):
    """The LAM alone on pixels: video -> its loss and metrics (no tokenizer, no dynamics model)."""

    def __init__(self, cfg: GenieConfig):
        super().__init__()
        self.lam = LatentActionModel(cfg.lam)

    def forward(self, inputs: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        video = to_float_video(inputs["video"])
        # true actions reach the LAM only for its optional weak supervision (lam.action_head_fraction; default off)
        return lam_results(self.lam(video, inputs.get("actions"), inputs.get("start")), video)

    def trained(self) -> dict[str, nn.Module]:
        return {"lam": self.lam}

    def reset_dead_codes(self, optimizer: torch.optim.Optimizer, step: int = 0) -> int:
        """Dead codes re-seeded; at step ``lam.prune_at`` (after that step's update) the codebook pruned to
        ``lam.num_actions`` first."""
        if self.lam.cfg.train_codes and step >= self.lam.cfg.prune_at:
            self.prune_codes(optimizer)
        return reset_codes(self.lam.vq, optimizer, self.lam.live).numel()

    def prune_codes(self, optimizer: torch.optim.Optimizer) -> None:
        """Prune the codebook now (``LatentActionModel.prune_codes``; nothing if done), its optimizer rows
        reordered with it: also at a run's last step when its wall budget ends it before ``lam.prune_at``."""
        order = self.lam.prune_codes() if self.lam.cfg.train_codes else None
        if order is not None:
            reorder_optimizer_rows(optimizer, self.lam.vq.codebook.weight, order)


class LamDynamicsObjective(nn.Module):
    """LAM + dynamics co-training on a frozen tokenizer: video -> summed loss and metrics."""

    def __init__(self, cfg: GenieConfig, tokenizer: VideoTokenizer, seed: int, rank: int):
        super().__init__()
        self.lam = LatentActionModel(cfg.lam)
        self.dynamics = DynamicsModel(cfg.dynamics)
        self.tokenizer = [tokenizer.eval().requires_grad_(False)]  # a list: not a submodule, not saved, not DDP'd
        self.seed, self.rank = seed, rank

    def forward(self, inputs: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        video = to_float_video(inputs["video"])
        lam_out = self.lam(video)
        with torch.no_grad():
            tokens = self.tokenizer[0].encode(video)
        # Masking randomness is a function of (seed, micro-batch index, rank): identical after resume.
        gen = torch.Generator(device=video.device).manual_seed((self.seed * 1_000_003 + micro_step) * 1009 + self.rank)
        dyn_out = self.dynamics.loss(tokens, lam_out["actions"], generator=gen)
        return {
            **lam_results(lam_out, video),
            "loss": lam_out["loss"] + dyn_out["loss"],
            "dynamics_loss": dyn_out["loss"].detach(),
            "dynamics_acc": dyn_out["acc"],
            "tokens": tokens,
            "dynamics_predicted": dyn_out["predicted"],
        }

    def trained(self) -> dict[str, nn.Module]:
        return {"lam": self.lam, "dynamics": self.dynamics}

    def reset_dead_codes(self, optimizer: torch.optim.Optimizer, step: int = 0) -> int:
        """Reset dead LAM codes, and make the dynamics model forget those action indices: a reset code now
        stands for other transitions, and the dynamics row learned for its old meaning would contradict it."""
        dead = reset_codes(self.lam.vq, optimizer)
        if dead.numel():
            self.dynamics.forget_actions(dead)
            forget_optimizer_rows(optimizer, self.dynamics.action_emb.weight, dead)
        return dead.numel()


class DynamicsObjective(nn.Module):
    """Dynamics-only training on token shards with pre-extracted latent actions (``extract-tokens --lam``).

    Starts from a lam-dynamics run: its LAM is kept (frozen, saved with the run so ``load_genie`` works) and
    its dynamics model is trained further without decoding video or running the tokenizer / LAM.
    """

    def __init__(self, cfg: GenieConfig, lam: LatentActionModel, dynamics: DynamicsModel, seed: int, rank: int):
        super().__init__()
        self.dynamics = dynamics
        self.lam = [lam.eval().requires_grad_(False)]  # not a submodule: frozen, saved separately
        self.seed, self.rank = seed, rank

    def forward(self, inputs: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        # latent_actions[:, k] is the action after frame k (token_shards): the T-1 that produced frames 2..T.
        tokens, latent = inputs["tokens"], inputs["latent_actions"][:, :-1]
        if (latent < 0).any():
            raise ShardError("token shards lack latent actions: extract them with `extract-tokens --lam <run>`")
        gen = torch.Generator(device=tokens.device).manual_seed((self.seed * 1_000_003 + micro_step) * 1009
                                                                 + self.rank)
        out = self.dynamics.loss(tokens, latent, generator=gen)
        return {"loss": out["loss"], "dynamics_acc": out["acc"], "mask_fraction": out["mask_fraction"]}

    def trained(self) -> dict[str, nn.Module]:
        return {"dynamics": self.dynamics}

    def reset_dead_codes(self, optimizer: torch.optim.Optimizer, step: int = 0) -> int:
        return 0  # the LAM is frozen: its codes keep their meaning


def reset_codes(vq: VectorQuantizer, optimizer: torch.optim.Optimizer, live: int | None = None) -> torch.Tensor:
    """Reset ``vq``'s dead codes (among its first ``live``) and their optimizer state; returns the reset indices."""
    dead = vq.reset_dead_codes(live)
    if dead.numel():
        forget_optimizer_rows(optimizer, vq.codebook.weight, dead)
    return dead


def forget_optimizer_rows(optimizer: torch.optim.Optimizer, param: torch.Tensor, rows: torch.Tensor) -> None:
    """Zero AdamW's moments for ``rows`` of ``param``: a re-initialised row must not keep its old momentum."""
    state = optimizer.state.get(param, {})
    for name in ("exp_avg", "exp_avg_sq"):
        if name in state:
            state[name][rows] = 0


def reorder_optimizer_rows(optimizer: torch.optim.Optimizer, param: torch.Tensor, order: torch.Tensor) -> None:
    """Reorder AdamW's moments for ``param``'s rows as its rows were (row i is old row ``order[i]``)."""
    state = optimizer.state.get(param, {})
    for name in ("exp_avg", "exp_avg_sq"):
        if name in state:
            state[name].copy_(state[name][order.to(state[name].device)])


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick the device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        d = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        if use_cuda:
            torch.cuda.set_device(d.local_rank)
            return d, torch.device("cuda", d.local_rank)
        return d, torch.device("cpu")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Distributed(), torch.device(device)


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Recompute every ST block in backward (or not): the presets that fit one GPU only with it turn it on."""
    for module in model.modules():
        if isinstance(module, STTransformer):
            module.checkpointing = enabled


def make_optimizer(modules: dict[str, nn.Module], tcfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (not on norms, biases, codebooks)."""
    decay, no_decay = [], []
    for module in modules.values():
        codebooks = {id(m.codebook.weight) for m in module.modules() if isinstance(m, VectorQuantizer)}
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and id(p) not in codebooks else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tcfg.lr, betas=tuple(tcfg.betas), fused=device.type == "cuda")


def _image_grid(rows: list[torch.Tensor], max_frames: int = 8) -> torch.Tensor:
    """rows of videos (T, 3, H, W) in [0, 1] -> one image (3, rows*H, frames*W) for TensorBoard / PNG."""
    lines = [torch.cat(list(r[:max_frames].float().cpu().clamp(0, 1)), dim=2) for r in rows]
    width = max(line.shape[2] for line in lines)
    lines = [torch.nn.functional.pad(line, (0, width - line.shape[2])) for line in lines]
    return torch.cat(lines, dim=1)


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def resolve_config(phase: str, out: str | Path, config_name: str | None, overrides: dict[str, Any] | None,
                   tokenizer_run: str | None, init_run: str | None = None) -> tuple[GenieConfig, str | None, bool]:
    """(config, tokenizer run, resuming) for a run directory: an existing run's own config wins."""
    if phase not in PHASES:
        raise UsageError(f"unknown phase {phase!r}; phases are {PHASES}")
    if phase != PHASE_DYNAMICS and init_run:
        raise UsageError(f"train {phase} takes no --init: only train dynamics starts from a lam-dynamics run")
    if phase in (PHASE_TOKENIZER, PHASE_DYNAMICS) and tokenizer_run:
        raise UsageError(f"train {phase} takes no --tokenizer: "
                         + ("it trains one" if phase == PHASE_TOKENIZER else "its --init run names its tokenizer"))
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file, not a run directory")
    if (Path(out) / "config.json").is_file():
        cfg, saved_phase, saved_tok = read_run_config(out)
        if saved_phase != phase:
            raise ValueError(f"{out} is a {saved_phase!r} run, not {phase!r}")
        if overrides:
            raise UsageError(f"{out} already exists: its config.json is used as is, --set is not allowed (use a new "
                             "--out to train with other settings)")
        return cfg, saved_tok, (Path(out) / "checkpoints" / "latest.pt").is_file()
    if phase == PHASE_DYNAMICS:
        if not init_run:
            raise UsageError("train dynamics needs --init <lam-dynamics run dir>")
        init_cfg, init_phase, init_tok = read_run_config(init_run)
        if init_phase not in (PHASE_LAM_DYNAMICS, PHASE_DYNAMICS):
            raise ValueError(f"--init {init_run} is a {init_phase!r} run, not a lam-dynamics run")
        return apply_overrides(init_cfg, overrides), init_tok, False
    if phase == PHASE_LAM and tokenizer_run:
        raise UsageError("train lam takes no --tokenizer: the LAM works on pixels (lam-dynamics uses one)")
    cfg = get_config(config_name or "tiny", overrides)
    if cfg.lam.train_codes and phase != PHASE_LAM:
        raise UsageError("lam.train_codes prunes the codebook during a `train lam` run; lam-dynamics co-training "
                         "keys the dynamics model on the final codes from the start: set lam.train_codes=0")
    if phase == PHASE_LAM_DYNAMICS:
        if not tokenizer_run:
            raise UsageError("train lam-dynamics needs --tokenizer <tokenizer run dir>")
        tok_cfg, tok_phase, _ = read_run_config(tokenizer_run)
        if tok_phase != PHASE_TOKENIZER:
            raise ValueError(f"--tokenizer {tokenizer_run} is a {tok_phase!r} run, not a tokenizer run")
        cfg.tokenizer = tok_cfg.tokenizer  # the frozen tokenizer decides vocabulary, grid, window, frame size
        cfg.precision = tok_cfg.precision  # and the precision its tokens are made in, here and at inference
        cfg.sync()
    if cfg.lam.train_codes and cfg.lam.prune_at > cfg.train_lam_dynamics.max_steps:
        raise UsageError(f"lam.prune_at = {cfg.lam.prune_at} is after the run's last step "
                         f"(train_lam_dynamics.max_steps = {cfg.train_lam_dynamics.max_steps}): the LAM would end "
                         f"with {cfg.lam.train_codes} codes, not lam.num_actions = {cfg.lam.num_actions}")
    return cfg, tokenizer_run, False


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the message says where a rerun resumes from; ``is_main`` whether to print it (under
    torchrun every rank is interrupted, rank 0 speaks)."""

    def __init__(self, message: str, is_main: bool = True):
        super().__init__(message)
        self.is_main = is_main


def _finished(out: Path, max_steps: int, until_step: int | None) -> str | None:
    """What to say when the run in ``out`` has nothing left to train, or None. Reads only the checkpoint's step
    (memory-mapped: the weights stay on disk)."""
    step = torch.load(checkpoint_path(out), map_location="cpu", mmap=True, weights_only=False)["step"]
    if step >= max_steps:
        return f"already complete at step {step}: {out}"
    if until_step is not None and step >= until_step:
        return f"already at step {step} (--until-step {until_step}; the run ends at {max_steps}): {out}"
    return None


def _last_metrics(out: Path) -> dict[str, float]:
    """The last line of a run's metrics.jsonl (empty when it has none)."""
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def _past(deadline: float, ddp, device) -> bool:
    """Whether ``deadline`` has passed, agreed by all ranks (rank 0's clock decides, so all stop together)."""
    passed = torch.tensor([time.perf_counter() >= deadline], dtype=torch.int32, device=device)
    if ddp.world > 1:
        dist.broadcast(passed, 0)
    return bool(passed.item())


def _check_limits(until_step: int | None, max_wall_s: float | None, num_workers: int | None,
                  device: str | None) -> None:
    """The command line's limits, refused before anything is read or written."""
    if until_step is not None and until_step < 1:
        raise UsageError(f"--until-step must be >= 1, got {until_step}")
    if max_wall_s is not None and max_wall_s < 0:
        raise UsageError(f"--max-minutes must be >= 0, got {max_wall_s / 60:g}")
    if num_workers is not None and num_workers < 0:
        raise UsageError(f"--num-workers must be >= 0, got {num_workers}")
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")


def _check_data(phase: str, urls: list[str], cfg: GenieConfig) -> None:
    """The shards must fit the models: clips of the config's frame size, or token shards of its tokenizer."""
    if phase != PHASE_DYNAMICS:
        check_first_clip(urls, cfg.tokenizer.num_frames, cfg.frame_size)
    else:  # token shards of another tokenizer are refused here, before any model is built
        TokenWindowDataset(urls[:1], LoaderConfig(window=cfg.tokenizer.num_frames), token_grid=cfg.dynamics.token_grid,
                           codebook_size=cfg.dynamics.vocab_size).check_first_sample()


def build_objective(phase: str, cfg: GenieConfig, tokenizer_run: str | None, init_run: str | None,
                    seed: int, rank: int, device: torch.device) -> nn.Module:
    """The phase's objective on ``device``, its models freshly initialised from ``seed`` (or, for the dynamics
    phase, loaded from the ``init_run`` it continues)."""
    torch.manual_seed(seed)  # identical initial weights on every rank and on every fresh start
    if phase == PHASE_TOKENIZER:
        objective: nn.Module = TokenizerObjective(cfg)
    elif phase == PHASE_LAM:
        objective = LamObjective(cfg)
    elif phase == PHASE_LAM_DYNAMICS:
        objective = LamDynamicsObjective(cfg, load_tokenizer(tokenizer_run, map_location=device), seed, rank)
    else:
        _, lam, dynamics, _ = load_genie(init_run, map_location=device)
        objective = DynamicsObjective(cfg, lam, dynamics.train(), seed, rank)
    return objective.to(device)


class TrainingRun:
    """One phase training in one run directory: the models, optimizer, data stream and the step they are at.

    ``step`` runs one optimizer step (its micro-batches), ``report`` logs, ``checkpoint`` saves what an exact
    resume needs, and ``run`` loops them to the last step; ``train`` sets it up from the command line.
    """

    def __init__(self, phase: str, cfg: GenieConfig, out: Path, objective: nn.Module, ddp: Distributed,
                 device: torch.device, num_workers: int, log=print):
        self.phase, self.cfg, self.out, self.objective, self.ddp, self.device, self.log = (
            phase, cfg, out, objective, ddp, device, log)
        self.tcfg = cfg.train_tokenizer if phase == PHASE_TOKENIZER else cfg.train_lam_dynamics
        set_activation_checkpointing(objective, self.tcfg.activation_checkpointing)
        self.trained = objective.trained()
        self.optimizer = make_optimizer(self.trained, self.tcfg, device)
        self.accum = self.tcfg.grad_accum
        self.micro_batch = self.tcfg.batch_size // (ddp.world * self.accum)
        self.workers = num_workers
        self.layout = {"world": ddp.world, "num_workers": num_workers, "shuffle_buffer": self.tcfg.shuffle_buffer,
                       "micro_batch": self.micro_batch}
        self.step_count, self.data_seed, self.total_resets = 0, self.tcfg.seed, 0
        self.positions: dict[int, dict[str, Any]] | None = {}  # worker -> position of its last consumed batch
        self.replayed = False  # the loader replays a stream whose positions the checkpoint did not hold
        self.saved_step: int | None = None  # what a rerun would resume from
        self.vq_names = [(name, q) for name, m in self.trained.items() for q in m.modules()
                         if isinstance(q, VectorQuantizer)]
        self.model: nn.Module = objective
        self.writer = None
        self.last_log, self.windows_since = 0.0, 0  # windows_per_s: windows since the last report, over its time

    def resume(self) -> None:
        """Continue from the run's latest checkpoint: weights, optimizer, step and data stream."""
        state = load_checkpoint(self.out, map_location=self.device)
        for name, module in self.trained.items():
            module.load_state_dict(state["models"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = self.saved_step = state["step"]
        self.total_resets = state.get("dead_code_resets", 0)
        self.data_seed, self.positions = resume_data(state["data"], self.layout, self.ddp.rank, self.log)
        self.log(f"resumed {self.out} at step {self.step_count}")
        # A checkpoint without positions is replayed by the loader; its positions are complete again (and saved)
        # once every worker has delivered a batch.
        self.replayed = self.positions is None

    def start(self, urls: list[str]):
        """Wrap the model (compile, DDP), open the TensorBoard writer and return the data stream from the step
        the run is at."""
        if self.tcfg.compile:
            self.model = torch.compile(self.model)
        if self.ddp.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if self.phase == PHASE_DYNAMICS:
            make_loader: Any = token_windows
            extra = {"token_grid": self.cfg.dynamics.token_grid, "codebook_size": self.cfg.dynamics.vocab_size}
        else:
            make_loader, extra = clip_windows, {"frame_size": self.cfg.frame_size}
        loader = make_loader(urls, LoaderConfig(
            window=self.cfg.tokenizer.num_frames, batch_size=self.micro_batch, shuffle=True, resampled=True,
            seed=self.data_seed, shuffle_buffer=self.tcfg.shuffle_buffer, num_workers=self.workers,
            start_batch=self.step_count * self.accum, drop_last=True, pin_memory=self.device.type == "cuda"),
            resume=self.positions, **extra)
        self.positions = dict(self.positions or {})
        if self.ddp.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tb"))
        self.last_log = time.perf_counter()
        return iter(loader)

    def step(self, data_iter, autocast) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor, float]:
        """One optimizer step over ``grad_accum`` micro-batches: (last result, its inputs, grad norm, lr); the
        norm stays a tensor, read only when a step is reported (reading it waits for the device)."""
        lr = lr_at(self.step_count, self.tcfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(self.accum):
            batch = next(data_iter)
            self.positions[batch["position"]["worker"]] = batch["position"]
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
            # DDP all-reduces gradients only on the last micro-batch of a step.
            sync = self.model.no_sync() if self.ddp.world > 1 and micro < self.accum - 1 else nullcontext()
            with sync:
                with autocast:
                    result = self.model(inputs, self.step_count * self.accum + micro)
                loss = result["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step_count}")
                (loss / self.accum).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for m in self.trained.values() for p in m.parameters()],
                                                   self.tcfg.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        self.total_resets += self.objective.reset_dead_codes(self.optimizer, self.step_count)
        self.windows_since += self.micro_batch * self.ddp.world * self.accum
        return result, inputs, grad_norm, lr

    def report(self, result: dict[str, Any], lr: float, grad_norm: torch.Tensor, stop: int, first_step: int,
               started: float) -> dict[str, float]:
        """The step's scalar metrics, written to TensorBoard and metrics.jsonl and logged (rank 0)."""
        now = time.perf_counter()
        metrics = {k: float(v.detach().float().mean()) for k, v in result.items() if torch.is_tensor(v) and v.ndim == 0}
        metrics.update(step=self.step_count, lr=lr, grad_norm=float(grad_norm), dead_code_resets=self.total_resets,
                       windows_per_s=self.windows_since / max(now - self.last_log, 1e-9))
        for name, vq in self.vq_names:
            metrics[f"{name}_code_usage"] = vq.usage_fraction()
        self.last_log, self.windows_since = now, 0
        if self.ddp.is_main:
            for k, v in metrics.items():
                if k != "step":
                    self.writer.add_scalar(f"{self.phase}/{k}", v, self.step_count)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics, sort_keys=True) + "\n")
            self.log(progress_line(self.step_count, stop, metrics["loss"], self.step_count - first_step,
                                   now - started))
            self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in sorted(metrics.items())))
        return metrics

    def checkpoint(self) -> None:
        """Save the models, optimizer, step and every rank's loader positions (rank 0 writes them all)."""
        complete = not self.replayed or len(self.positions) == max(self.workers, 1)
        ranks = [self.positions if complete else None]
        if self.ddp.world > 1:  # each rank's loader has its own positions; rank 0 saves them all
            ranks = [None] * self.ddp.world
            dist.all_gather_object(ranks, self.positions if complete else None)
        if self.ddp.is_main:
            models = {n: m.state_dict() for n, m in self.trained.items()}
            if self.phase == PHASE_DYNAMICS:
                models["lam"] = self.objective.lam[0].state_dict()  # frozen, kept so the run loads as a whole Genie
            data = {"batches": self.step_count * self.accum, "seed": self.data_seed, **self.layout,
                    "positions": None if None in ranks else ranks}
            state = {"models": models, "optimizer": self.optimizer.state_dict(), "step": self.step_count,
                     "data": data, "config": self.cfg.to_dict(), "phase": self.phase,
                     "dead_code_resets": self.total_resets}
            save_checkpoint(self.out, state, self.step_count, keep=self.tcfg.keep_checkpoints)
        self.saved_step = self.step_count

    def release_process_group(self) -> None:
        """Drop the DDP wrapper, then destroy the process group. DDP's Reducer holds the group: freed after
        ``destroy_process_group``, it would destroy the group itself, with the GIL held, and gloo's destructor
        joins a worker thread that may still be freeing the last work's Python tensors and waits for the GIL:
        a deadlock at exit (a rank hung this way under load). Freed first, the group dies in
        ``destroy_process_group``, which releases the GIL while gloo's threads finish."""
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            self.model = self.model.module
        gc.collect()  # anything else left holding the Reducer, in a cycle, goes now too
        dist.destroy_process_group()

    def run(self, urls: list[str], until_step: int | None, max_wall_s: float | None) -> dict[str, float]:
        """Train to ``until_step`` (or the last step, or the wall budget); the metrics of the last step."""
        tcfg, main = self.tcfg, self.ddp.is_main
        data_iter = self.start(urls)
        autocast = precision_autocast(self.cfg.precision, self.device)
        stop = min(tcfg.max_steps, until_step if until_step is not None else tcfg.max_steps)
        metrics: dict[str, float] = {}
        deadline = None if max_wall_s is None else time.perf_counter() + max_wall_s
        started, first_step = time.perf_counter(), self.step_count
        try:
            while self.step_count < stop:
                result, inputs, grad_norm, lr = self.step(data_iter, autocast)
                step = self.step_count
                if deadline is not None and _past(deadline, self.ddp, self.device):
                    stop = step  # the wall budget is spent: finish this step as the last one (log, checkpoint)
                    if isinstance(self.objective, LamObjective):  # the LAM it leaves has its final codes
                        self.objective.prune_codes(self.optimizer)
                if step % tcfg.log_every == 0 or step == stop or step == 1:
                    metrics = self.report(result, lr, grad_norm, stop, first_step, started)
                if main and self.phase != PHASE_DYNAMICS and (step % tcfg.image_every == 0 or step == stop):
                    _log_images(self.writer, self.out, self.phase, self.objective, result, result["video"], step)
                if main:  # every lam.check_every steps: does the LAM's decoder need its code (lam_check.py)
                    lam_check.after_step(self.objective, result, inputs, step, self.out, self.log)
                if step % tcfg.ckpt_every == 0 or step == stop:
                    self.checkpoint()
        except KeyboardInterrupt:
            raise TrainingInterrupted(interrupted_line(self.step_count, self.saved_step), main) from None
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.ddp.world > 1:
                dist.barrier()
                self.release_process_group()
        if main:
            self.log(finished_line(self.out, self.step_count - first_step, time.perf_counter() - started,
                                   self.step_count, tcfg.max_steps))
        return metrics


def train(phase: str, shards: str | list[str], out: str | Path, config_name: str | None = "tiny",
          overrides: dict[str, Any] | None = None, tokenizer_run: str | None = None, until_step: int | None = None,
          device: str | None = None, num_workers: int | None = None, init_run: str | None = None,
          log=print, max_wall_s: float | None = None) -> dict[str, float]:
    """Train (or resume) one phase into run directory ``out``; stops at ``until_step`` or the config's max_steps.

    Returns the metrics of the last step. ``until_step`` stops early WITHOUT changing the schedule, so a run
    stopped and resumed follows exactly the uninterrupted run. ``max_wall_s`` does the same once that many
    seconds of training steps have passed (a fixed compute budget, e.g. benchmarks/coinrun_cpu.py): the step
    it ends on is logged and checkpointed like the last one. A run that has already reached its last step (or
    ``until_step``) is left as it is.

    Everything that can be checked before training is checked before the run directory is created or changed
    (UsageError, or the data's own errors), so a mistaken command leaves nothing behind to trip the next one.
    """
    out = Path(out)
    _check_limits(until_step, max_wall_s, num_workers, device)
    urls = shard_source.resolve(shards)  # fails fast: "no shards matched ..."
    cfg, tokenizer_run, resuming = resolve_config(phase, out, config_name, overrides, tokenizer_run, init_run)
    tcfg = cfg.train_tokenizer if phase == PHASE_TOKENIZER else cfg.train_lam_dynamics
    if resuming:
        done = _finished(out, tcfg.max_steps, until_step)
        if done is not None:
            if os.environ.get("RANK", "0") == "0":
                log(done)
            return _last_metrics(out)
    _check_data(phase, urls, cfg)
    if phase == PHASE_DYNAMICS and init_run is None:  # resuming a dynamics run: its init is in config.json
        init_run = json.loads((out / "config.json").read_text()).get("init_run")
    if not resuming:
        try:  # the three models built on the meta device: a config they refuse stops here, not after config.json
            describe_params(cfg)
        except ValueError as e:
            raise UsageError(f"config {cfg.name}: {e}") from None
    ddp, dev = setup_distributed(device)
    if tcfg.batch_size % (ddp.world * tcfg.grad_accum):
        raise ValueError(f"batch_size {tcfg.batch_size} is not divisible by {ddp.world} DDP ranks x "
                         f"{tcfg.grad_accum} accumulation steps")
    if ddp.is_main:
        write_run_config(out, cfg, phase, tokenizer_run, init_run if phase == PHASE_DYNAMICS else None)

    objective = build_objective(phase, cfg, tokenizer_run, init_run, tcfg.seed, ddp.rank, dev)
    run = TrainingRun(phase, cfg, out, objective, ddp, dev, tcfg.num_workers if num_workers is None else num_workers,
                      log)
    if resuming:
        run.resume()
    return run.run(urls, until_step, max_wall_s)


def resume_data(saved: dict[str, Any], layout: dict[str, int], rank: int, log=print
                ) -> tuple[int, dict[int, dict[str, Any]] | None]:
    """(data seed, this rank's loader positions) that continue the data stream of checkpoint data ``saved``.

    Unchanged layout: the saved positions, an exact continuation. Positions None (a checkpoint without them):
    the loader replays the stream and drops the consumed batches, exact but re-reading every shard
    seen so far. A changed layout cannot be exact and is warned about, not refused: resuming a preempted job on
    fewer GPUs or workers must stay possible. A changed world size or worker count deals the shards out
    differently, so no saved position applies; rather than replay the stream from its start (re-reading and
    re-training first on the data seen first) the loader then starts a fresh shuffle under a new data seed. A
    changed shuffle buffer or micro-batch keeps each worker's position: nothing is replayed or skipped.
    """
    seed, ranks = saved.get("seed", 0), saved.get("positions")
    changed = [f"{k} {v} (checkpoint: {saved[k]})" for k, v in layout.items() if k in saved and saved[k] != v]
    if not changed:
        return seed, None if ranks is None else ranks[rank]
    log(f"warning: resuming with {', '.join(changed)}: the data order differs from the uninterrupted run, so "
        "the resume is not exact")
    if ranks is None or any(saved.get(k, layout[k]) != layout[k] for k in ("world", "num_workers")):
        seed += saved["batches"]
        log(f"warning: the saved loader positions do not apply; the data stream restarts with a fresh shuffle "
            f"(data seed {seed})")
        return seed, {}
    return seed, ranks[rank]


@torch.no_grad()
def _log_images(writer, out: Path, phase: str, objective: nn.Module, result: dict[str, Any], video: torch.Tensor,
                step: int) -> None:
    """Real frames over reconstructions (tokenizer) or over LAM predictions (and dynamics argmax decodes)."""
    if phase == PHASE_TOKENIZER:
        rows = [video[0], result["recon"][0]]
    elif phase == PHASE_LAM:
        rows = [video[0, 1:], result["pred"][0]]
    else:
        tokenizer = objective.tokenizer[0]
        predicted = result["dynamics_predicted"].clone()
        predicted[:, 0] = result["tokens"][:1, 0]
        dyn_frames = tokenizer.decode(predicted)[0]
        rows = [video[0, 1:], result["pred"][0], dyn_frames[1:]]
    grid = _image_grid(rows)
    writer.add_image(f"{phase}/samples", grid, step)
    _save_png(grid, out / "samples" / f"step-{step:09d}.png")


def describe_params(cfg: GenieConfig) -> dict[str, int]:
    """Parameter counts of the three models of a config (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        models = {"tokenizer": VideoTokenizer(cfg.tokenizer), "lam": LatentActionModel(cfg.lam),
                  "dynamics": DynamicsModel(cfg.dynamics)}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = ["train", "psnr", "describe_params", "resume_data", "ShardError", "TrainingInterrupted"]
