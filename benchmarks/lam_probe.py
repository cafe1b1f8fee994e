"""Does a trained LAM's code say which action was taken? Its codes against the true actions of labelled shards.

    python benchmarks/lam_probe.py --lam runs/bc-cpu/lam --shards runs/bc-cpu/expert-easy
    python benchmarks/lam_probe.py --lam runs/lam-cpu/sticky/lam --shards runs/lam-cpu/data/sticky/holdout \
        --ceiling-train runs/lam-cpu/data/sticky/train --json out.json

The LAM labels every transition of ``--shards`` from frames alone; the labels are compared with the true actions:
codes used, NMI, AMI (NMI less what a random partition with the same code counts gets: it compares codebooks of
different sizes) and many-to-one accuracy against the majority baseline, also on CoinRun's 15 actions folded into
the 6 it distinguishes, and each code's transitions per effect. Also: the code's NMI with the camera's shift
(``lam_motion``), and the decoder's action-necessity check (``modeling.lam_check``). ``--ceiling-train`` adds the supervised ceiling (an
inverse-dynamics classifier with the LAM's encoder, the same budget; ``--ceiling-view PX`` shows it only the frame's
central PX x PX, where the player is); ``--oracle-decoder-steps`` trains the decoder
on the true actions. ``--json`` writes the numbers; recorded figures: docs/measurements/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from modeling.bc.transitions import read_episodes
from modeling.checkpoint import load_checkpoint, load_lam
from modeling.configs import LAMConfig
from modeling.data import LoaderConfig, clip_windows, to_float_video
from modeling.lam import LatentActionModel
from modeling.lam_check import action_necessity
from schemas import shard_source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lam_motion import camera_shifts, motion_line, motion_report  # noqa: E402

# Procgen's 15 buttons -> CoinRun's 6 distinct effects.
COINRUN_CLASSES = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5, 2, 2, 2, 2, 2, 2])
COINRUN_EFFECTS = ("left", "left+up", "none", "up", "right", "right+up")
CHECK_WINDOWS = 64


def scores(codes: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Codes used, NMI, AMI, many-to-one accuracy and the majority baseline.

    NMI and many-to-one both rise with the number of codes on their own (a finer partition of the same
    information); AMI subtracts the mutual information a random partition with the same code counts would get, so
    LAMs with different codebook sizes compare on it."""
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    many_to_one = sum(np.bincount(truth[codes == c]).max() for c in np.unique(codes)) / len(codes)
    return {"codes": len(np.unique(codes)), "nmi": float(normalized_mutual_info_score(truth, codes)),
            "ami": float(adjusted_mutual_info_score(truth, codes)),
            "many_to_one": float(many_to_one), "majority": float(np.bincount(truth).max() / len(truth))}


def by_code(codes: np.ndarray, effects: np.ndarray) -> list[dict]:
    """What each code stands for: per code used, its transitions and their count per CoinRun effect."""
    return [{"code": int(c), "transitions": int((codes == c).sum()),
             "effects": np.bincount(effects[codes == c], minlength=len(COINRUN_EFFECTS)).tolist()}
            for c in np.unique(codes)]


