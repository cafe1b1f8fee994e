"""Latent action model (LAM): a tiny discrete action vocabulary learned from video alone (paper Sec. 2.1, App. C.2).

The encoder (a causal ST-transformer with one "action query" token per frame) reads x_1..x_{t+1}; its output at
frame t+1, through a VQ of a few codes, is the action of x_t -> x_{t+1}. The decoder predicts x_{t+1} from
x_1..x_t and that code, so the code must say what the past does not: ideally the controllable change.
An example's action depends on that example alone (running statistics, never the batch's), so the dynamics model
trains on the actions ``infer_actions`` gives at inference.

What differs from the paper, so that the decoder needs its code (a CoinRun action moves a few pixels): a conv
stem over [x_t, x_t - x_{t-1}] before both transformers (``stem_channels``); a full-resolution pixel head that
predicts x_t + delta with the action as FiLM at every scale (``head_channels``; a 64 -> 768 linear head cannot
even copy x_t); a continuous warm-up, then a k-means codebook with dead codes re-seeded (``modeling.vq``).
Checkpoints with the paper's linear patch layers still load (``legacy_config``). Measured: docs/modeling.md.

An option, off in every preset: ``lam.code_choice = "best_fit"`` drops the encoder and gives each transition the
code under which the decoder predicts x_{t+1} best (hard EM over K forward models), and ``lam.code_effect =
"image"`` makes a code's effect one learned change image, the same in every context. An encoder's VQ collapses
when the code is worth little; the best fit uses any code worth anything. A change image cannot draw the scroll of
whatever background is on screen, only a change that recurs in place, as a centred player's sprite does.
``lam.effect_crop = P`` adds to each code a linear map of x_t's central P x P px, the same map for every colour
channel: a change image is tied to the colours it was learned on, and a map can turn or re-pose a sprite of any.
``lam.mirror_crop = P`` shows the decoder x_1..x_t's central P x P px only up to a left-right mirror, so the
player's facing in x_{t+1}, which a held action keeps and a decoder that sees x_t would copy, is the code's to say.
``lam.train_codes = K`` trains K best-fit codes and prunes them to ``lam.num_actions`` at step ``lam.prune_at``
(``modeling.code_pruning``); the kept codes become rows 0..num_actions-1, so the actions are 0..num_actions-1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from modeling.code_pruning import PRUNE_SAMPLE, FitErrors, prune_by_fit
from modeling.configs import LAMConfig
from modeling.patches import padded_size, patchify, unpatchify
from modeling.st_transformer import STTransformer
from modeling.vq import VectorQuantizer


class RunningStandardize(nn.Module):
    """Standardise vectors with running (EMA) mean and variance, in training and inference alike.

    BatchNorm would standardise with the current batch's statistics in training: an example's latent action then
    depends on its batch mates, and differs from the one inferred at inference (running statistics). Here the
    statistics in use are the running ones, updated only AFTER the batch is standardised (the first training
    batch initialises them), so each example's output depends on itself and the model state alone. The
    anti-collapse effect is kept: when the encoder's outputs are nearly identical the running variance is tiny,
    and dividing by it spreads the latents apart so the VQ still tells them apart.

    Buffer names are BatchNorm1d's, so checkpoints of the earlier BatchNorm LAM load unchanged.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, dim) -> standardised x (N, dim), float32."""
        y = (x.float() - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
        if self.training:
            self._update(x.detach().float())
        return y

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        moments = torch.stack([x.mean(0), x.pow(2).mean(0)])
        count = torch.tensor(float(x.shape[0]), device=x.device)
        if dist.is_available() and dist.is_initialized():  # every rank keeps the same statistics
            moments = moments * count
            dist.all_reduce(moments)
            dist.all_reduce(count)
            moments = moments / count
        mean, var = moments[0], (moments[1] - moments[0].pow(2)).clamp(min=0)
        # The first batch sets the statistics; a tensor, not a Python branch, so no host sync (and meta works).
        m = torch.where(self.num_batches_tracked == 0, 1.0, self.momentum).to(mean.dtype)
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)
        self.num_batches_tracked += 1


