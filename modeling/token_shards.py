"""Token pre-extraction: run a trained tokenizer once over the clip shards and store the tokens, so dynamics
training reads small token shards instead of decoding video and running the tokenizer on every step.

Each clip is cut into consecutive windows of the tokenizer's T frames, each tokenised on its own, as in tokenizer
training (its encoder is causal); consumers must take windows aligned to multiples of T (``token_windows`` does).

Token shard sample (WebDataset, key = clip key):
    <key>.tokens.npy   uint16 (num_windows * T, h, w)
    <key>.json         {"format": 2, "clip_key", "num_frames", "window", "token_grid", "codebook_size",
                        "tokenizer_run", "actions": ground-truth action per frame or null,
                        "latent_actions": LAM action per frame (-1 at each window's last frame) or null}

``actions[k]`` and ``latent_actions[k]`` are the action taken AFTER frame k, as in the clip shards and
``LatentActionModel.infer_actions``; the dynamics model uses a window's ``latent_actions[:, :-1]``. Format 1 shards
(latent actions shifted by one) are refused. Latent actions are stored when ``lam_run`` is given (a lam-dynamics
run on the same tokenizer), so dynamics can be trained against a frozen LAM without pixels.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from modeling.checkpoint import load_genie, load_tokenizer, read_run_config
from modeling.data import ClipWindowDataset, LoaderConfig, to_float_video, window_loader
from modeling.precision import autocast as precision_autocast
from schemas import shard_source
from schemas.clip_codec import decode_clip
from schemas.records import ShardSample
from schemas.shard_source import ShardError

TOKEN_SHARD_FORMAT = 2  # 2: latent_actions[k] is the action after frame k, like actions[k]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@torch.no_grad()
def extract_tokens(shards: str | list[str], tokenizer_run: str, out: str | Path, lam_run: str | None = None,
                   batch_size: int = 8, clips_per_shard: int = 1000, device: str | None = None) -> dict[str, Any]:
    """Tokenise every clip of ``shards`` into ``out/tokens-%05d.tar``; returns a summary (also in summary.json)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(tokenizer_run, map_location=dev)
    lam = None
    if lam_run:
        lam_tokenizer, lam, _, _ = load_genie(lam_run, map_location=dev)
        if not _same_weights(lam_tokenizer, tokenizer):
            raise ValueError(f"--lam {lam_run} was trained on tokenizer {read_run_config(lam_run)[2]}, not on "
                             f"--tokenizer {tokenizer_run}: its dynamics model would not understand these tokens")
    window = tokenizer.cfg.num_frames
    if tokenizer.codebook_size > np.iinfo(np.uint16).max:
        raise ValueError(f"codebook of {tokenizer.codebook_size} codes does not fit uint16 token shards")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    autocast = precision_autocast(read_run_config(tokenizer_run)[0].precision, dev)  # as in training
    clips = frames_total = shard_index = 0
    sink = None
    samples = (raw for url in shard_source.resolve(shards) for raw in shard_source.raw_samples(url))
    try:
        for raw in samples:
            clip = ShardSample.from_wds(raw).clip
            frames = decode_clip(bytes(raw["mp4"]))
            if frames.shape[1:3] != (tokenizer.cfg.frame_height, tokenizer.cfg.frame_width):
                raise ShardError(f"shard {raw.get('__url__')}: clip {clip.clip_key!r} is "
                                 f"{frames.shape[2]}x{frames.shape[1]}, the tokenizer needs "
                                 f"{tokenizer.cfg.frame_width}x{tokenizer.cfg.frame_height}")
            n_windows = len(frames) // window
            if n_windows == 0:
                raise ShardError(f"clip {clip.clip_key!r} has {len(frames)} frames, fewer than {window}")
            video = torch.from_numpy(frames[:n_windows * window]).view(n_windows, window, *frames.shape[1:])
            tokens, latent = [], []
            for i in range(0, n_windows, batch_size):
                chunk = to_float_video(video[i:i + batch_size].to(dev))
                with autocast:
                    tokens.append(tokenizer.encode(chunk).cpu())
                    if lam is not None:
                        acts = lam.infer_actions(chunk).cpu()  # action k: frame k -> k + 1
                        latent.append(torch.cat([acts, torch.full((acts.shape[0], 1), -1)], dim=1))
            token_array = torch.cat(tokens).flatten(0, 1).numpy().astype(np.uint16)
            meta = {"format": TOKEN_SHARD_FORMAT, "clip_key": clip.clip_key,
                    "num_frames": int(token_array.shape[0]), "window": window,
                    "token_grid": list(tokenizer.token_grid), "codebook_size": tokenizer.codebook_size,
                    "tokenizer_run": str(tokenizer_run), "actions": clip.actions[:token_array.shape[0]]
                    if clip.actions is not None else None,
                    "latent_actions": torch.cat(latent).flatten().tolist() if latent else None}
            if sink is None or clips % clips_per_shard == 0:
                if sink is not None:
                    sink.close()
                sink = wds.TarWriter(str(out / f"tokens-{shard_index:05d}.tar"))
                shard_index += 1
            sink.write({"__key__": clip.clip_key, "tokens.npy": _npy_bytes(token_array),
                        "json": json.dumps(meta, sort_keys=True).encode()})
            clips += 1
            frames_total += token_array.shape[0]
    finally:
        if sink is not None:
            sink.close()
    summary = {"clips": clips, "frames": frames_total, "shards": shard_index, "window": window,
               "token_grid": list(tokenizer.token_grid), "latent_actions": lam is not None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu())
                                          for k in sa)


