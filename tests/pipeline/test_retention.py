"""``--delete-videos``: downloads are deleted once their clips are committed, and a rerun neither needs them
nor downloads them again (the catalog's sources are gone by then, so a download would fail)."""

from __future__ import annotations

import json

import pytest

from pipeline import run, shards
from tests import media

pytestmark = pytest.mark.skipif(media.FFMPEG is None, reason="needs the ffmpeg binary")


def _shard_bytes(out) -> dict[str, bytes]:
    return {p.rsplit("/", 1)[1]: open(p, "rb").read() for p in shards.shard_paths(str(out))}


def test_committed_downloads_are_deleted_and_not_fetched_again(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    media.write_video(sources / "a.mp4", fps=25, duration_s=16.5, width=160, height=90)
    media.write_video(sources / "short.mp4", fps=25, duration_s=3.0, width=160, height=90)  # dropped: too_short
    with open(tmp_path / "catalog.jsonl", "w") as f:
        for name in ("a", "short"):
            f.write(json.dumps({"id": name, "url": (sources / f"{name}.mp4").as_uri(),
                                "title": "Celeste speedrun gameplay", "duration_s": 20}) + "\n")
    out = tmp_path / "out"
    argv = ["--catalog", str(tmp_path / "catalog.jsonl"), "--output", str(out), "--in-process"]
    assert run.main([*argv, "--delete-videos"]) == 0
    stored = sorted(p.name for p in (out / "videos").iterdir() if not p.name.startswith("."))
    assert stored == ["a.json", "short.json"]  # the videos went, their download markers stayed
    assert sorted(p.name for p in sources.iterdir()) == ["a.mp4", "short.mp4"]  # a catalog's own files stay
    first = _shard_bytes(out)
    stats = json.loads((out / "stats.json").read_text())
    for p in sources.iterdir():
        p.unlink()  # from here on, any download would fail
    assert run.main([*argv, "--delete-videos"]) == 0
    assert _shard_bytes(out) == first and len(first) == 1
    again = json.loads((out / "stats.json").read_text())
    assert again["funnel"] == stats["funnel"] and again["clips"] == stats["clips"]
    # without the option the rerun does download (and fails: the sources are gone): the default is unchanged
    assert run.main([*argv, "--allow-empty"]) == 0  # every clip lost with its source: an empty dataset, allowed
    assert json.loads((out / "stats.json").read_text())["clips"].get("kept", 0) == 0
