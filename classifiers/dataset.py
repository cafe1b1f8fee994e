"""Labelled clips: join a label file to the clips of a run (or shards), prepared for one model family.

Labels name videos (the paper labelled whole videos) or single clips; a clip takes its own label when it has
one, else its video's. The label file is validated on its own first (format, scores, duplicates,
conflicts) -- before ``--clips`` is read, so a wrong clips path cannot hide the file's problems -- and then
against the ids actually present in the clips, each kind against its own kind (video ids, clip keys), so
a typo in a video id is an error with a line number rather than a silently smaller training set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time

import numpy as np

from classifiers.clip_source import SourceProblem, iter_clips, iter_samples
from classifiers.geometry import LEGACY_GEOMETRY, ClipGeometry
from classifiers.labels import LabelPolicy, LabelSet, load_labels
from classifiers.models import ClipModel
from schemas import reasons
from schemas.clip_codec import decode_clip
from schemas.figures import frame_strip

THUMB_FRAMES = 3  # frames in a clip's thumbnail strip (evaluation report)
LEFT_OUT = -1  # target of a clip whose hand score the policy leaves out of the binary task


class LabelCoverageError(ValueError):
    """The labels and clips together give too few binary-labelled clips for the task asked."""


@dataclasses.dataclass
class LabelledClips:
    """Prepared inputs of the clips whose label maps to a binary target, in shard order."""

    clip_keys: list[str]
    video_ids: list[str]
    scores: np.ndarray  # the 1..5 hand score behind each target
    targets: np.ndarray  # 1 good, 0 bad (LEFT_OUT: only with ``include_left_out``)
    inputs: np.ndarray  # the model family's prepared inputs, stacked
    counts: dict[str, int]  # clips seen / labelled / left out by the policy / unlabelled / unreadable
    problems: list[SourceProblem]
    geometry: ClipGeometry = LEGACY_GEOMETRY  # the one frame size and rate of the clips (recorded in the model)

    def __len__(self) -> int:
        return len(self.clip_keys)

    def subset(self, index: np.ndarray) -> LabelledClips:
        """The clips at ``index`` (indices or a boolean mask), same counts and problems."""
        idx = np.arange(len(self))[index]
        return dataclasses.replace(self, clip_keys=[self.clip_keys[i] for i in idx],
                                   video_ids=[self.video_ids[i] for i in idx], scores=self.scores[idx],
                                   targets=self.targets[idx], inputs=self.inputs[idx])


def known_ids(source: str) -> dict[str, set[str]]:
    """``{"video": video ids, "clip": clip keys}`` present in the shards (reads the json members, decodes
    nothing). Kept apart by kind so that a clip label naming a video (or the reverse) is caught."""
    ids: dict[str, set[str]] = {reasons.ITEM_VIDEO: set(), reasons.ITEM_CLIP: set()}
    for sample in iter_samples(source):
        ids[reasons.ITEM_CLIP].add(sample.clip.clip_key)
        ids[reasons.ITEM_VIDEO].add(sample.clip.video_id)
    return ids


def thumbnail(frames: np.ndarray, n: int = THUMB_FRAMES) -> np.ndarray:
    """``n`` evenly spaced frames side by side."""
    pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return frame_strip(frames[pick])


def thumbnails(source: str, keys: set[str]) -> dict[str, np.ndarray]:
    """Thumbnail strips of the named clips only (a second pass: holding strips of every clip would not scale)."""
    out = {}
    for sample in iter_samples(source):
        if sample.key in keys:
            with contextlib.suppress(Exception):  # unreadable clips were reported by the first pass
                out[sample.key] = thumbnail(decode_clip(sample.clip.mp4))
    return out


def load_labelled_clips(source: str, labels_path: str, model: ClipModel, policy: LabelPolicy,
                        allow_unknown: bool = False, log=None, include_left_out: bool = False
                        ) -> tuple[LabelledClips, LabelSet]:
    """Validate the labels, then against ``source``'s clips, and prepare every clip that has a binary target.

    ``include_left_out``: also prepare the clips whose score the policy leaves out (target ``LEFT_OUT``),
    for reports by hand score; they are still counted in ``left_out_by_policy``.
    """
    log = log or sys.stderr  # at call time: a default bound at import outlives a replaced sys.stderr
    labels = load_labels(labels_path, policy=policy)  # the file's own problems, before --clips is read
    labels = labels.check_ids(known_ids(source), allow_unknown)
    for note in labels.notes:
        print(f"labels: {note}", file=log)
    keys, videos, scores, targets, inputs = [], [], [], [], []
    counts = {"clips_read": 0, "labelled": 0, "left_out_by_policy": 0, "unlabelled": 0}
    problems: list[SourceProblem] = []
    geometries: set[ClipGeometry] = set()
    start = time.monotonic()
    for clip, frames in iter_clips(source, problems):
        counts["clips_read"] += 1
        geometries.add(ClipGeometry.of(clip))
        if len(geometries) > 1:  # a model learns one geometry (classifiers/geometry.py)
            raise LabelCoverageError(f"clips of several geometries in {source}: "
                                     f"{', '.join(sorted(g.describe() for g in geometries))}; train one "
                                     "classifier per geometry")
        score = labels.clip_score(clip.clip_key, clip.video_id)
        if score is None:
            counts["unlabelled"] += 1
            continue
        target = policy.target(score)
        if target is None:
            counts["left_out_by_policy"] += 1
            if not include_left_out:
                continue
            target = LEFT_OUT
        else:
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
                         counts, problems, next(iter(geometries), LEGACY_GEOMETRY))
    return data, labels
