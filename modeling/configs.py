"""Typed configs for every Genie component, and the named presets (``tiny``, ``coinrun``, ``platformers-small``).

One dataclass per component (nanoGPT style): sizes live here, never as literals in the model files. The frame
size is the data's (``modeling.data.check_first_clip`` reads it from the shards; training refuses a mismatch):
160x90 for the pipeline's default clips, 64x64 for Appendix F's CoinRun. ``precision`` and ``sampling`` are
part of a run's config, so training, token extraction, evaluation and generation all use what the run used.
``get_config(name, overrides)`` returns a ``GenieConfig``; overrides are dotted keys
(``{"tokenizer.enc_layers": 4, "train.lr": 1e-4}``) and an unknown key raises a ``KeyError`` naming it.
``parse_overrides`` makes that dict from the command line's ``--set`` text, each value converted to the type its
field declares.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from schemas.cli import UsageError
from schemas.clip_format import CLIP_HEIGHT, CLIP_WIDTH

FRAME_HEIGHT = CLIP_HEIGHT  # the default clip format (schemas.clip_format): 160x90 at 10 FPS
FRAME_WIDTH = CLIP_WIDTH
SCHEDULE_NAMES = ("cosine", "linear", "square")  # MaskGIT unmasking schedules (modeling.maskgit.SCHEDULES)
PRECISIONS = ("bf16", "fp32")  # bf16: bf16 autocast on every device (VQ distances stay fp32); fp32: no autocast


@dataclass
class TokenizerConfig:
    """ST-ViViT VQ-VAE (paper Section 2.1, Appendix C.1)."""

    frame_height: int = FRAME_HEIGHT
    frame_width: int = FRAME_WIDTH
    num_frames: int = 16  # T: clips are tokenised in windows of this many frames
    patch_size: int = 4  # paper: 4. Frames are zero-padded at the bottom/right to a multiple and cropped back
    codebook_size: int = 1024
    latent_dim: int = 32  # VQ code dimension
    enc_layers: int = 12
    enc_dim: int = 512
    enc_heads: int = 8
    dec_layers: int = 20  # the paper found a larger decoder helps more than a larger encoder
    dec_dim: int = 1024
    dec_heads: int = 16
    mlp_ratio: float = 4.0
    commitment_weight: float = 0.25  # beta of the VQ-VAE commitment loss
    normalize_codes: bool = True  # cosine-similarity VQ (l2-normalised codes and latents), as Jafar/Jasmine
    dead_code_threshold: float = 0.01  # reset a code whose EMA share of assignments < this x uniform share
    usage_decay: float = 0.99  # EMA decay of the per-code usage share

    @property
    def token_grid(self) -> tuple[int, int]:
        p = self.patch_size
        return -(-self.frame_height // p), -(-self.frame_width // p)


@dataclass
class LAMConfig:
    """Latent action model on pixels (paper Section 2.1, Appendix C.2)."""

    frame_height: int = FRAME_HEIGHT
    frame_width: int = FRAME_WIDTH
    num_frames: int = 16
    patch_size: int = 16
    num_actions: int = 8  # |A|: the paper uses 8 for Platformers, 6 for CoinRun
    latent_dim: int = 32
    enc_layers: int = 8
    enc_dim: int = 512
    enc_heads: int = 8
    dec_layers: int = 8
    dec_dim: int = 512
    dec_heads: int = 8
    mlp_ratio: float = 4.0
    commitment_weight: float = 0.25
    normalize_codes: bool = True
    batchnorm_latents: bool = True  # standardise latents with running statistics before the VQ (anti-collapse;
    # lam.RunningStandardize: batch-independent, unlike the BatchNorm this name comes from)
    dead_code_threshold: float = 0.1  # tiny codebook: a code with < 10% of its uniform share is dead
    usage_decay: float = 0.99
    # What makes the action necessary (lam.py's docstring). 0 in the next two: the paper's linear patch layers
    # (what checkpoints written before these fields hold; modeling.checkpoint loads them so).
    stem_channels: int = 32  # conv stem over [x_t, x_t - x_{t-1}] before both ST transformers (first conv width)
    head_channels: int = 64  # conv pixel head, coarsest scale's width (halved per scale, >= 8): x_t + delta
    kmeans_bank: int = 4096  # latest training latents kept for k-means codebook init and dead-code re-seeding
    vq_warmup_steps: int = 200  # training forwards with the continuous latent before k-means sets the codebook
    check_every: int = 100  # training steps between action-necessity checks (modeling.lam_check); 0: none
    # Weak supervision (LAOM), off in every preset: an action head on the latent, trained with the true actions of
    # this fixed share of transitions (lam.labelled_transitions); lam phase only. Results are reported apart.
    action_head_fraction: float = 0.0
    action_head_weight: float = 0.1  # weight of its cross-entropy against the reconstruction MSE (untuned)
    action_classes: int = 15  # Procgen's 15 actions
    # The training loss weighted at the frame's centre, where a platformer's camera keeps the player
    # (lam.centre_weights; 0: plain MSE, every preset). The action-necessity check and the probe keep the plain error.
    focus_weight: float = 0.0
    focus_sigma: float = 4.0  # px
    # How a transition's code is chosen, and what it does (lam.LatentActionModel; options, off in every preset).
    # "encoder" (the paper): an inverse-dynamics encoder's latent, vector-quantised. "best_fit": no encoder; the code
    # under which the decoder predicts x_{t+1} best, by the training error (exact per transition, no collapse).
    code_choice: str = "encoder"
    # best_fit only. "film": the code modulates the pixel head at every scale. "image": the code adds one learned
    # change image to the code-free prediction, the same in every context, so it cannot describe the scroll of
    # whatever background is on screen, only a change that recurs in place (a centred player's sprite).
    code_effect: str = "film"
    # code_effect "image" only: each code also maps the central effect_crop x effect_crop px of x_t linearly (one
    # map for every colour channel) and adds the result there, so a code can mirror or re-pose the player's sprite
    # whatever its colours (a change image is tied to them). 0: none.
    effect_crop: int = 0
    # The decoder sees the central mirror_crop x mirror_crop px of x_1..x_t only up to a left-right mirror (each
    # replaced by the mean of itself and its mirror image), so which way the player faces in x_{t+1} is the code's
    # to say: a held action shows in the facing it keeps, which a decoder that sees x_t would copy. 0: none.
    mirror_crop: int = 0
    # best_fit only: train this many codes, then at training step prune_at keep the lam.num_actions whose loss is
    # least missed (modeling.code_pruning; a `train lam` run). 0: num_actions codes throughout.
    train_codes: int = 0
    prune_at: int = 0

    def __post_init__(self) -> None:
        if self.vq_warmup_steps and not self.kmeans_bank:
            raise ValueError("lam.vq_warmup_steps needs lam.kmeans_bank > 0 (the codebook's k-means init)")
        if self.code_choice not in ("encoder", "best_fit") or self.code_effect not in ("film", "image"):
            raise ValueError(f"lam.code_choice must be 'encoder' or 'best_fit' and lam.code_effect 'film' or 'image', "
                             f"got {self.code_choice!r} and {self.code_effect!r}")
        if self.code_choice != "best_fit" and self.code_effect != "film":
            raise ValueError("lam.code_effect = 'image' needs lam.code_choice = 'best_fit'")
        if self.code_choice == "best_fit" and not self.head_channels:
            raise ValueError("lam.code_choice = 'best_fit' needs the pixel head (lam.head_channels > 0)")
        if self.effect_crop and (self.code_effect != "image" or not 0 < self.effect_crop <= min(
                self.frame_height, self.frame_width)):
            raise ValueError(f"lam.effect_crop needs lam.code_effect = 'image' and at most the frame's side, got "
                             f"{self.effect_crop}")
        if not 0 <= self.mirror_crop <= min(self.frame_height, self.frame_width):
            raise ValueError(f"lam.mirror_crop must be between 0 and the frame's side, got {self.mirror_crop}")
        if self.train_codes and (self.code_choice != "best_fit" or self.train_codes <= self.num_actions
                                 or self.prune_at < 1):
            raise ValueError(f"lam.train_codes needs lam.code_choice = 'best_fit', more codes than lam.num_actions "
                             f"({self.num_actions}) and lam.prune_at >= 1, got train_codes={self.train_codes}, "
                             f"prune_at={self.prune_at}")
        if self.prune_at and not self.train_codes:
            raise ValueError("lam.prune_at needs lam.train_codes (the codes trained before pruning)")
        if self.focus_weight < 0 or self.focus_sigma <= 0:
            raise ValueError(f"lam.focus_weight must be >= 0 and lam.focus_sigma > 0, got {self.focus_weight} and "
                             f"{self.focus_sigma}")

    @property
    def token_grid(self) -> tuple[int, int]:
        p = self.patch_size
        return -(-self.frame_height // p), -(-self.frame_width // p)


@dataclass
class DynamicsConfig:
    """MaskGIT dynamics over tokenizer tokens, conditioned on latent actions (paper Section 2.1, Appendix C.3)."""

    vocab_size: int = 1024  # = tokenizer codebook size
    token_grid: tuple[int, int] = (23, 40)  # = tokenizer token grid (h, w)
    num_frames: int = 16
    # The latent actions are the LAM's codes: their count is declared once, as LAMConfig.num_actions. GenieConfig
    # hands it over (no init argument, not in config.json, no --set key); a DynamicsConfig made alone has the
    # LAM's default.
    num_actions: int = field(default=LAMConfig.num_actions, init=False)
    layers: int = 12
    dim: int = 512
    heads: int = 8
    mlp_ratio: float = 4.0
    action_conditioning: str = "additive"  # "additive" (paper) or "token" (action as an extra spatial token, Jasmine)
    mask_rate_min: float = 0.5  # training mask rate ~ U(min, max) per example (paper: U(0.5, 1))
    mask_rate_max: float = 1.0


@dataclass
class TrainConfig:
    """Optimisation for one training phase (AdamW, linear warm-up then cosine decay, gradient clipping)."""

    batch_size: int = 48  # per step, summed over all DDP ranks
    lr: float = 3e-4
    min_lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000
    max_steps: int = 300_000
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step (batch_size is split over ranks x grad_accum)
    activation_checkpointing: bool = False  # recompute ST blocks in backward: far less activation memory
    log_every: int = 50
    image_every: int = 1000
    ckpt_every: int = 5000
    keep_checkpoints: int = 3  # numbered checkpoints kept besides latest.pt
    num_workers: int = 4  # loader processes per rank
    shuffle_buffer: int = 256  # samples in the shuffle buffer of each loader worker
    seed: int = 0
    compile: bool = False  # torch.compile the model (off by default: slow to start, not needed for tests)


@dataclass
class SamplingConfig:
    """MaskGIT sampling at inference (paper Section 2.2): part of a preset, as the paper's temperature differs."""

    steps: int = 25  # MaskGIT iterations per frame (paper: 25)
    temperature: float = 1.0  # each preset sets its own (paper: 2.0 Platformers, 1.0 CoinRun); 0 = greedy
    schedule: str = "cosine"  # unmasking schedule: cosine | linear | square (modeling.maskgit.SCHEDULES)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"MaskGIT steps must be >= 1, got {self.steps}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.schedule not in SCHEDULE_NAMES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULE_NAMES)}")


