"""``python -m pipeline procgen-dataset OUT``: the Genie paper's CoinRun case-study dataset (Appendix F).

Procgen ``coinrun`` in hard mode, a uniformly random policy without action repeats, one 1,000-step episode
stream per level seed (``--levels A-B``; ``--holdout-levels`` for levels never trained on), Procgen's own 64x64
frames, cut into ``--clip-frames`` clips (a shorter last piece kept from ``--min-clip-frames``); ``actions[k]``
is the action taken after frame k. Output, in the pipeline's clip format so the models read it like any run:
``OUT/{train,holdout}/shards/shard-*.tar``, ``OUT/{train,holdout}/manifest/part-*.parquet``, ``OUT/dataset.json``.

Clips are lossless RGB H.264 so decoded frames equal the rendered ones (yuv420p blurs 64x64 pixel art:
docs/measurements/2026-11-24-figures-kept-from-code-comments.md). A shard is a fixed level range that one worker
renders, encodes and writes from its plan alone, every random choice seeded by (``--seed``, level): two runs write
byte-identical shards. The environment and the clip cutting are ``schemas.procgen``'s; this is the Beam job.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipeline import shards
from pipeline.audit import manifest
from pipeline.cli import beam_flags, options
from pipeline.cli.cli_types import integer
from pipeline.cli.options import derived, option
from pipeline.io import storage
from pipeline.tools.demo_corpus.games import NUM_ACTIONS, RENDER_SIZE, StickyPolicy
from schemas import Clip, clip_format
from schemas.cli import StrictParser
from schemas.procgen import (
    DISTRIBUTION_MODES,
    NATIVE_SIZE,
    LevelStream,
    level_range,
    make_env,
    observe_frame,
    stream_clips,
)

POLICIES = ("random", "sticky")  # random: the paper's (no repeats); sticky: the demo corpus's held actions
TRAIN, HOLDOUT = "train", "holdout"
DATASET_JSON = "dataset.json"


# ---- the settings and their flags ---------------------------------------------------------------------------
def frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        w, h = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 64x64, got {text!r}") from None
    if not sep or not (2 <= w <= RENDER_SIZE and 2 <= h <= RENDER_SIZE):
        raise argparse.ArgumentTypeError(f"expected WxH within 2..{RENDER_SIZE}, got {text!r}")
    return w, h


@dataclasses.dataclass(frozen=True)
class ProcgenDatasetConfig:
    """The dataset's settings (all but ``out`` are written to dataset.json); each flag is declared on its field."""

    out: str = option("out", help="output directory or gs:// prefix")  # local or gs://
    game: str = option("--game", default="coinrun", help="Procgen game (default coinrun)")
    levels: tuple[int, int] = option(  # first and last level seed of the training split, inclusive
        "--levels", type=level_range, default=(0, 9999),
        help="training level seeds A-B, inclusive (default 0-9999: the paper's 10,000 levels)")
    holdout_levels: tuple[int, int] | None = option(  # the same for the held-out split (None: no held-out split)
        "--holdout-levels", type=level_range, default=None,
        help="held-out level seeds C-D for evaluation, written to OUT/holdout (default: none)")
    steps: int = option("--steps", type=integer(1), default=1000,  # environment steps (= frames) per level
                        help="steps (frames) per level (default 1000)")
    width: int = option("--size", type=frame_size, default=NATIVE_SIZE, flag_default=(NATIVE_SIZE, NATIVE_SIZE),
                        to_field=lambda size, _: size[0],
                        help="frame size WxH (default 64x64: Procgen's observation; others resize the 512 render)")
    height: int = derived(lambda flags: flags["--size"][1], default=NATIVE_SIZE)
    fps: float = option(  # recorded frame rate (Procgen has no clock; 10 FPS is the pipeline's)
        "--fps", type=float, default=float(clip_format.CLIP_FPS), help="frame rate recorded in the clips (default 10)")
    clip_frames: int = option("--clip-frames", type=integer(1), default=clip_format.CLIP_FRAMES,  # frames per clip
                              help="frames per clip (default 160)")
    min_clip_frames: int = option(  # a stream's last piece is kept when at least this long
        "--min-clip-frames", type=integer(1), default=16,
        help="keep a level's last, shorter clip when it has at least this many frames (16)")
    policy: str = option("--policy", choices=POLICIES, default="random",
                         help="random: a uniformly random action every step (the paper's, default); "
                              "sticky: actions held for 2-8 steps, biased right/jump (the demo corpus's)")
    distribution_mode: str = option("--distribution-mode", choices=DISTRIBUTION_MODES, default="hard",
                                    help="(default hard)")
    levels_per_shard: int = option(  # ~330 clips, ~150 MB per shard at 1,000 steps and 64x64
        "--levels-per-shard", type=integer(1), default=50, help="levels per shard (default 50)")
    seed: int = option("--seed", type=integer(0), default=0, help="seeds the policy and Procgen (default 0)")
    table_part_rows: int = option("--table-part-rows", type=integer(1), default=20_000,  # manifest rows per part
                                  help="manifest rows per part")

    def split_levels(self) -> dict[str, tuple[int, int]]:
        splits = {TRAIN: self.levels}
        if self.holdout_levels is not None:
            splits[HOLDOUT] = self.holdout_levels
        return splits

    def stream(self) -> LevelStream:
        """How every level is played and cut (``schemas.procgen``, shared with ``modeling.bc``)."""
        return LevelStream(game=self.game, distribution_mode=self.distribution_mode, seed=self.seed,
                           width=self.width, height=self.height, fps=self.fps, clip_frames=self.clip_frames,
                           min_clip_frames=self.min_clip_frames)


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One shard: a split, its index in the split, and the consecutive levels it holds."""

    split: str
    index: int
    first_level: int
    last_level: int  # inclusive


def plan_shards(config: ProcgenDatasetConfig) -> list[ShardPlan]:
    plans = []
    for split, (first, last) in config.split_levels().items():
        for index, start in enumerate(range(first, last + 1, config.levels_per_shard)):
            plans.append(ShardPlan(split, index, start, min(start + config.levels_per_shard - 1, last)))
    return plans


# ---- one level's stream ------------------------------------------------------------------------------------
def play_level(config: ProcgenDatasetConfig, level: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``config.steps`` frames of ``level`` under the policy: (frames (N, H, W, 3) uint8, actions (N,), episodes).

    ``actions[k]`` is taken after frame k; ``episodes`` counts the tries begun (1 + restarts)."""
    stream = config.stream()
    env = make_env(stream, level)
    rng = np.random.default_rng([config.seed, level])
    sticky = StickyPolicy(rng, platformer=True) if config.policy == "sticky" else None
    frames = np.empty((config.steps, config.height, config.width, 3), np.uint8)
    actions = np.empty(config.steps, np.int64)
    episodes = 0
    for k in range(config.steps):
        episodes += int(env.observe()[2][0])
        frames[k] = observe_frame(env, stream)
        actions[k] = sticky.next() if sticky else int(rng.integers(NUM_ACTIONS))
        env.act(actions[k:k + 1])
    return frames, actions, episodes


