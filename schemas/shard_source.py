"""Find and read clip shards: the one opener behind ``--clips`` (classifier), ``--shards`` (model) and the tests.

A shard spec, accepted by every command, is any of:
- a run output directory (its ``shards/*.tar``) or a directory of shards (its ``*.tar``);
- a single tar, a glob (``out/shards/*.tar``) or a brace pattern (``shard-{00000..00003}.tar``);
- a ``::``-separated list of these (``a.tar::b/shard-*.tar``), or a Python list of them;
- a URL webdataset opens (``gs://``, ``http(s)://``, ``pipe:``): brace patterns expanded, otherwise unchecked
  (it cannot be listed without the network; the reader reports an absent remote shard).
``resolve`` raises ``ShardSourceError`` when the spec names no shard or any local part of it is missing (reading
fewer shards than named would go unnoticed); ``ShardError`` is a shard or sample that does not hold what the
format needs. Samples are parsed by ``ShardSample.from_wds``, the one definition of the sample.
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
