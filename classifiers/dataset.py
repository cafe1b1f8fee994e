"""Labelled clips: join a label file to the clips of a run (or shards), prepared for one model family.

Labels name videos (the paper labelled whole videos) or single clips; a clip takes its own label when it has
one, else its video's. The label file is validated against the ids actually present in the clips, so a typo
in a video id is an error with a line number rather than a silently smaller training set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time

import numpy as np

from classifiers.clip_source import SourceProblem, iter_clips, iter_samples
from classifiers.labels import LabelPolicy, LabelSet, load_labels
from classifiers.models import ClipModel
from pipeline.clip_codec import decode_clip

THUMB_FRAMES = 3  # frames in a clip's thumbnail strip (evaluation report)


@dataclasses.dataclass
class LabelledClips:
    """Prepared inputs of the clips whose label maps to a binary target, in shard order."""

    clip_keys: list[str]
    video_ids: list[str]
    scores: np.ndarray  # the 1..5 hand score behind each target
    targets: np.ndarray  # 1 good, 0 bad
    inputs: np.ndarray  # the model family's prepared inputs, stacked
    counts: dict[str, int]  # clips seen / labelled / left out by the policy / unlabelled / unreadable
    problems: list[SourceProblem]

    def __len__(self) -> int:
        return len(self.clip_keys)


def known_ids(source: str) -> set[str]:
    """The video ids and clip keys present in the shards (reads the json members, decodes nothing)."""
    ids: set[str] = set()
    for sample in iter_samples(source):
        ids.add(sample.clip.clip_key)
        ids.add(sample.clip.video_id)
    return ids


def thumbnail(frames: np.ndarray, n: int = THUMB_FRAMES) -> np.ndarray:
    """``n`` evenly spaced frames side by side."""
    pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return np.concatenate(list(frames[pick]), axis=1)


def thumbnails(source: str, keys: set[str]) -> dict[str, np.ndarray]:
    """Thumbnail strips of the named clips only (a second pass: holding strips of every clip would not scale)."""
    out = {}
    for sample in iter_samples(source):
        if sample.key in keys:
            with contextlib.suppress(Exception):  # unreadable clips were reported by the first pass
                out[sample.key] = thumbnail(decode_clip(sample.clip.mp4))
    return out


def load_labelled_clips(source: str, labels_path: str, model: ClipModel, policy: LabelPolicy,
                        allow_unknown: bool = False, log=sys.stderr) -> tuple[LabelledClips, LabelSet]:
    """Validate the labels against ``source``'s clips and prepare every clip that has a binary target."""
    labels = load_labels(labels_path, known_ids(source), policy, allow_unknown)
    for note in labels.notes:
        print(f"labels: {note}", file=log)
    keys, videos, scores, targets, inputs = [], [], [], [], []
    counts = {"clips_read": 0, "labelled": 0, "left_out_by_policy": 0, "unlabelled": 0}
    problems: list[SourceProblem] = []
    start = time.monotonic()
    for clip, frames in iter_clips(source, problems):
        counts["clips_read"] += 1
        score = labels.clip_score(clip.clip_key, clip.video_id)
        if score is None:
            counts["unlabelled"] += 1
            continue
        target = policy.target(score)
        if target is None:
            counts["left_out_by_policy"] += 1
            continue
        counts["labelled"] += 1
        keys.append(clip.clip_key)
        videos.append(clip.video_id)
        scores.append(score)
        targets.append(target)
        inputs.append(model.prepare(frames))
        if counts["clips_read"] % 200 == 0:
            print(f"  prepared {counts['clips_read']} clips ({time.monotonic() - start:.0f} s)", file=log)
    counts["unreadable"] = len(problems)
    for p in problems:
        print(f"clips: skipped unreadable sample {p.key!r} in {p.shard}: {p.error}", file=log)
    data = LabelledClips(keys, videos, np.array(scores, dtype=int), np.array(targets, dtype=int),
                         np.stack(inputs) if inputs else np.zeros((0,)),
                         counts, problems)
    return data, labels