def with_change(video: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) in [0, 1] -> (B, T, 6, H, W): [x_t in [-1, 1], x_t - x_{t-1}] (zero change at t = 0)."""
    change = torch.cat([torch.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], dim=1)
    return torch.cat([video * 2 - 1, change], dim=2)


class ConvStem(nn.Module):
    """Frames with their change (B, T, 6, H, W) -> one token per patch (B, T, h*w, dim).

    Up to two stride-2 4x4 convs (the first straight from the 6 input channels: a full-resolution conv cost 3x the
    rest on CPU), channels doubling, then a conv whose kernel and stride cover the rest of the patch (an odd patch:
    a 3x3 conv first). Frames are zero-padded to a multiple of the patch as ``patchify`` does: same token grid.
    """

    def __init__(self, patch: int, channels: int, dim: int, in_channels: int = 6):
        super().__init__()
        self.patch = patch
        layers: list[nn.Module] = []
        rest, width_in, width = patch, in_channels, channels
        while rest % 2 == 0 and len(layers) < 4:
            layers += [nn.Conv2d(width_in, width, 4, stride=2, padding=1), nn.GELU()]
            rest, width_in, width = rest // 2, width, 2 * width
        if not layers:
            layers = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.GELU()]
            width_in = channels
        layers.append(nn.Conv2d(width_in, dim, rest, stride=rest))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c, height, width = frames.shape
        hp, wp = padded_size(height, width, self.patch)
        x = self.net(F.pad(frames.flatten(0, 1), (0, wp - width, 0, hp - height)))
        return x.flatten(2).transpose(1, 2).reshape(b, t, -1, x.shape[1])


class PixelHead(nn.Module):
    """Decoder tokens (N, h*w, dim) + action (N, latent) + context [x_t, x_t - x_{t-1}] (N, 6, H, W) -> x_{t+1}.

    ceil(log2(patch)) upsampling stages from the h x w grid to the padded frame; each stage interpolates,
    concatenates the context pooled to its size, convolves, and applies the action as FiLM. Full rank at full
    resolution, and residual: x_{t+1} = clip(x_t + delta, 0, 1), delta's conv initialised near zero (a copy at start).
    """

    def __init__(self, dim: int, channels: int, latent_dim: int, grid: tuple[int, int], patch: int):
        super().__init__()
        self.grid, self.patch = grid, patch
        self.stages = max(1, math.ceil(math.log2(patch)))
        widths = [max(8, channels >> i) for i in range(self.stages)]
        self.convs = nn.ModuleList(nn.Conv2d(c_in + 6, c, 3, padding=1)
                                   for c_in, c in zip([dim, *widths[:-1]], widths, strict=True))
        self.films = nn.ModuleList(nn.Linear(latent_dim, 2 * c) for c in widths)
        self.to_delta = nn.Conv2d(widths[-1], 3, 3, padding=1)
        nn.init.normal_(self.to_delta.weight, std=1e-3)  # nearly a copy at start, but gradients reach everything
        nn.init.zeros_(self.to_delta.bias)

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Each stage's (h, w): geometric from the token grid to the padded frame."""
        (gh, gw), (hp, wp) = self.grid, padded_size(height, width, self.patch)
        f = [(i + 1) / self.stages for i in range(self.stages)]
        return [(round(gh * (hp / gh) ** e), round(gw * (wp / gw) ** e)) for e in f]

    def forward(self, tokens: torch.Tensor, action: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, _, height, width = context.shape
        hp, wp = padded_size(height, width, self.patch)
        context = F.pad(context, (0, wp - width, 0, hp - height))
        x = tokens.transpose(1, 2).reshape(n, -1, *self.grid)
        for (h, w), conv, film in zip(self.sizes(height, width), self.convs, self.films, strict=True):
            x = F.interpolate(x, size=(h, w), mode="nearest")
            x = conv(torch.cat([x, F.adaptive_avg_pool2d(context, (h, w))], dim=1))
            scale, shift = film(action).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
            x = F.gelu(x * (1 + scale) + shift)
        pred = (context[:, :3] + 1) / 2 + self.to_delta(x)  # x_t (back in [0, 1]) + delta
        # Clipped to [0, 1] with a straight-through gradient: a hard clip passes none to a pixel pushed past the
        # range, and a head that once predicts black everywhere would stay there (measured on the drawing test).
        return (pred + (pred.clamp(0, 1) - pred).detach())[..., :height, :width]


def centre_weights(height: int, width: int, strength: float, sigma: float, device: torch.device | None = None
                   ) -> torch.Tensor:
    """(height, width) per-pixel weights of mean 1: ``1 + strength * g / mean(g)``, g a Gaussian of ``sigma`` px
    at the frame's centre, rescaled to mean 1. A platformer's camera keeps the player near the centre, and the
    action changes a few dozen pixels there while the scroll changes the whole frame; weighting the error there
    is what moved the code towards the action on CoinRun (docs/modeling.md). Strength 50 gives the Gaussian 50/51
    of the weight; with sigma 4 on 64x64 frames, 86% of it lies within 8 px of the centre."""
    y = torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2
    x = torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2
    g = torch.exp(-(y[:, None] ** 2 + x[None] ** 2) / (2 * sigma ** 2))
    weight = 1 + strength * g / g.mean()
    return weight / weight.mean()


def centre_box(side: int, height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of the central side x side px of a height x width frame (where a platformer's camera
    keeps the player)."""
    y0, x0 = (height - side) // 2, (width - side) // 2
    return slice(y0, y0 + side), slice(x0, x0 + side)


def labelled_transitions(starts: torch.Tensor, transitions: int, fraction: float) -> torch.Tensor:
    """(B, transitions) bool: which transitions of windows starting at clip frames ``starts`` (B,) have a true
    action for weak supervision. A fixed hash of the transition's frame index in its clip, so the labelled set is
    the same ~``fraction`` of every clip's transitions all through training (not a fresh draw per batch, which
    would show the LAM far more labels than the fraction says)."""
    frame = starts[:, None] + torch.arange(transitions, device=starts.device)[None]
    return (frame * 2654435761 % 2**32).float() / 2**32 < fraction


def legacy_config(cfg: LAMConfig, state: dict[str, Any]) -> LAMConfig:
    """The config that builds the architecture a LAM state dict was saved from: checkpoints written before the
    conv stem, pixel head and latent bank (keys ``enc_in.*``, ``to_pixels.*``, no ``vq.bank``) lack those."""
    if "enc_in.weight" in state or "to_pixels.weight" in state:
        return dataclasses.replace(cfg, stem_channels=0, head_channels=0, kmeans_bank=0, vq_warmup_steps=0)
    return cfg


def lam_from_state(cfg: LAMConfig, state: dict[str, Any]) -> LatentActionModel:
    """A LAM built for a saved state dict (``legacy_config``) with its weights; a mismatch is one ValueError."""
    lam = LatentActionModel(legacy_config(cfg, state))
    missing, unexpected = lam.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"the checkpoint's LAM does not match its config: missing {sorted(missing)[:4]}, "
                         f"unexpected {sorted(unexpected)[:4]} (a checkpoint of another LAM architecture)")
    return lam


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        h, w = cfg.token_grid
        patch_dim = 3 * p * p
        self.best_fit = cfg.code_choice == "best_fit"
        if self.best_fit:  # no encoder: the codebook alone, its codes chosen by the decoder's fit
            self.vq = VectorQuantizer(cfg.train_codes or cfg.num_actions, cfg.latent_dim,
                                      normalize=cfg.normalize_codes, dead_code_threshold=cfg.dead_code_threshold,
                                      usage_decay=cfg.usage_decay)
        else:
            self._build_encoder(cfg, patch_dim, h * w)
        if cfg.train_codes:  # codes 0..live_codes-1 are chosen from; num_actions of them once pruned
            self.register_buffer("live_codes", torch.tensor(cfg.train_codes))
            self.register_buffer("fit_errors", torch.zeros(PRUNE_SAMPLE, cfg.train_codes))
            self.register_buffer("fits_seen", torch.tensor(0))
        if cfg.stem_channels:
            self.dec_stem = ConvStem(p, cfg.stem_channels, cfg.dec_dim)
        else:
            self.dec_in = nn.Linear(patch_dim, cfg.dec_dim)
        self.dec_pos = nn.Parameter(torch.randn(h * w, cfg.dec_dim) * 0.02)
        if not self.best_fit:  # best fit: the code reaches the pixel head only (one trunk pass serves every code)
            self.action_in = nn.Linear(cfg.latent_dim, cfg.dec_dim)
        self.decoder = STTransformer(cfg.dec_dim, cfg.dec_heads, cfg.dec_layers, cfg.mlp_ratio, causal=True)
        if cfg.action_head_fraction:  # weak supervision (LAOM): true actions on a fixed share of transitions
            self.action_head = nn.Linear(cfg.latent_dim, cfg.action_classes)
        if cfg.code_effect == "image":  # each code's effect: one learned change image, the same in every context
            self.code_image = nn.Linear(cfg.latent_dim, 3 * cfg.frame_height * cfg.frame_width, bias=False)
            nn.init.normal_(self.code_image.weight, std=1e-3)
        if cfg.effect_crop:  # and a linear map of the central crop of x_t, zero at start (the image alone)
            self.code_map = nn.Linear(cfg.latent_dim, cfg.effect_crop ** 4, bias=False)
            nn.init.zeros_(self.code_map.weight)
        if cfg.head_channels:
            self.pixel_head = PixelHead(cfg.dec_dim, cfg.head_channels, cfg.latent_dim, (h, w), p)
        else:
            self.to_pixels = nn.Linear(cfg.dec_dim, patch_dim)

    def _build_encoder(self, cfg: LAMConfig, patch_dim: int, tokens: int) -> None:
        if cfg.stem_channels:
            self.enc_stem = ConvStem(cfg.patch_size, cfg.stem_channels, cfg.enc_dim)
        else:
            self.enc_in = nn.Linear(patch_dim, cfg.enc_dim)
        self.enc_pos = nn.Parameter(torch.randn(tokens, cfg.enc_dim) * 0.02)
        self.action_query = nn.Parameter(torch.randn(cfg.enc_dim) * 0.02)
        self.encoder = STTransformer(cfg.enc_dim, cfg.enc_heads, cfg.enc_layers, cfg.mlp_ratio, causal=True)
        self.to_latent = nn.Linear(cfg.enc_dim, cfg.latent_dim)
        # Standardised latents stay spread out even when the encoder's outputs are nearly identical (the start
        # of the usual collapse), so the VQ still tells transitions apart.
        self.latent_norm = RunningStandardize(cfg.latent_dim) if cfg.batchnorm_latents else None
        self.vq = VectorQuantizer(cfg.num_actions, cfg.latent_dim, cfg.commitment_weight, cfg.normalize_codes,
                                  cfg.dead_code_threshold, cfg.usage_decay, cfg.kmeans_bank, cfg.vq_warmup_steps)

    @property
    def num_actions(self) -> int:
        return self.cfg.num_actions

    @property
    def live(self) -> int:
        """How many codes are chosen from now: ``lam.train_codes`` until pruned, then ``lam.num_actions``."""
        return int(self.live_codes) if self.cfg.train_codes else self.vq.num_codes

    @property
    def pruned(self) -> bool:
        """True once the codes are the ``lam.num_actions`` actions (always, without ``lam.train_codes``)."""
        return self.live == self.cfg.num_actions

    def codes(self) -> torch.Tensor:
        """The code vectors chosen from (live_codes, latent_dim)."""
        return self.vq.codes()[:self.live]

    @torch.no_grad()
    def prune_codes(self) -> torch.Tensor | None:
        """``lam.train_codes``: keep the ``lam.num_actions`` codes whose loss the latest training transitions miss
        least (``code_pruning.prune_by_fit``) as rows 0..num_actions-1, the rest after them, never chosen again.
        Returns the new order of the codebook's rows (row i is old row order[i]), None when already pruned. A
        model or optimizer keyed on code indices must be reordered the same way."""
        if self.pruned:
            return None
        errors = FitErrors(self.fit_errors, self.fits_seen).filled()
        if not errors.shape[0]:
            raise RuntimeError("no training transitions seen yet: nothing to choose the codes to keep by")
        keep = prune_by_fit(errors, self.cfg.num_actions).to(errors.device)
        dropped = torch.ones(self.vq.num_codes, dtype=torch.bool, device=errors.device)
        dropped[keep] = False
        order = torch.cat([keep, dropped.nonzero().squeeze(1)])
        self.vq.codebook.weight.copy_(self.vq.codebook.weight[order])
        self.vq.usage.zero_()[:self.cfg.num_actions] = 1.0 / self.cfg.num_actions
        self.live_codes.fill_(self.cfg.num_actions)
        return order

    def _check_video(self, video: torch.Tensor) -> None:
        expected = (3, self.cfg.frame_height, self.cfg.frame_width)
        if video.ndim != 5 or tuple(video.shape[2:]) != expected or video.shape[1] < 2:
            raise ValueError(f"expected video (B, T>=2, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(video.shape)}")

    def action_features(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> the encoder's action-token outputs (B, T-1, enc_dim), one per transition (what
        the latent action is read from; an inverse-dynamics classifier on the same inputs reads it too)."""
        if self.best_fit:
            raise ValueError("a best-fit LAM (lam.code_choice = 'best_fit') has no encoder")
        self._check_video(video)
        b, t = video.shape[:2]
        if self.cfg.stem_channels:
            x = self.enc_stem(with_change(video)) + self.enc_pos
        else:
            x = self.enc_in(patchify(video * 2 - 1, self.cfg.patch_size)) + self.enc_pos
        x = torch.cat([self.action_query.expand(b, t, 1, -1), x], dim=2)
        return self.encoder(x)[:, 1:, 0]  # outputs at frames 2..T: one per transition

    def choose(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """video (B, T, 3, H, W) -> each transition's code: indices (B, T-1), quantized and latent (B, T-1, D)."""
        return self._best_fit(video)[0] if self.best_fit else self._encode(video)

    def _encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        latent = self.to_latent(self.action_features(video))
        if self.latent_norm is not None:
            latent = self.latent_norm(latent.flatten(0, 1)).view(latent.shape).to(latent.dtype)
        out = self.vq(latent)
        out["latent"] = latent
        return out

    def forward(self, video: torch.Tensor, true_actions: torch.Tensor | None = None,
                starts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """video (B, T, 3, H, W) in [0, 1] -> pred (B, T-1, 3, H, W) of frames 2..T, actions (B, T-1), loss.

        With ``lam.action_head_fraction > 0`` (weak supervision, never a preset's default), ``true_actions`` (B, T)
        (``[:, k]`` taken after frame k; -1 unknown) and ``starts`` (B,) (each window's first frame in its clip)
        add a cross-entropy of the action head on the labelled transitions (``labelled_transitions``).
        """
        if self.best_fit:
            vq, pred = self._best_fit(video)
        else:
            vq = self._encode(video)
            pred = self.decode(video[:, :-1], vq["quantized"])
        recon_loss = self._errors(pred, video[:, 1:]).mean()
        out = {
            "pred": pred,
            "actions": vq["indices"],
            "loss": recon_loss + vq["loss"],
            "recon_loss": recon_loss.detach(),
            "vq_loss": vq["loss"].detach(),
            "perplexity": vq["perplexity"],
            "codes_used": vq["codes_used"],
        }
        if self.cfg.action_head_fraction and true_actions is not None and starts is not None:
            truth = true_actions[:, :-1]
            mask = labelled_transitions(starts, truth.shape[1], self.cfg.action_head_fraction) & (truth >= 0)
            latent = F.normalize(vq["latent"].float(), dim=-1) if self.vq.normalize else vq["latent"].float()
            logits = self.action_head(latent)[mask]
            ce = F.cross_entropy(logits, truth[mask]) if mask.any() else logits.sum() * 0
            out["loss"] = out["loss"] + self.cfg.action_head_weight * ce
            out["action_head_loss"] = ce.detach()
        return out

    def _errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, T-1) training error of each predicted frame: squared error, weighted at the centre with
        ``lam.focus_weight``."""
        err = (pred.float() - target.float()).pow(2)
        if self.cfg.focus_weight:
            err = err * centre_weights(*pred.shape[-2:], self.cfg.focus_weight, self.cfg.focus_sigma, pred.device)
        return err.mean(dim=(2, 3, 4))

    def _best_fit(self, video: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``lam.code_choice = "best_fit"``: each transition's code is the one under which the decoder predicts
        x_{t+1} best by the training error (hard EM over a mixture of K forward models). The decoder's trunk does
        not see the code, so one trunk pass serves every code and the choice is exact for each transition, the
        same in training and inference; it needs no encoder to learn the change first, and a code worth little
        is still used (an encoder's VQ collapses then). Costs K + 1 pixel-head passes a training step, K at
        inference."""
        self._check_video(video)
        past, target = self._decoder_view(video[:, :-1]), video[:, 1:]
        trunk, context = self._trunk(past)
        b, t = past.shape[:2]
        codes = self.codes()
        if self.cfg.code_effect == "image":  # one head pass; a code adds its image
            base = self._head(trunk, context, torch.zeros(b, t, codes.shape[1], device=past.device))
            images = self.code_image(codes).view(codes.shape[0], *target.shape[2:])
            maps = self._crop_maps(codes)

            def predict(index: torch.Tensor | int) -> torch.Tensor:
                image = images[index]
                if maps is not None:
                    image = image + self._crop_effect(past, maps[index])
                return self._with_image(base, image)
        else:  # a head pass per code
            def predict(index: torch.Tensor | int) -> torch.Tensor:
                latents = codes[index].expand(b, t, -1) if isinstance(index, int) else codes[index]
                return self._head(trunk, context, latents)
        with torch.no_grad():  # every code's error; the gradient comes from the chosen codes' pass alone
            errors = torch.stack([self._errors(predict(k), target)
                                  for k in range(codes.shape[0])], -1)
        if self.training and not self.pruned:
            FitErrors(self.fit_errors, self.fits_seen).push(errors)
        indices = errors.argmin(-1)
        pred = predict(indices)
        out = self.vq.record(indices)
        chosen = codes[indices]
        out.update(quantized=chosen, latent=chosen.detach(), indices=indices, loss=pred.sum() * 0)
        return out, pred

    def _trunk(self, past: torch.Tensor, action_latents: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's transformer over the past (the code added at its input, unless best fit) and the pixel
        head's context [x_t, x_t - x_{t-1}]."""
        context = with_change(past)
        if self.cfg.stem_channels:
            x = self.dec_stem(context)
        else:
            x = self.dec_in(patchify(past * 2 - 1, self.cfg.patch_size))
        x = x + self.dec_pos
        if action_latents is not None:
            x = x + self.action_in(action_latents)[:, :, None, :]
        return self.decoder(x), context

    def _head(self, x: torch.Tensor, context: torch.Tensor, action_latents: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        pred = self.pixel_head(x.flatten(0, 1), action_latents.flatten(0, 1), context.flatten(0, 1))
        return pred.view(b, t, *pred.shape[1:])

    def decode(self, past: torch.Tensor, action_latents: torch.Tensor) -> torch.Tensor:
        """Predict frames 2..T from frames past (B, T-1, 3, H, W) and action vectors (B, T-1, latent_dim)."""
        past = self._decoder_view(past)
        x, context = self._trunk(past, None if self.best_fit else action_latents)
        if not self.cfg.head_channels:  # the paper's linear pixel layer and sigmoid
            return torch.sigmoid(unpatchify(self.to_pixels(x), self.cfg.patch_size, self.cfg.frame_height,
                                            self.cfg.frame_width))
        if self.cfg.code_effect == "image":
            base = self._head(x, context, torch.zeros_like(action_latents))
            image = self.code_image(action_latents).view(base.shape)
            maps = self._crop_maps(action_latents)
            if maps is not None:
                image = image + self._crop_effect(past, maps)
            return self._with_image(base, image)
        return self._head(x, context, action_latents)

    def _decoder_view(self, past: torch.Tensor) -> torch.Tensor:
        """The past frames as the decoder sees them: with ``lam.mirror_crop = P``, the central P x P px of each
        replaced by the mean of themselves and their left-right mirror image (the same for either facing)."""
        if not self.cfg.mirror_crop:
            return past
        rows, cols = centre_box(self.cfg.mirror_crop, *past.shape[-2:])
        crop = past[..., rows, cols]
        past = past.clone()
        past[..., rows, cols] = (crop + crop.flip(-1)) / 2
        return past

    def _crop_maps(self, latents: torch.Tensor) -> torch.Tensor | None:
        """latents (..., D) -> each one's linear map of the central crop (..., P*P, P*P), or None without one."""
        if not self.cfg.effect_crop:
            return None
        p2 = self.cfg.effect_crop ** 2
        return self.code_map(latents).view(*latents.shape[:-1], p2, p2)

    def _crop_effect(self, past: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """past (B, T, 3, H, W) and maps (P*P, P*P) or (B, T, P*P, P*P) -> (B, T, 3, H, W): each map applied to
        every channel of x_t's central P x P crop, zero elsewhere."""
        p, (height, width) = self.cfg.effect_crop, past.shape[-2:]
        rows, cols = centre_box(p, height, width)
        crop = past[..., rows, cols].flatten(-2)  # (B, T, 3, P*P)
        if maps.ndim == 2:
            out = crop @ maps.t()
        else:
            out = torch.einsum("btcq,btpq->btcp", crop, maps)
        return F.pad(out.unflatten(-1, (p, p)), (cols.start, width - cols.stop, rows.start, height - rows.stop))

    @staticmethod
    def _with_image(base: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """A code's change image added to the code-free prediction, clipped to [0, 1] (straight-through)."""
        pred = base + image
        return pred + (pred.clamp(0, 1) - pred).detach()

    @torch.no_grad()
    def infer_clip_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, L, 3, H, W) of any length L >= 2 -> actions long (B, L-1).

        The LAM sees windows of at most its trained T frames, consecutive windows sharing one frame, so every
        transition is inferred in-distribution (a longer window would put the encoder's causal attention where
        it was never trained).
        """
        length, window = video.shape[1], self.cfg.num_frames
        parts, start = [], 0
        while start < length - 1:
            parts.append(self.infer_actions(video[:, start:start + window]))
            start += window - 1
        return torch.cat(parts, 1) if parts else self.infer_actions(video)

    @torch.no_grad()
    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> actions long (B, T-1); action t is the transition x_t -> x_{t+1}."""
        if not self.pruned:
            raise ValueError(f"this LAM has not pruned its {self.live} codes to lam.num_actions = "
                             f"{self.num_actions} yet (at step lam.prune_at = {self.cfg.prune_at}): train it further")
        was_training = self.training
        self.eval()  # no side effects: neither code usage nor the running statistics move (same actions)
        try:
            return self.choose(video)["indices"]
        finally:
            self.train(was_training)
