"""Find and read clip shards: the one opener behind ``--clips`` (classifier), ``--shards`` (model) and the tests.

A shard spec names tar shards in any of these forms, and every command accepts all of them:

- a run output directory (its ``shards/*.tar``) or a directory of shards (its ``*.tar``);
- a single tar, a glob (``out/shards/*.tar``) or a brace pattern (``shard-{00000..00003}.tar``);
- a ``::``-separated list of any of these (``a.tar::b/shard-*.tar``), or a Python list of them;
- URLs webdataset opens (``gs://bucket/shard-{00000..00099}.tar`` through gsutil, ``http(s)://``, ``pipe:``):
  kept as named, brace patterns expanded; they cannot be listed or checked without the network, so an
  absent remote shard is reported by the reader.

``resolve`` raises ``ShardSourceError`` when the spec names no shard, and also when only SOME local parts
are missing (``a.tar::typo.tar``, a brace range with absent files, a glob or directory matching nothing):
reading fewer shards than named would otherwise go unnoticed. ``ShardError`` is the other error: a shard
or sample that does not hold what the format (or its reader) needs.

It lives in ``schemas/`` beside the format it reads, under the pipeline, the classifier and the model alike.
Samples are read with ``webdataset.tarfile_to_samples`` (raw dicts: bytes, nothing decoded) and parsed by
``ShardSample.from_wds``, the one definition of the sample.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import webdataset as wds

from schemas.clip_format import SHARD_DIR
from schemas.records import ShardSample

FORMS = ("a run directory, a shard directory, a tar, a glob, a brace pattern (shard-{00000..00009}.tar), "
         "a '::'-separated list or gs:// URLs")


class ShardSourceError(FileNotFoundError):
    """A shard spec that names no shards, or names local shards that do not exist (a user error: the
    command-line tools report it in one line, without a traceback)."""


class ShardError(ValueError):
    """A shard or sample that does not hold what its reader needs (unreadable sample, wrong clip size, too few
    frames, another format)."""


def is_remote(url: str) -> bool:
    """A URL webdataset opens itself (``gs://``, ``http(s)://``, ``pipe:``), not a local path."""
    return "://" in url or url.startswith("pipe:")


def _parts(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The spec's parts: list items, then ``::`` splits and brace expansion (webdataset's own rules)."""
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    return [part for s in specs for part in wds.shardlists.expand_urls(os.fspath(s))]


def _local(part: str) -> list[str]:
    """The tar files one local part names, sorted ([] when none)."""
    if os.path.isdir(part):
        run_shards = os.path.join(part, SHARD_DIR)
        return sorted(glob.glob(os.path.join(run_shards if os.path.isdir(run_shards) else part, "*.tar")))
    if any(c in part for c in "*?["):
        return sorted(glob.glob(part))
    return [part] if os.path.isfile(part) else []


def resolve(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The shard paths and URLs ``spec`` names, in the order named (each directory or glob sorted), each once.

    Raises ``ShardSourceError`` when nothing matched or when some local part matched nothing.
    """
    parts = _parts(spec)
    urls: list[str] = []
    missing: list[str] = []
    for part in parts:
        found = [part] if is_remote(part) else _local(part)
        urls.extend(u for u in found if u not in urls)
        if not found:
            missing.append(part)
    if not urls:
        raise ShardSourceError(f"no shards matched {_shown(spec)}; give {FORMS}")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ShardSourceError(f"{len(missing)} of {len(parts)} shard paths in {_shown(spec)} match no file: {shown}")
    return urls


def _shown(spec) -> str:
    return repr(os.fspath(spec) if isinstance(spec, os.PathLike) else spec)


def raw_samples(url: str | None) -> Iterator[dict[str, Any]]:
    """The raw samples of one shard in stored order (``__key__``, ``__url__`` and member bytes, nothing
    decoded or parsed); nothing for ``None``. Opens any URL webdataset opens."""
    return iter(wds.tarfile_to_samples()(iter([{"url": url}]))) if url is not None else iter(())


def read_samples(spec, on_error: Callable[[str, str, Exception], None] | None = None) -> Iterator[ShardSample]:
    """Every ``ShardSample`` of the shards ``spec`` names, shard by shard, in stored order.

    Without ``on_error`` an unreadable shard or sample raises ``ShardError``. With it, it is reported as
    ``on_error(shard, sample key ('' for the shard itself), exception)`` and skipped: one bad sample need not
    stop a training run.
    """
    for url in resolve(spec):
        try:
            for raw in raw_samples(url):
                try:
                    yield ShardSample.from_wds(raw)
                except Exception as exc:  # a malformed sample
                    if on_error is None:
                        raise ShardError(f"shard {url}: sample {raw.get('__key__')!r} is not a valid "
                                         f"ShardSample: {exc}") from exc
                    on_error(url, str(raw.get("__key__")), exc)
        except ShardError:
            raise
        except Exception as exc:  # an unreadable tar
            if on_error is None:
                raise ShardError(f"cannot read shard {url}: {type(exc).__name__}: {exc}") from exc
            on_error(url, "", exc)