def by_code_table(rows: list[dict]) -> str:
    """``by_code`` as markdown: each code's share of transitions per effect, its largest in bold."""
    lines = ["| code | transitions | " + " | ".join(COINRUN_EFFECTS) + " |", "|---" * (2 + len(COINRUN_EFFECTS)) + "|"]
    for row in rows:
        shares = np.array(row["effects"]) / max(row["transitions"], 1)
        cells = [f"**{v:.2f}**" if k == shares.argmax() else f"{v:.2f}" for k, v in enumerate(shares)]
        lines.append(f"| {row['code']} | {row['transitions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def player_view(video: torch.Tensor, side: int) -> torch.Tensor:
    """video (..., H, W) in [0, 1] grey (0.5) outside its central ``side`` x ``side`` px, where a platformer's
    camera keeps the player; ``side`` 0: unchanged."""
    if not side:
        return video
    height, width = video.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    out = torch.full_like(video, 0.5)
    out[..., top:top + side, left:left + side] = video[..., top:top + side, left:left + side]
    return out


class InverseDynamics(nn.Module):
    """The supervised ceiling: a LAM encoder (same config, same inputs) whose action token is classified.

    ``view`` > 0 shows it only the central ``view`` px of every frame (``player_view``): where the action is in a
    platformer, without the scrolling background a small budget cannot train the classifier to ignore."""

    def __init__(self, cfg: LAMConfig, num_classes: int, view: int = 0):
        super().__init__()
        self.view = view
        # the encoder of an encoder LAM of this config (a best-fit LAM has none; its decoder options do not matter)
        self.lam = LatentActionModel(dataclasses.replace(cfg, code_choice="encoder", code_effect="film", effect_crop=0,
                                                         train_codes=0, prune_at=0))
        for name in ("dec_stem", "dec_in", "dec_pos", "action_in", "decoder", "pixel_head", "to_pixels", "vq",
                     "to_latent", "latent_norm"):
            if hasattr(self.lam, name):
                delattr(self.lam, name)  # the encoder alone
        self.head = nn.Linear(cfg.enc_dim, num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> logits (B, T-1, classes)."""
        return self.head(self.lam.action_features(player_view(video, self.view)))

    @torch.no_grad()
    def infer_clip_actions(self, video: torch.Tensor) -> torch.Tensor:
        """As ``LatentActionModel.infer_clip_actions``: windows of T frames sharing one frame."""
        length, window, parts, start = video.shape[1], self.lam.cfg.num_frames, [], 0
        while start < length - 1:
            parts.append(self(video[:, start:start + window]).argmax(-1))
            start += window - 1
        return torch.cat(parts, 1)


def train_ceiling(cfg: LAMConfig, shards: str, steps: int, batch: int, log=print, view: int = 0
                  ) -> InverseDynamics:
    """The inverse-dynamics classifier trained on the true actions (CoinRun's 6 classes) of ``shards``."""
    torch.manual_seed(0)
    model = InverseDynamics(cfg, int(COINRUN_CLASSES.max()) + 1, view)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    classes = torch.from_numpy(COINRUN_CLASSES)
    loader = clip_windows(shard_source.resolve(shards), LoaderConfig(
        window=cfg.num_frames, batch_size=batch, shuffle=True, resampled=True, seed=0, shuffle_buffer=64,
        drop_last=True), frame_size=(cfg.frame_height, cfg.frame_width))
    started = time.perf_counter()
    for step, data in zip(range(steps), loader, strict=False):
        for group in optimizer.param_groups:  # warm-up, then cosine to 10%, as the LAM's schedule
            warm = min(1.0, (step + 1) / max(1, min(50, steps // 10)))
            group["lr"] = 1e-3 * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        truth = classes[data["actions"][:, :-1].clamp(min=0)]
        loss = F.cross_entropy(model(to_float_video(data["video"])).flatten(0, 1), truth.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"ceiling step {step + 1}/{steps} loss {float(loss.detach()):.3f} ({time.perf_counter() - started:.0f} s)")
    return model.eval()


def train_oracle_decoder(cfg: LAMConfig, shards: str, steps: int, batch: int, log=print
                         ) -> tuple[LatentActionModel, nn.Embedding]:
    """The LAM's decoder fed the TRUE action (a learned embedding of Procgen's 15, normalised like a code) instead
    of the encoder's code, trained alone: what the action itself is worth to this decoder."""
    torch.manual_seed(0)
    lam, embed = LatentActionModel(cfg), nn.Embedding(len(COINRUN_CLASSES), cfg.latent_dim)
    decoder = [p for n, p in lam.named_parameters()
               if n.startswith(("dec_", "action_in", "decoder", "pixel_head", "to_pixels", "code_image"))]
    optimizer = torch.optim.AdamW([*decoder, *embed.parameters()], lr=1e-3, weight_decay=1e-4)
    loader = clip_windows(shard_source.resolve(shards), LoaderConfig(
        window=cfg.num_frames, batch_size=batch, shuffle=True, resampled=True, seed=0, shuffle_buffer=64,
        drop_last=True), frame_size=(cfg.frame_height, cfg.frame_width))
    for step, data in zip(range(steps), loader, strict=False):
        for group in optimizer.param_groups:
            warm = min(1.0, (step + 1) / max(1, min(50, steps // 10)))
            group["lr"] = 1e-3 * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        video = to_float_video(data["video"])
        code = F.normalize(embed(data["actions"][:, :-1].clamp(min=0)), dim=-1)
        loss = F.mse_loss(lam.decode(video[:, :-1], code), video[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"oracle decoder step {step + 1}/{steps} loss {float(loss.detach()):.5f}")
    return lam.eval(), embed


@torch.no_grad()
def oracle_gap(lam: LatentActionModel, embed: nn.Embedding, video: torch.Tensor, actions: torch.Tensor
               ) -> dict[str, float]:
    """Held-out PSNR of the oracle decoder with the true actions and with the best constant action."""
    target, truth = video[:, 1:], actions[:, :-1].clamp(min=0)

    def psnr(a: torch.Tensor) -> float:
        mse = float((lam.decode(video[:, :-1], F.normalize(embed(a), dim=-1)) - target).pow(2).mean())
        return 10 * math.log10(1 / max(mse, 1e-10))

    true = psnr(truth)
    constant = max(psnr(torch.full_like(truth, k)) for k in range(embed.num_embeddings))
    return {"psnr_true": true, "psnr_constant": constant, "gap_db": true - constant}


def label(model, episodes) -> tuple[np.ndarray, np.ndarray]:
    codes, truth = [], []
    for episode in episodes:
        video = torch.from_numpy(episode.frames).permute(0, 3, 1, 2).float().div_(255.0)[None]
        codes.append(model.infer_clip_actions(video.to(next(model.parameters()).device))[0].cpu().numpy())
        truth.append(episode.actions[:len(episode.frames) - 1])
    return np.concatenate(codes), np.concatenate(truth)


def check_batch(episodes, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to CHECK_WINDOWS windows of ``window`` frames, spread evenly over the episodes' frames."""
    spans = [(i, s) for i, e in enumerate(episodes) for s in range(0, len(e.frames) - window + 1, window)]
    picks = [spans[j] for j in np.linspace(0, len(spans) - 1, min(CHECK_WINDOWS, len(spans))).astype(int)]
    video = np.stack([episodes[i].frames[s:s + window] for i, s in picks])
    actions = np.stack([episodes[i].actions[s:s + window] for i, s in picks])
    return to_float_video(torch.from_numpy(video)), torch.from_numpy(actions)


def lam_budget(run: str) -> tuple[int, int]:
    """(steps trained, batch) of a LAM run."""
    from modeling.checkpoint import read_run_config

    cfg, _, _ = read_run_config(run)
    return int(load_checkpoint(run)["step"]), cfg.train_lam_dynamics.batch_size


@torch.no_grad()
def probe(lam_run: str, shards: str, max_videos: int = 200, ceiling_train: str | None = None,
          ceiling_steps: int | None = None, ceiling_batch: int | None = None, oracle_steps: int = 0,
          log=print, device: str = "cpu", ceiling_view: int = 0) -> dict:
    """Every number of the probe as a dict (what ``--json`` writes); the LAM runs on ``device`` (the ceiling and
    the oracle decoder train on the CPU)."""
    lam, cfg = load_lam(lam_run, map_location=device)
    episodes = read_episodes(shards)[:max_videos]
    codes, truth = label(lam, episodes)
    result: dict = {"lam": lam_run, "shards": shards, "transitions": int(len(codes)), "videos": len(episodes),
                    "num_codes": lam.num_actions,
                    "lam_15": scores(codes, truth), "lam_6": scores(codes, COINRUN_CLASSES[truth]),
                    "by_code": by_code(codes, COINRUN_CLASSES[truth])}
    result["motion"] = motion_report([camera_shifts(e.frames) for e in episodes], codes, COINRUN_CLASSES[truth])
    batch_video, batch_actions = check_batch(episodes, cfg.lam.num_frames)
    result["check"] = action_necessity(lam, batch_video.to(device), batch_actions.to(device))
    if oracle_steps and ceiling_train:
        _, batch = lam_budget(lam_run)
        with torch.enable_grad():
            decoder, embed = train_oracle_decoder(cfg.lam, ceiling_train, oracle_steps, ceiling_batch or batch, log)
        result["oracle_decoder"] = {**oracle_gap(decoder, embed, batch_video, batch_actions), "steps": oracle_steps}
    if ceiling_train:
        steps, batch = lam_budget(lam_run)
        steps, batch = ceiling_steps or steps, ceiling_batch or batch
        started = time.perf_counter()
        with torch.enable_grad():
            model = train_ceiling(cfg.lam, ceiling_train, steps, batch, log, ceiling_view)
        predicted, truth6 = label(model, episodes)
        ceiling = scores(predicted, COINRUN_CLASSES[truth6])
        ceiling["accuracy"] = float((predicted == COINRUN_CLASSES[truth6]).mean())
        result["ceiling"] = {**ceiling, "steps": steps, "batch": batch, "view": ceiling_view,
                             "seconds": round(time.perf_counter() - started, 1)}
        result["nmi_share_of_ceiling"] = result["lam_6"]["nmi"] / max(ceiling["nmi"], 1e-9)
    return result


def table(result: dict) -> str:
    lines = [f"{result['transitions']} transitions of {result['videos']} videos, {result['num_codes']} codes",
             "| model | true actions | codes used | NMI | AMI | many-to-one | majority baseline |",
             "|---|---|---|---|---|---|---|"]
    for name, key in (("LAM", "lam_15"), ("LAM", "lam_6")):
        s = result[key]
        classes = "Procgen's 15" if key.endswith("15") else "CoinRun's 6 effects"
        lines.append(f"| {name} | {classes} | {s['codes']} | {s['nmi']:.3f} | {s['ami']:.3f} | "
                     f"{s['many_to_one']:.3f} | {s['majority']:.3f} |")
    if "ceiling" in result:
        c = result["ceiling"]
        view = f", central {c['view']} px" if c.get("view") else ""
        lines.append(f"| supervised ceiling ({c['steps']} steps x {c['batch']}{view}) | CoinRun's 6 effects "
                     f"| {c['codes']} | {c['nmi']:.3f} | {c['ami']:.3f} | {c['many_to_one']:.3f} (accuracy "
                     f"{c['accuracy']:.3f}) | {c['majority']:.3f} |")
        lines.append(f"\nLAM NMI / ceiling NMI: {result['nmi_share_of_ceiling']:.2f}")
    lines.append("\nThe codes against CoinRun's 6 effects (each code's transitions, shares per effect):\n")
    lines.append(by_code_table(result["by_code"]))
    if "oracle_decoder" in result:
        o = result["oracle_decoder"]
        lines.append(f"\nDecoder trained on the true action ({o['steps']} steps): {o['psnr_true']:.2f} dB with it, "
                     f"{o['psnr_constant']:.2f} dB with the best constant action (the action is worth "
                     f"{o['gap_db']:+.2f} dB)")
    if "motion" in result:
        lines.append("\n" + motion_line(result["motion"]))
    c = result["check"]
    true = f", true action {c['psnr_true']:.2f} dB (gap {c['true_gap_db']:+.2f})" if "psnr_true" in c else ""
    lines.append(f"\nDecoder PSNR on {CHECK_WINDOWS} windows: inferred code {c['psnr_inferred']:.2f} dB, best "
                 f"constant {c['psnr_constant']:.2f} dB (gap {c['gap_db']:+.2f}){true}, continuous latent "
                 f"{c['psnr_continuous']:.2f} dB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lam", required=True, help="a run with a LAM (lam, lam-dynamics or dynamics)")
    parser.add_argument("--shards", required=True, help="shards with true actions (a directory with shards/)")
    parser.add_argument("--max-videos", type=int, default=200)
    parser.add_argument("--ceiling-train", help="shards with true actions to train the supervised ceiling on")
    parser.add_argument("--ceiling-steps", type=int, help="its steps (default: the LAM run's)")
    parser.add_argument("--ceiling-batch", type=int, help="its batch (default: the LAM run's)")
    parser.add_argument("--ceiling-view", type=int, default=0, metavar="PX",
                        help="show the ceiling only the central PX x PX of every frame, where the camera keeps the "
                             "player (default 0: the whole frame, the LAM's own input)")
    parser.add_argument("--oracle-decoder-steps", type=int, default=0,
                        help="also train the LAM's decoder on the true actions of --ceiling-train this many steps: "
                             "what the action is worth to it (default 0: not run)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    for flag, path in (("--lam", args.lam), ("--shards", args.shards), ("--ceiling-train", args.ceiling_train)):
        if path and not Path(path).exists():
            parser.error(f"{flag} {path} does not exist")
    if args.ceiling_view < 0:
        parser.error(f"--ceiling-view must be >= 0 px, got {args.ceiling_view}")
    if args.ceiling_view and not args.ceiling_train:
        parser.error("--ceiling-view needs --ceiling-train SHARDS (the shards the ceiling trains on)")
    if args.oracle_decoder_steps and not args.ceiling_train:
        parser.error("--oracle-decoder-steps needs --ceiling-train SHARDS (the shards it trains on)")
    result = probe(args.lam, args.shards, args.max_videos, args.ceiling_train, args.ceiling_steps,
                   args.ceiling_batch, args.oracle_decoder_steps, ceiling_view=args.ceiling_view)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
