"""The stored clip format, as numbers and names: geometry, rate, length, codec settings and the shard layout.

It lives in ``schemas/`` (the data contract) because three packages share it: the pipeline writes clips and
shards in this format, the classifier and the model loaders read them. Each of them imports these names
instead of restating 160, 90, 10 or 16 s, so the defaults cannot drift apart. Per-run geometry can differ
(``--clip-width/--clip-height/--clip-fps``, Procgen's 64x64); every ``Clip`` records its own width, height and
fps, and readers check those, not these defaults.

Nothing here imports anything: ``schemas.records``, the codec and the shard modules all build on it.
"""

from __future__ import annotations

# ---- geometry, rate and length of a default clip (the paper's Platformers clips) ------------------------------
CLIP_WIDTH = 160
CLIP_HEIGHT = 90
CLIP_FPS = 10
CLIP_SECONDS = 16
CLIP_FRAMES = CLIP_SECONDS * CLIP_FPS  # 160: frames of a full clip at CLIP_FPS

# ---- codec settings (schemas.clip_codec; docs/pipeline.md has the tables behind each choice) -------------------
DEFAULT_CRF = 20
DEFAULT_GOP = 16
# x264's speed/size trade-off. "faster" encodes in about half medium's time at the same bytes (-0.24 dB on game
# frames), which keeps segmentation within 1.3x of a plain ffmpeg decode (docs/measurements/2026-12-01-x264-preset.md).
DEFAULT_PRESET = "faster"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# mbtree 0: x264's AVX-512 macroblock-tree kernels (mbtree_propagate_*_avx512, 8 or 16 macroblocks per vector)
# read past the 10 macroblocks of a 160-pixel row into parts of x264's own buffers that it never initialised.
# Whatever an earlier allocation left there changes the quantiser of the bottom-right macroblock, so a clip
# encoded after other work in the same process (the 2nd..nth clip of a video) would differ from run to run.
# With the tree off the output does not depend on that memory (docs/pipeline.md, "Determinism").
X264_OPTIONS = {"sc_threshold": "0", "bf": "0", "threads": "1", "mbtree": "0"}

# ---- shard layout (schemas.shard_writer writes it, schemas.shard_source finds and reads it) --------------------
SHARD_DIR = "shards"  # a run output directory keeps its shards here
MP4_MEMBER = "mp4"  # tar member <key>.mp4: the encoded clip
JSON_MEMBER = "json"  # tar member <key>.json: the Clip record without its bytes (ShardSample.to_wds)
# Fixed tar headers: reruns reproduce the same bytes.
TAR_MTIME = 0
TAR_MODE = 0o444
TAR_OWNER = "genie"


def shard_name(index: int, slice_label: str = "") -> str:
    """The file name of a run's ``index``-th shard (``shard-00000.tar``; ``shard-s00002-00000.tar`` for slice
    ``s00002`` of a local run cut into slices)."""
    return f"shard-{slice_label}-{index:05d}.tar" if slice_label else f"shard-{index:05d}.tar"
