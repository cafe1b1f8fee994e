"""Latent-action labels of expert episodes by a trained LAM (a lam-dynamics run): frames in, no true actions.

``Genie.infer_actions`` reads each episode in windows of the LAM's trained length (consecutive windows share a
frame), so every transition t -> t+1 gets the latent action the LAM gives it in training. Labels are written to
``labels.json`` next to the expert shards: {video_id: [latent per transition]}, with the run and codebook size.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from modeling.bc.transitions import read_episodes

LABELS_JSON = "labels.json"


@torch.no_grad()
def label_episodes(expert_dir: str | Path, genie_run: str | Path, device: str = "cpu") -> dict:
    from modeling.genie import Genie

    genie = Genie.load(genie_run, device=device)
    labels = {}
    for episode in read_episodes(expert_dir):
        frames = episode.frames  # only the frames: the true actions stay in the episode, unused here
        if tuple(frames.shape[1:3]) != genie.frame_size:
            raise ValueError(f"expert frames are {frames.shape[2]}x{frames.shape[1]}, the LAM of {genie_run} takes "
                             f"{genie.frame_size[1]}x{genie.frame_size[0]}")
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)[None]
        labels[episode.video_id] = genie.infer_actions(video)[0].tolist()
    doc = {"genie_run": str(Path(genie_run).resolve()), "num_latents": genie.num_actions, "labels": labels}
    (Path(expert_dir) / LABELS_JSON).write_text(json.dumps(doc))
    return doc


def read_labels(expert_dir: str | Path) -> dict:
    path = Path(expert_dir) / LABELS_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: label the expert data first (python -m modeling bc label)")
    return json.loads(path.read_text())