def level_clips(config: ProcgenDatasetConfig, level: int) -> tuple[list[Clip], int]:
    """The encoded clips of one level's stream (and its episode count)."""
    frames, actions, episodes = play_level(config, level)
    return stream_clips(config.stream(), level, frames, actions), episodes


def split_dir(out: str, split: str) -> str:
    return FileSystems.join(out, split)


def shard_path(out: str, plan: ShardPlan) -> str:
    return FileSystems.join(split_dir(out, plan.split), clip_format.SHARD_DIR, clip_format.shard_name(plan.index))


# ---- Beam --------------------------------------------------------------------------------------------------
INDEX = "index"


class _RenderShardFn(beam.DoFn):
    """ShardPlan -> the shard written; yields manifest Clips (no bytes) and one INDEX entry."""

    def __init__(self, config: ProcgenDatasetConfig):
        self.config = config
        self.levels = beam.metrics.Metrics.counter("procgen_dataset", "levels")
        self.clips = beam.metrics.Metrics.counter("procgen_dataset", "clips")

    def process(self, plan: ShardPlan) -> Iterator:
        clips, episodes = [], 0
        for level in range(plan.first_level, plan.last_level + 1):
            level_out, level_episodes = level_clips(self.config, level)
            clips.extend(level_out)
            episodes += level_episodes
            self.levels.inc()
        written = shards.write_shard(shard_path(self.config.out, plan), clips)
        self.clips.inc(len(written))
        location = f"{clip_format.SHARD_DIR}/{clip_format.shard_name(plan.index)}"
        yield beam.pvalue.TaggedOutput(INDEX, {
            "split": plan.split, "name": location, "levels": [plan.first_level, plan.last_level],
            "clips": len(written), "frames": sum(c.num_frames for c in written), "episodes": episodes,
            "bytes": sum(len(c.mp4) for c in written)})
        for clip in written:
            yield clip.replace(mp4=None, location=location)


