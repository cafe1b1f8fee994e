"""schemas.shard_writer writes, byte for byte, the tar webdataset's own TarWriter writes for the same samples,
and webdataset reads it back; the pipeline's workers no longer import webdataset (and with it torch)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import webdataset as wds

from schemas import shard_writer
from schemas.clip_format import TAR_MODE, TAR_MTIME, TAR_OWNER
from schemas.records import Clip


def _clip(key: str, data: bytes) -> Clip:
    return Clip(clip_key=key, video_id=key.split("-")[0], clip_index=0, start_s=0.0, end_s=16.0, num_frames=160,
                fps=10.0, width=160, height=90, mp4=data, quality_score=0.75)


def test_same_bytes_as_webdataset_tarwriter(tmp_path):
    clips = [_clip("vidB-000016000", b"\x00\x01mp4" * 3000), _clip("vidA-000000000", b"x"),
             _clip("vidA-000016000", bytes(range(256)) * 7)]
    written, digest = shard_writer.write_shard(str(tmp_path / "s.tar"), clips)
    ours = (tmp_path / "s.tar").read_bytes()

    reference = io.BytesIO()
    with wds.TarWriter(reference, encoder=False, mtime=TAR_MTIME, mode=TAR_MODE, user=TAR_OWNER,
                       group=TAR_OWNER) as writer:
        for clip in sorted(clips, key=lambda c: c.clip_key):
            writer.write(shard_writer.ShardSample.from_clip(clip.replace(location="")).to_wds())
    assert ours == reference.getvalue()
    assert [c.clip_key for c in written] == ["vidA-000000000", "vidA-000016000", "vidB-000016000"]

    assert digest == hashlib.sha256(ours).hexdigest()
    samples = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [c.clip_key for c in written]
    assert [s["mp4"] for s in samples] == [c.mp4 for c in written]


def test_pipeline_workers_do_not_import_torch():
    """Every pipeline worker imports the shard stage; webdataset would pull in torch (~180 MB per process)."""
    probe = "import sys, pipeline.run, pipeline.shards; print('torch' in sys.modules, 'webdataset' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
