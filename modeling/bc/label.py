"""Latent-action labels of expert episodes by a trained LAM: frames in, no true actions.

The LAM comes from any run that trained one: a ``lam`` run (``python -m modeling train lam``, the LAM alone, e.g.
trained on the expert videos themselves, unlabelled) or a ``lam-dynamics``/``dynamics`` run (e.g. ``make
coinrun-cpu``'s). ``LatentActionModel.infer_clip_actions`` reads each episode in windows of the LAM's trained
length (consecutive windows share a frame), so every transition t -> t+1 gets the latent action the LAM gives
it in training. Labels are written to ``labels.json`` next to the expert shards: {video_id: [latent per
transition]}, with the run and codebook size.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from modeling.bc.transitions import read_episodes
from modeling.checkpoint import load_lam
from modeling.precision import autocast

LABELS_JSON = "labels.json"


@torch.no_grad()
def label_episodes(expert_dir: str | Path, lam_run: str | Path, device: str = "cpu") -> dict:
    lam, cfg = load_lam(lam_run, map_location=device)
    frame_size = (cfg.lam.frame_height, cfg.lam.frame_width)
    labels = {}
    for episode in read_episodes(expert_dir):
        frames = episode.frames  # only the frames: the true actions stay in the episode, unused here
        if tuple(frames.shape[1:3]) != frame_size:
            raise ValueError(f"expert frames are {frames.shape[2]}x{frames.shape[1]}, the LAM of {lam_run} takes "
                             f"{frame_size[1]}x{frame_size[0]}")
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)[None].to(device)
        with autocast(cfg.precision, torch.device(device)):
            labels[episode.video_id] = lam.infer_clip_actions(video)[0].tolist()
    doc = {"lam_run": str(Path(lam_run).resolve()), "num_latents": cfg.lam.num_actions, "labels": labels}
    (Path(expert_dir) / LABELS_JSON).write_text(json.dumps(doc))
    return doc


def read_labels(expert_dir: str | Path) -> dict:
    path = Path(expert_dir) / LABELS_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: label the expert data first (python -m modeling bc label)")
    return json.loads(path.read_text())
