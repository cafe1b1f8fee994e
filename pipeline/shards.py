"""Stage 5: write kept clips into WebDataset tar shards, deterministically.

The same inputs give byte-identical shards on any runner and in any element order: the shard count follows from
the total clip bytes, a clip's shard is a stable hash (sha1) of its key, and ``schemas.shard_writer`` sorts by key
with fixed tar headers. Files go through ``FileSystems`` and ``storage.atomic_create``, so no reader sees a
half-written shard. Clips arrive as clip store references: the shuffle moves references and each writer reads its
clips' bytes with ranged reads in key order (``clip_store.in_order``). Outcomes: ``kept``; ``failed: shard_error``
(missing or damaged bytes, a refused write); ``failed: storage_error`` (the store kept failing after
``storage.retrying``: a rerun retries); ``dropped: duplicate``. Each shard yields an ``INDEX`` entry for
``shard_index.json``, which the launcher reads to find stale shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import stage
from pipeline.io import clip_store, storage
from schemas import Clip, Outcome, reasons, shard_writer
from schemas.clip_format import SHARD_DIR, shard_name

INDEX = "index"  # the extra output of WriteShards: one {"name", "clips", "bytes", "sha256"} per written shard


@dataclasses.dataclass(frozen=True)
class ShardConfig:
    output_dir: str  # run output directory (local or gs://); shards go to <output_dir>/shards/
    target_shard_bytes: int = 256 * 1024 * 1024  # clip bytes per shard, before tar overhead
    slice_label: str = ""  # a local run cut into slices: each slice writes its own shards (shard-s00002-*)

    @property
    def shard_dir(self) -> str:
        return FileSystems.join(self.output_dir, SHARD_DIR)


def num_shards_for(total_bytes: int, target_bytes: int) -> int:
    return max(1, math.ceil(total_bytes / max(target_bytes, 1)))


def shard_of(clip_key: str, num_shards: int) -> int:
    """Stable across processes and runs (Python's ``hash`` of a str is salted per process)."""
    return int(hashlib.sha1(clip_key.encode("utf-8")).hexdigest()[:16], 16) % num_shards


def write_shard(path: str, clips: Iterable[Clip]) -> list[Clip]:
    """Write ``clips`` sorted by key to ``path`` (``storage.atomic_create``: local or object store); return them
    in the written order. A clip holds its mp4 or a clip store reference (read one clip at a time, in key order).
    Raises when a clip's bytes cannot be read."""
    written, _, unread = _write_shard(path, clips)
    if unread:
        raise next(iter(unread.values()))
    return written


def _write_shard(path: str, clips: Iterable[Clip], concurrency: int | None = None
                 ) -> tuple[list[Clip], str, dict[str, Exception]]:
    """(written clips, the file's sha256, {clip key: why} for the clips whose bytes could not be read and were
    left out). The clips' bytes are read in the writer's order (by key), each with one ranged read
    (``clip_store.in_order``, retried after transient errors by ``storage.read_range``), ``concurrency`` in
    flight (default: ``clip_store.reads_in_flight``, many for an object store, one for local files)."""
    ordered = sorted(clips, key=lambda c: c.clip_key)
    unread: dict[str, Exception] = {}
    with clip_store.in_order(ordered, concurrency or clip_store.reads_in_flight(ordered)) as read:
        def read_or_leave_out(clip: Clip) -> bytes | None:
            try:
                return read(clip)
            except Exception as exc:  # noqa: BLE001 - this clip fails, the shard's others are written
                unread[clip.clip_key] = exc
                return None

        written, sha256 = shard_writer.write_shard(path, ordered, read=read_or_leave_out,
                                                   create=storage.atomic_create)
    return written, sha256, unread


def _tie_break(clip: Clip) -> str:
    """Orders clips of one key whatever the output directory: their bytes' hash, or their place in the store."""
    if clip.mp4 is not None:
        return hashlib.sha1(clip.mp4).hexdigest()
    return clip_store.relative(clip.location) if clip_store.is_reference(clip.location) else clip.location


def shard_paths(output_dir: str) -> list[str]:
    """The shard files of a run output directory, sorted, listed through Beam's FileSystems (the run's own
    output, local or on an object store: the stale-shard sweep). Readers open shards with
    ``schemas.shard_source``."""
    return storage.match(FileSystems.join(output_dir, SHARD_DIR, "shard-*.tar"))


def remove_stale_shards(output_dir: str, keep: Iterable[str]) -> list[str]:
    """Delete shard files an earlier run left that this run did not write (fewer shards this time).
    ``keep``: the base names this run wrote (from its shard index)."""
    keep = {name.rsplit("/", 1)[-1] for name in keep}
    stale = [p for p in shard_paths(output_dir) if p.rsplit("/", 1)[-1] not in keep]
    storage.delete(stale)
    return stale


# ---- Beam ------------------------------------------------------------------------------------------------
def _failed(clip: Clip, doing: str, exc: BaseException) -> Outcome:
    """``storage_error`` when the store kept refusing (retries spent: a rerun retries it), else ``shard_error``."""
    refused = storage.refused(exc)
    return Outcome.for_clip(clip, reasons.STAGE_SHARD, reasons.FAILED,
                            reasons.STORAGE_ERROR if refused else reasons.SHARD_ERROR,
                            f"{doing}: {type(exc).__name__}: {exc}")


class _WriteShardFn(beam.DoFn):
    def __init__(self, config: ShardConfig):
        self.config = config
        self.written = beam.metrics.Metrics.counter(reasons.STAGE_SHARD, "shards_written")

    def process(self, element: tuple[int, Iterable[Clip]]):
        index, clips = element
        name = shard_name(index, self.config.slice_label)
        unique: dict[str, Clip] = {}
        for clip in sorted(clips, key=lambda c: (c.clip_key, _tie_break(c))):
            if clip.clip_key in unique:
                yield beam.pvalue.TaggedOutput(stage.OUTCOMES, Outcome.for_clip(
                    clip, reasons.STAGE_SHARD, reasons.DROPPED, reasons.DUPLICATE,
                    f"another clip has the key {clip.clip_key!r}"))
            else:
                unique[clip.clip_key] = clip
        path = FileSystems.join(self.config.shard_dir, name)
        try:  # a transient upload error rewrites the shard (the same bytes); then its clips fail, not the run
            written, sha256, unread = storage.retrying(f"writing {path}", _write_shard, path, unique.values())
        except Exception as exc:  # noqa: BLE001 - see above
            for clip in unique.values():
                yield beam.pvalue.TaggedOutput(stage.OUTCOMES, _failed(clip, f"writing {name}", exc))
            return
        for clip in unique.values():
            if clip.clip_key in unread:
                yield beam.pvalue.TaggedOutput(stage.OUTCOMES, _failed(clip, f"reading its bytes for {name}",
                                                                       unread[clip.clip_key]))
        self.written.inc()
        yield beam.pvalue.TaggedOutput(INDEX, {"name": f"{SHARD_DIR}/{name}", "clips": len(written),
                                               "bytes": sum(clip_store.size_of(c) for c in written),
                                               "sha256": sha256})
        for clip in written:
            yield beam.pvalue.TaggedOutput(stage.OUTCOMES, Outcome.for_clip(
                clip, reasons.STAGE_SHARD, reasons.KEPT, detail=f"{SHARD_DIR}/{name}"))
            yield clip.replace(mp4=None, location=f"{SHARD_DIR}/{name}")


class WriteShards(beam.PTransform):
    """Clip (by reference or inline) -> {MAIN: manifest Clips (no bytes, ``location`` = shard), OUTCOMES: kept/failed per clip,
    INDEX: one entry per written shard}."""

    def __init__(self, config: ShardConfig):
        super().__init__()
        self.config = config

    def expand(self, clips):
        target = self.config.target_shard_bytes
        num_shards = (clips
                      | "Bytes" >> beam.Map(clip_store.size_of)
                      | "TotalBytes" >> beam.CombineGlobally(sum)
                      | "NumShards" >> beam.Map(num_shards_for, target))
        written = (clips
                   | "ChooseShard" >> beam.Map(lambda c, n: (shard_of(c.clip_key, n), c),
                                               n=beam.pvalue.AsSingleton(num_shards))
                   | "GroupByShard" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(_WriteShardFn(self.config)).with_outputs(stage.OUTCOMES, INDEX,
                                                                                     main=stage.MAIN))
        return {stage.MAIN: written[stage.MAIN], stage.OUTCOMES: written[stage.OUTCOMES], INDEX: written[INDEX]}