@dataclass
class GenieConfig:
    """Everything a run needs: the three models, one TrainConfig per phase, precision and sampling."""

    name: str = "custom"
    # One precision policy for every forward pass of every phase and of inference (modeling.precision): the
    # tokens and latent actions the dynamics model sees at evaluation are then those it was trained on.
    precision: str = "bf16"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    lam: LAMConfig = field(default_factory=LAMConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    train_tokenizer: TrainConfig = field(default_factory=TrainConfig)
    train_lam_dynamics: TrainConfig = field(default_factory=lambda: TrainConfig(
        batch_size=36, lr=3e-5, min_lr=3e-6, warmup_steps=5000, max_steps=200_000))
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.sync()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames every model of this config takes."""
        return self.tokenizer.frame_height, self.tokenizer.frame_width

    def sync(self) -> GenieConfig:
        """Make the LAM and dynamics model agree with the tokenizer (frame size, window) and each other."""
        self.lam.frame_height, self.lam.frame_width = self.frame_size
        self.dynamics.vocab_size = self.tokenizer.codebook_size
        self.dynamics.token_grid = tuple(self.tokenizer.token_grid)
        self.dynamics.num_actions = self.lam.num_actions
        self.lam.num_frames = self.dynamics.num_frames = self.tokenizer.num_frames
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as config.json holds them: fields a section is handed (``init=False``) are left out."""
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for handed in _handed_fields(type(section)):
                    del d[f.name][handed]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenieConfig:
        d = dict(d)
        kwargs: dict[str, Any] = {"name": d.pop("name", "custom")}
        if "precision" in d:
            kwargs["precision"] = d.pop("precision")
        for f in dataclasses.fields(cls):
            if f.name in ("name", "precision") or f.name not in d:
                continue
            sub_cls = type(f.default_factory())
            kwargs[f.name] = _build(sub_cls, d.pop(f.name), f.name)
        if d:
            raise KeyError(f"unknown GenieConfig key(s): {sorted(d)}")
        return cls(**kwargs)


def _handed_fields(cls: type) -> set[str]:
    """Fields ``GenieConfig`` fills from another section's declaration (``init=False``), not settings."""
    return {f.name for f in dataclasses.fields(cls) if not f.init}


def _build(sub_cls: type, values: dict[str, Any], prefix: str) -> Any:
    # A run's config.json may name a handed-over field (dynamics.num_actions, equal to lam.num_actions): its
    # source decides, so the value is not read.
    values = {k: v for k, v in values.items() if k not in _handed_fields(sub_cls)}
    names = {f.name for f in dataclasses.fields(sub_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KeyError(f"unknown config key(s) {[f'{prefix}.{k}' for k in unknown]}; "
                       f"{prefix} has {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return sub_cls(**values)


def _tiny() -> GenieConfig:
    # CPU-sized: trains in seconds. Larger patches and a short window keep the token count small
    # (patch 15 -> 6x11 tokens per frame; the paper's patch 4 gives 23x40).
    tiny_train = TrainConfig(batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=5, max_steps=200, grad_clip=1.0,
                             log_every=10, image_every=100, ckpt_every=100, num_workers=0, shuffle_buffer=16)
    # fp32: bf16 autocast on a CPU is slow and the CPU tests are what tiny is for.
    return GenieConfig(
        name="tiny",
        precision="fp32",
        sampling=SamplingConfig(temperature=1.0),
        tokenizer=TokenizerConfig(num_frames=4, patch_size=15, codebook_size=64, latent_dim=16, enc_layers=1,
                                  enc_dim=48, enc_heads=2, dec_layers=1, dec_dim=64, dec_heads=2, usage_decay=0.9),
        lam=LAMConfig(num_frames=4, patch_size=30, num_actions=4, latent_dim=16, enc_layers=1, enc_dim=48,
                      enc_heads=2, dec_layers=1, dec_dim=48, dec_heads=2, usage_decay=0.9, stem_channels=8,
                      head_channels=16, kmeans_bank=256, vq_warmup_steps=0, check_every=50),
        dynamics=DynamicsConfig(num_frames=4, layers=1, dim=48, heads=2),
        train_tokenizer=tiny_train,
        train_lam_dynamics=dataclasses.replace(tiny_train),
    )


def _coinrun() -> GenieConfig:
    # Paper Appendix F: 64x64 frames; tokenizer 8+8 layers d512 (1024 codes, patch 4 -> 16x16 tokens, latent 32),
    # batch 48x16, 300k steps; LAM 8 layers d512 with 6 codes (patch 16 -> 4x4); dynamics 12 layers d512;
    # LAM+dynamics batch 36x16, 200k steps; sampling at temperature 1.0 with 25 MaskGIT steps.
    return GenieConfig(
        name="coinrun",
        sampling=SamplingConfig(steps=25, temperature=1.0),
        tokenizer=TokenizerConfig(frame_height=64, frame_width=64, enc_layers=8, enc_dim=512, enc_heads=8,
                                  dec_layers=8, dec_dim=512, dec_heads=8),
        lam=LAMConfig(frame_height=64, frame_width=64, num_actions=6),
        dynamics=DynamicsConfig(layers=12, dim=512, heads=8),
        train_tokenizer=TrainConfig(batch_size=48, lr=3e-4, min_lr=3e-5, warmup_steps=10_000, max_steps=300_000,
                                    activation_checkpointing=True),
        train_lam_dynamics=TrainConfig(batch_size=36, lr=3e-5, min_lr=3e-6, warmup_steps=5000, max_steps=200_000,
                                       activation_checkpointing=True),
    )


def _coinrun_cpu() -> GenieConfig:
    # The CoinRun case study shrunk to a 60-minute budget on 2 CPU cores (benchmarks/coinrun_cpu.py): 64x64
    # frames as Appendix F, but patch 8 (8x8 tokens), 256 codes, 2-layer d64 tokenizer and LAM, d128 dynamics,
    # 8-frame windows and batch 8 (d128 everywhere measured ~8 s per tokenizer step on 2 busy cores).
    # max_steps is a ceiling: the harness sets it from a measured step time so the cosine schedule ends with
    # the budget. fp32: bf16 autocast is slow on CPUs.
    train = TrainConfig(batch_size=8, lr=1e-3, min_lr=1e-4, warmup_steps=50, max_steps=2000, log_every=10,
                        image_every=500, ckpt_every=500, num_workers=1, shuffle_buffer=64)
    return GenieConfig(
        name="coinrun-cpu",
        precision="fp32",
        sampling=SamplingConfig(steps=8, temperature=1.0),
        tokenizer=TokenizerConfig(frame_height=64, frame_width=64, num_frames=8, patch_size=8, codebook_size=256,
                                  latent_dim=32, enc_layers=2, enc_dim=64, enc_heads=4, dec_layers=2, dec_dim=64,
                                  dec_heads=4),
        lam=LAMConfig(frame_height=64, frame_width=64, num_frames=8, patch_size=16, num_actions=6, latent_dim=32,
                      enc_layers=2, enc_dim=64, enc_heads=4, dec_layers=2, dec_dim=64, dec_heads=4,
                      stem_channels=16, head_channels=32, vq_warmup_steps=100, check_every=50),
        dynamics=DynamicsConfig(num_frames=8, layers=2, dim=128, heads=4),
        train_tokenizer=train,
        train_lam_dynamics=dataclasses.replace(train),
    )


def _platformers_small() -> GenieConfig:
    # About one H100-day: the paper's tokenizer shape scaled down (8+12 layers), LAM as in the paper (8 codes),
    # dynamics at the bottom of the paper's sweep. Counted FLOPs (benchmarks/train_throughput.py --count-only)
    # give ~7 h + ~16 h at an assumed 40% MFU; parameter counts are in docs/modeling.md.
    return GenieConfig(
        name="platformers-small",
        sampling=SamplingConfig(steps=25, temperature=2.0),
        tokenizer=TokenizerConfig(enc_layers=8, enc_dim=512, enc_heads=8, dec_layers=12, dec_dim=768, dec_heads=12),
        lam=LAMConfig(num_actions=8),
        dynamics=DynamicsConfig(layers=16, dim=1024, heads=16),
        train_tokenizer=TrainConfig(batch_size=32, lr=3e-4, min_lr=3e-5, warmup_steps=2000, max_steps=20_000,
                                    activation_checkpointing=True),
        train_lam_dynamics=TrainConfig(batch_size=32, lr=1e-4, min_lr=1e-5, warmup_steps=2000, max_steps=25_000,
                                       activation_checkpointing=True),
    )


PRESETS = {"tiny": _tiny, "coinrun": _coinrun, "coinrun-cpu": _coinrun_cpu, "platformers-small": _platformers_small}


def get_config(name: str, overrides: dict[str, Any] | None = None) -> GenieConfig:
    """A preset by name with dotted-key overrides applied; unknown names and keys raise with the valid ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown config {name!r}; presets are {sorted(PRESETS)}")
    return apply_overrides(PRESETS[name](), overrides)


def apply_overrides(cfg: GenieConfig, overrides: dict[str, Any] | None) -> GenieConfig:
    """A copy of ``cfg`` with dotted-key overrides applied; an unknown key raises a KeyError naming it."""
    d = cfg.to_dict()
    for key, value in (overrides or {}).items():
        section, _, attr = key.partition(".")
        if not attr and section in d and not isinstance(d[section], dict):  # a top-level field: precision
            d[section] = value
            continue
        if section not in d or (attr and not isinstance(d[section], dict)):
            raise KeyError(f"unknown config key {key!r}; sections are {sorted(k for k in d if k != 'name')}")
        if not attr:
            raise KeyError(f"config key {key!r} must be 'section.field'")
        if attr not in d[section]:
            raise KeyError(f"unknown config key {key!r}; {section} has {sorted(d[section])}")
        d[section][attr] = value
    return GenieConfig.from_dict(d)


# Fields that ``GenieConfig.sync`` derives from others: setting one on the command line would be overwritten.
DERIVED_FIELDS = {
    "lam.frame_height": "tokenizer.frame_height", "lam.frame_width": "tokenizer.frame_width",
    "lam.num_frames": "tokenizer.num_frames", "dynamics.num_frames": "tokenizer.num_frames",
    "dynamics.vocab_size": "tokenizer.codebook_size", "dynamics.token_grid": "tokenizer.patch_size",
    "dynamics.num_actions": "lam.num_actions",
}
_TYPE_NAMES = {int: "an integer (int)", float: "a number (float)", bool: "true or false (bool)", str: "a string (str)"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def override_fields() -> dict[str, dict[str, Any]]:
    """Every key ``--set`` accepts, as {section: {field: type}}; top-level fields (``precision``) sit under ""."""
    top = typing.get_type_hints(GenieConfig)
    fields = {"": {k: t for k, t in top.items() if not dataclasses.is_dataclass(t)}}
    for section, cls in top.items():
        if dataclasses.is_dataclass(cls):
            fields[section] = typing.get_type_hints(cls)
    return fields


def _closest(word: str, known, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _field_type(key: str) -> Any:
    """The declared type of override ``key``; UsageError naming what exists when there is no such field."""
    fields = override_fields()
    section, _, attr = key.rpartition(".")
    if section not in fields:
        sections = sorted(s for s in fields if s)
        raise UsageError(f"unknown config section {section!r}{_closest(section, sections)}; sections are "
                         f"{', '.join(sections)} (or a top-level field: {', '.join(sorted(fields['']))})")
    if attr not in fields[section]:
        where = f"{section} has" if section else "top-level fields are"
        hint = _closest(attr, fields[section], f"{section}." if section else "")
        raise UsageError(f"unknown config key {key!r}{hint}; {where} {', '.join(sorted(fields[section]))}")
    if key in DERIVED_FIELDS:
        raise UsageError(f"{key} follows {DERIVED_FIELDS[key]} (set that instead)")
    return fields[section][attr]


def convert_value(raw: str, kind: Any) -> Any:
    """``raw`` (command-line text) as a value of type ``kind``: int, float, bool, str, ``X | None`` or a tuple.
    Raises ValueError (``describe_type`` says what was expected)."""
    args = typing.get_args(kind)
    if type(None) in args:  # Optional[X] / X | None
        if raw.strip().lower() in ("none", "null"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return convert_value(raw, inner)
    if typing.get_origin(kind) in (tuple, list):
        text = raw.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(items, list):
            raise ValueError
        types = [args[0]] * len(items) if Ellipsis in args or typing.get_origin(kind) is list else args
        if len(types) != len(items):
            raise ValueError
        values = [convert_value(str(v), t) for v, t in zip(items, types, strict=True)]
        return tuple(values) if typing.get_origin(kind) is tuple else values
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:  # a JSON-quoted string ('"token"') is the string inside the quotes
        return json.loads(text) if len(text) >= 2 and text[0] == text[-1] == '"' else raw
    raise ValueError


def describe_type(kind: Any) -> str:
    """How an error names what ``convert_value`` expects of ``kind``."""
    args = typing.get_args(kind)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return f"{describe_type(inner)} or none"
    if typing.get_origin(kind) in (tuple, list):
        names = ", ".join(getattr(a, "__name__", str(a)) for a in args if a is not Ellipsis)
        count = f"{len(args)} " if typing.get_origin(kind) is tuple and Ellipsis not in args else ""
        return f"{count}comma-separated values ({names})"
    return _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train_tokenizer.lr=1e-4", "dynamics.action_conditioning=token"]`` -> {key: value}, each value
    converted to its field's declared type. Everything is checked here, before a run directory exists: a bad
    item would otherwise be written to a run's config.json and fail every resume of it. Raises UsageError naming
    the item, the expected type and, for an unknown key, the keys that exist."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r} must look like section.field=value (e.g. train_tokenizer.lr=1e-4)")
        try:
            kind = _field_type(key)
        except UsageError as e:
            raise UsageError(f"--set {item}: {e}") from None
        try:
            out[key] = convert_value(raw, kind)
        except ValueError:
            raise UsageError(f"--set {item}: expected {describe_type(kind)}, got {raw!r}") from None
    return out