class BuildSplit(beam.PTransform):
    """Shard plans of one split -> shards and manifest under ``OUT/<split>/``; outputs the INDEX entries."""

    def __init__(self, config: ProcgenDatasetConfig, split: str):
        super().__init__()
        self.config, self.split = config, split

    def expand(self, plans):
        rendered = (plans
                    | "Spread" >> beam.Reshuffle()  # one shard per worker, not all in the Create's bundle
                    | "RenderAndWrite" >> beam.ParDo(_RenderShardFn(self.config)).with_outputs(INDEX, main="clips"))
        _ = rendered["clips"] | "Manifest" >> manifest.WriteManifest(split_dir(self.config.out, self.split),
                                                                     rows_per_part=self.config.table_part_rows)
        return rendered[INDEX]


def build(p: beam.Pipeline, config: ProcgenDatasetConfig) -> None:
    plans = plan_shards(config)
    indexes = []
    for split in config.split_levels():
        mine = [plan for plan in plans if plan.split == split]
        indexes.append(p | f"Plan{split.capitalize()}" >> beam.Create(mine)
                       | f"Build{split.capitalize()}" >> BuildSplit(config, split))
    _ = (indexes
         | "AllShards" >> beam.Flatten()
         | "ShardIndex" >> beam.combiners.ToList()  # one small entry per shard, not per clip
         | "WriteDatasetJson" >> beam.Map(write_dataset_json, config))


def write_dataset_json(entries: list[dict], config: ProcgenDatasetConfig) -> None:
    splits = {}
    for split in config.split_levels():
        mine = sorted((e for e in entries if e["split"] == split), key=lambda e: e["name"])
        splits[split] = {"levels": list(config.split_levels()[split]),
                         **{k: sum(e[k] for e in mine) for k in ("clips", "frames", "episodes", "bytes")},
                         "shards": [{k: v for k, v in e.items() if k != "split"} for e in mine]}
    settings = dataclasses.asdict(config)
    settings.pop("out")
    doc = {"settings": settings, "codec": "h264 lossless rgb (libx264rgb qp 0)", "splits": splits}
    with storage.atomic_create(FileSystems.join(config.out, DATASET_JSON)) as f:
        f.write(json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))


# ---- command line ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """How the job runs (not a dataset setting)."""

    workers: int | None = option("--workers", type=integer(1), default=None,
                                 help="local SDK worker processes when no --runner is given (default: CPU count)")
    in_process: bool = option("--in-process", action="store_true", default=False,
                              help="run locally in this one process")


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
        prog="python -m pipeline procgen-dataset",
        description="Write the Genie paper's CoinRun case-study dataset (Appendix F): Procgen levels played "
                    "by a policy, cut into clips, sharded, with a manifest.",
        epilog="Any other flag is passed to Beam (e.g. --runner DataflowRunner ...). See docs/pipeline.md.")
    options.add_options(parser, ProcgenDatasetConfig)
    options.add_options(parser, LaunchOptions)
    return parser


def parse(argv: list[str]) -> tuple[ProcgenDatasetConfig, LaunchOptions, list[str]]:
    from procgen.env import ENV_NAMES

    parser = build_parser()
    ns, beam_args = parser.parse_known_args(argv)
    beam_flags.refuse_unknown(parser, beam_args)
    config = options.build(ProcgenDatasetConfig, ns)
    out = config.out.rstrip("/")
    config = dataclasses.replace(config, out=out if "://" in out else os.path.abspath(out))
    if config.game not in ENV_NAMES:
        parser.error(f"--game must be one of {', '.join(ENV_NAMES)}, got {config.game!r}")
    levels, holdout = config.levels, config.holdout_levels
    if holdout is not None and not (holdout[1] < levels[0] or holdout[0] > levels[1]):
        parser.error(f"--holdout-levels {holdout[0]}-{holdout[1]} overlap --levels {levels[0]}-{levels[1]}")
    if config.fps <= 0 or config.fps != round(config.fps):
        parser.error(f"--fps must be a positive whole number, got {config.fps}")
    return config, options.build(LaunchOptions, ns), beam_args


def main(argv: list[str]) -> int:
    from pipeline.job import local_options, local_runner

    config, launch, beam_args = parse(argv)
    started = time.perf_counter()
    beam_options = local_options(beam_args, launch.workers, launch.in_process)
    p = beam.Pipeline(runner=local_runner(beam_args, beam_options), options=beam_options)
    build(p, config)
    p.run().wait_until_finish()
    with FileSystems.open(FileSystems.join(config.out, DATASET_JSON)) as f:
        splits = json.loads(f.read())["splits"]
    for split, info in splits.items():
        print(f"procgen-dataset: {split}: levels {info['levels'][0]}-{info['levels'][1]}, {info['clips']} clips, "
              f"{info['frames']} frames, {info['episodes']} episodes, {info['bytes'] / 1e6:.1f} MB in "
              f"{len(info['shards'])} shards -> {split_dir(config.out, split)}")
    print(f"procgen-dataset: done in {time.perf_counter() - started:.1f} s")
    return 0
