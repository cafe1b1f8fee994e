"""An output knows what made it: ``run_inputs.json`` records the inputs that decide a dataset's content.

A run into an output that already holds one compares the two before any work: the same inputs resume (a
rerun skips finished downloads and segmentations and rewrites byte-identical outputs); other inputs are
refused with exit status 2 unless ``--overwrite``, so a finished dataset is never silently replaced by
another. A non-empty local directory that holds no run at all is refused the same way.

What counts as an input: catalog files (path and content digest), the YouTube search settings, the keywords
file's content, the duration bounds, what the download picks (``--min-height``, ``--max-filesize``), the clip
settings, the classifier (its ``metadata.json`` digest and the threshold in effect), the shard size and the
table part size. Not inputs: worker counts, runner options, request budgets, where downloads are kept,
``--delete-videos``: they change how a run goes, not what it makes. The file holds no time, so a rerun
rewrites it byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipeline.cli.preflight import CatalogFacts
from pipeline.io import storage

INPUTS_FILE = "run_inputs.json"
VERSION = 1
# SegmentConfig fields that change how a run goes, not the clips it makes.
_SEGMENT_OPERATIONAL = {"cache_dir", "delete_sources_in", "isolate", "video_timeout_s", "decord_max_mb"}


class OutputInUse(ValueError):
    """``--output`` holds another run's dataset (or foreign files); the message names what differs."""


def describe(config, catalogs: list[CatalogFacts]) -> dict[str, Any]:
    """The inputs of ``config`` (a ``pipeline.job.RunConfig``) that decide the dataset's content."""
    from pipeline.keywords import default_keywords_path

    search, segment, quality = config.search, config.segment, config.quality
    youtube = None
    if search.youtube:
        youtube = {"per_query": search.youtube_per_query, "date_sorted": search.youtube_date_sorted,
                   "max_queries": search.youtube_max_queries, "query_template": search.youtube_query_template}
    classifier = None
    if quality.classifier:
        metadata = FileSystems.join(quality.classifier, "metadata.json")
        classifier = {"path": quality.classifier, "metadata_sha256": storage.sha256_file(metadata)[0],
                      "threshold_override": quality.threshold}
    return {
        "version": VERSION,
        "catalogs": [{"path": c.path, "sha256": c.sha256} for c in catalogs],
        "youtube": youtube,
        "keywords_sha256": storage.sha256_file(str(search.keywords_path or default_keywords_path()))[0],
        "duration_bounds_s": [search.min_duration_s, search.max_duration_s],
        "download": {"min_height": config.download.min_height, "max_filesize": config.download.max_filesize},
        "clips": {k: v for k, v in dataclasses.asdict(segment).items() if k not in _SEGMENT_OPERATIONAL},
        "classifier": classifier,
        "shard_size_bytes": config.shards.target_shard_bytes,
        "table_part_rows": config.table_part_rows,
    } | _slicing(config)


def _slicing(config) -> dict[str, Any]:
    """A local run's slice size names its files (``pipeline.local.local_slices``); the default is left out, so that
    outputs recorded before slices existed still resume."""
    from pipeline.local.search_plan import SLICE_OUTCOMES

    return {} if config.slice_outcomes == SLICE_OUTCOMES else {"slice_outcomes": config.slice_outcomes}


def encode(inputs: dict[str, Any]) -> bytes:
    return (json.dumps(inputs, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(encode(inputs)).hexdigest()[:16]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def check(output_dir: str, inputs: dict[str, Any], overwrite: bool) -> str:
    """``"new"``, ``"resume"`` (same inputs), ``"adopt"`` (a run without a record) or ``"overwrite"``; raises ``OutputInUse`` when the output holds
    a run of other inputs, or foreign files, and ``overwrite`` is not set."""
    path = FileSystems.join(output_dir, INPUTS_FILE)
    if storage.exists(path):
        try:
            old = json.loads(storage.read_bytes(path))
        except (OSError, ValueError):
            old = {}
        if old == inputs:
            return "resume"
        if overwrite:
            return "overwrite"
        what = ", ".join(_differences(old, inputs)) or "its record is unreadable"
        raise OutputInUse(f"--output {output_dir} holds a dataset made from other inputs (differing: {what}); "
                          "name a new --output, or add --overwrite to replace it")
    local = storage.local_path(output_dir)
    if storage.is_local(output_dir) and os.path.isdir(local) and any(n != "logs" for n in os.listdir(local)):
        if storage.exists(FileSystems.join(output_dir, "stats.json")):
            return "adopt"  # a run made before outputs recorded their inputs: resumed, and recorded from now on
        if overwrite:
            return "overwrite"
        raise OutputInUse(f"--output {output_dir} is not empty and holds no pipeline run ({INPUTS_FILE} is "
                          "missing); name a new or empty directory, or add --overwrite to write into it")
    return "new"


def record(output_dir: str, inputs: dict[str, Any]) -> None:
    """Claim ``output_dir`` for these inputs (written before the job: an interrupted run is claimed too)."""
    storage.write_bytes(FileSystems.join(output_dir, INPUTS_FILE), encode(inputs))