class TokenWindowDataset(ClipWindowDataset):
    """Batches of T-frame token windows (aligned to the extraction windows) from token shards.

    Yields dict(tokens long (B, T, h, w), actions long (B, T) ground truth or -1, latent_actions long (B, T)
    (the action after each frame, as ``actions``; -1 at the last frame / when not extracted), start, key,
    position). Same splitting, seeding and resume as ``ClipWindowDataset``. ``token_grid`` and
    ``codebook_size``, when given, are what the consuming model expects: shards made by another tokenizer are
    refused instead of silently feeding it tokens of the wrong grid or vocabulary.
    """

    def __init__(self, urls: str | list[str], config: LoaderConfig = LoaderConfig(),
                 token_grid: tuple[int, int] | None = None, codebook_size: int | None = None,
                 resume: dict[int, dict[str, Any]] | None = None):
        super().__init__(urls, replace(config, windows_per_clip=1), frame_size=None, resume=resume)
        self.token_grid, self.codebook_size = token_grid, codebook_size

    def _check(self, raw: dict[str, Any]) -> int:
        where = f"token shard {raw.get('__url__', '?')}: sample {raw.get('__key__')!r}"
        if "tokens.npy" not in raw or "json" not in raw:
            raise ShardError(f"{where} is not a token sample (needs tokens.npy and json; run "
                             "`python -m modeling extract-tokens`)")
        meta = json.loads(raw["json"])
        if meta["window"] != self.config.window:
            raise ShardError(f"{where} has window {meta['window']}, the model needs {self.config.window}")
        if self.token_grid is not None and tuple(meta["token_grid"]) != tuple(self.token_grid):
            raise ShardError(f"{where} has token grid {tuple(meta['token_grid'])}, the model needs "
                             f"{tuple(self.token_grid)}: extract tokens with the model's tokenizer")
        if self.codebook_size is not None and meta["codebook_size"] != self.codebook_size:
            raise ShardError(f"{where} has codebook size {meta['codebook_size']}, the model needs "
                             f"{self.codebook_size}: extract tokens with the model's tokenizer")
        if meta.get("latent_actions") is not None and meta.get("format", 1) != TOKEN_SHARD_FORMAT:
            raise ShardError(f"{where} is format {meta.get('format', 1)} (latent actions aligned differently); "
                             "re-run `python -m modeling extract-tokens`")
        return int(meta["num_frames"])

    def _pick_start(self, rng: np.random.Generator, num_frames: int, k: int) -> int:
        n_windows = num_frames // self.config.window
        return self.config.window * (int(rng.integers(0, n_windows)) if self.config.shuffle else k % n_windows)

    def _decode(self, raw: dict[str, Any], start: int) -> dict[str, Any]:
        meta = json.loads(raw["json"])
        tokens = np.load(io.BytesIO(raw["tokens.npy"]))[start:start + self.config.window].astype(np.int64)
        actions = np.full(self.config.window, -1, np.int64)
        latent = np.full(self.config.window, -1, np.int64)
        if meta.get("actions") is not None:
            actions[:] = meta["actions"][start:start + self.config.window]
        if meta.get("latent_actions") is not None:
            latent[:] = meta["latent_actions"][start:start + self.config.window]
        return {"tokens": tokens, "actions": actions, "latent_actions": latent, "start": start,
                "key": meta["clip_key"]}

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"tokens": torch.from_numpy(np.stack([i["tokens"] for i in items])),
                "actions": torch.from_numpy(np.stack([i["actions"] for i in items])),
                "latent_actions": torch.from_numpy(np.stack([i["latent_actions"] for i in items])),
                "start": torch.tensor([i["start"] for i in items], dtype=torch.long),
                "key": [i["key"] for i in items]}


def token_windows(pattern_or_urls: str | list[str], config: LoaderConfig = LoaderConfig(),
                  token_grid: tuple[int, int] | None = None, codebook_size: int | None = None,
                  resume: dict[int, dict[str, Any]] | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader of token window batches (see ``TokenWindowDataset``; ``config`` as for ``clip_windows``)."""
    return window_loader(TokenWindowDataset(pattern_or_urls, config, token_grid, codebook_size, resume))
