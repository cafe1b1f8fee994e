"""The records every stage exchanges. One definition each; stages import them from ``schemas``.

Flow:  CandidateVideo --download--> DownloadedVideo --segment--> Clip --quality--> Clip(score)
       --shard--> ShardSample (a Clip in a WebDataset tar).  Every CandidateVideo and every Clip ends in
       exactly one ``Outcome``. ``HandLabel`` is the classifier's training input.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, ClassVar

from schemas import ids, reasons
from schemas.base import Record, RecordError, check_schema_version
from schemas.clip_format import JSON_MEMBER, MP4_MEMBER
from schemas.version import SCHEMA_VERSION

MAX_ID_LEN = 2048
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class CandidateVideo(Record):
    """A video some source proposed (search hit or catalog row), before any filtering."""

    KIND: ClassVar[str] = reasons.ITEM_VIDEO

    video_id: str  # the source's id, verbatim (may be hostile: keys come from ids.video_key)
    source: str  # which source proposed it: "catalog", "youtube", ...
    url: str  # where to download it: http(s)://, file://, or a site URL yt-dlp understands
    title: str = ""
    description: str = ""
    channel: str = ""
    duration_s: float | None = None  # as the source states it; None when unknown
    query: str = ""  # the search query that found it (empty for catalog rows)
    actions_url: str = ""  # optional ground-truth actions sidecar (the demo corpus writes one)
    extra: dict = dataclasses.field(default_factory=dict)  # any other source metadata, kept verbatim

    def validate(self) -> None:
        if not self.video_id.strip():
            self.fail("video_id", "must be a non-empty string")
        if len(self.video_id) > MAX_ID_LEN:
            self.fail("video_id", f"longer than {MAX_ID_LEN} characters")
        if not self.url.strip():
            self.fail("url", "must be a non-empty string")
        if self.duration_s is not None and self.duration_s < 0:
            self.fail("duration_s", "must be >= 0")

    @property
    def video_key(self) -> str:
        return ids.video_key(self.video_id)


@dataclasses.dataclass(frozen=True)
class DownloadedVideo(Record):
    """A candidate whose file is stored, with the stream facts probed from the file itself."""

    KIND: ClassVar[str] = reasons.ITEM_VIDEO

    candidate: CandidateVideo
    path: str  # local path or gs:// URL of the stored file
    size_bytes: int
    sha256: str
    container: str = ""  # e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
    codec: str = ""  # e.g. "h264", "vp9", "av1"
    fps: float | None = None  # average frame rate
    width: int = 0  # coded width before rotation
    height: int = 0
    duration_s: float | None = None
    rotation: int = 0  # display rotation in degrees (0, 90, 180, 270)

    def validate(self) -> None:
        if self.size_bytes < 0:
            self.fail("size_bytes", "must be >= 0")
        if not _SHA256.match(self.sha256):
            self.fail("sha256", "must be 64 lowercase hex characters")
        if self.fps is not None and self.fps <= 0:
            self.fail("fps", "must be > 0")
        if self.width < 0 or self.height < 0:
            self.fail("width" if self.width < 0 else "height", "must be >= 0")
        if self.rotation % 90:
            self.fail("rotation", "must be a multiple of 90 degrees")

    @property
    def video_id(self) -> str:
        return self.candidate.video_id


@dataclasses.dataclass(frozen=True)
class Clip(Record):
    """A 16 s window of a video resampled to 10 FPS at 160x90, stored as an H.264 mp4."""

    KIND: ClassVar[str] = reasons.ITEM_CLIP

    clip_key: str  # ids.clip_key(video_id, start_s): the WebDataset sample key
    video_id: str
    clip_index: int  # 0-based position of the window in the video
    start_s: float
    end_s: float
    num_frames: int
    fps: float
    width: int
    height: int
    mp4: bytes | None = None  # the encoded clip, inline (None once written elsewhere)
    location: str = ""  # where the encoded clip lives when not inline (e.g. "shard-00003.tar")
    quality_score: float | None = None  # P(good) from the quality classifier; None when unscored
    actions: list[int] | None = None  # ground-truth action per frame (frame k -> k+1), when known
    video: CandidateVideo | None = None  # source metadata, carried for the manifest and shard json

    def validate(self) -> None:
        if not ids.is_safe_key(self.clip_key):
            self.fail("clip_key", "must match [A-Za-z0-9_-]+ (no dots, no separators) and be bounded")
        if self.clip_index < 0:
            self.fail("clip_index", "must be >= 0")
        if self.start_s < 0:
            self.fail("start_s", "must be >= 0")
        if self.end_s <= self.start_s:
            self.fail("end_s", f"must be > start_s ({self.start_s})")
        if self.num_frames <= 0:
            self.fail("num_frames", "must be > 0")
        if self.fps <= 0:
            self.fail("fps", "must be > 0")
        if self.width <= 0 or self.height <= 0:
            self.fail("width" if self.width <= 0 else "height", "must be > 0")
        if self.quality_score is not None and not 0.0 <= self.quality_score <= 1.0:
            self.fail("quality_score", "must be within [0, 1]")
        if self.actions is not None and len(self.actions) != self.num_frames:
            self.fail("actions", f"must have one entry per frame ({self.num_frames}), has {len(self.actions)}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclasses.dataclass(frozen=True)
class HandLabel(Record):
    """A person's quality judgement of a video or clip, on the Genie paper's 1 (worst) .. 5 (best) scale."""

    item_id: str  # a video id or a clip key
    score: int
    item_kind: str = reasons.ITEM_VIDEO
    labeller: str = ""
    note: str = ""

    def validate(self) -> None:
        if not self.item_id.strip():
            self.fail("item_id", "must be a non-empty string")
        if not 1 <= self.score <= 5:
            self.fail("score", "must be an integer from 1 (worst) to 5 (best)")
        if self.item_kind not in reasons.ITEM_KINDS:
            self.fail("item_kind", f"must be one of {reasons.ITEM_KINDS}")


@dataclasses.dataclass(frozen=True)
class Outcome(Record):
    """The final fate of one candidate video or one clip: kept, dropped (with a reason) or failed (with an error)."""

    item_id: str  # video id, or clip key for clips
    item_kind: str  # "video" | "clip"
    stage: str  # the stage that decided (reasons.STAGES)
    outcome: str  # "kept" | "dropped" | "failed"
    reason: str = ""  # a reasons.* code; required unless kept
    detail: str = ""  # human-readable: the rule, the score, the original error message
    video_id: str = ""  # the video the item belongs to (itself for videos)
    duration_s: float | None = None  # for the hours-of-video funnel
    quality_score: float | None = None

    def __post_init__(self) -> None:
        # ``detail`` is free text built from error messages, which may echo undecodable input (a surrogate-escaped
        # path, a hostile title): escape what UTF-8 cannot hold instead of refusing the record, since refusing it
        # would turn a recorded failure into a crash of the stage that is reporting it.
        if isinstance(self.detail, str):
            object.__setattr__(self, "detail", self.detail.encode("utf-8", "backslashreplace").decode("utf-8"))
        super().__post_init__()

    def validate(self) -> None:
        if not self.item_id.strip():
            self.fail("item_id", "must be a non-empty string (a video id, clip key or bad-input locator)")
        if self.item_kind not in reasons.ITEM_KINDS:
            self.fail("item_kind", f"must be one of {reasons.ITEM_KINDS}")
        if self.outcome not in reasons.OUTCOMES:
            self.fail("outcome", f"must be one of {reasons.OUTCOMES}")
        if self.stage not in reasons.STAGES:
            self.fail("stage", f"must be one of {reasons.STAGES}")
        if self.outcome != reasons.KEPT and not self.reason:
            self.fail("reason", f"is required when the outcome is {self.outcome!r}")

    @classmethod
    def for_video(cls, candidate: CandidateVideo, stage: str, outcome: str, reason: str = "",
                  detail: str = "", duration_s: float | None = None) -> Outcome:
        return cls(item_id=candidate.video_id, item_kind=reasons.ITEM_VIDEO, stage=stage, outcome=outcome,
                   reason=reason, detail=detail, video_id=candidate.video_id,
                   duration_s=duration_s if duration_s is not None else candidate.duration_s)

    @classmethod
    def for_clip(cls, clip: Clip, stage: str, outcome: str, reason: str = "", detail: str = "") -> Outcome:
        return cls(item_id=clip.clip_key, item_kind=reasons.ITEM_CLIP, stage=stage, outcome=outcome,
                   reason=reason, detail=detail, video_id=clip.video_id, duration_s=clip.duration_s,
                   quality_score=clip.quality_score)


@dataclasses.dataclass(frozen=True)
class ShardSample(Record):
    """One WebDataset sample: ``<key>.mp4`` (the clip) and ``<key>.json`` (the Clip record minus its bytes)."""

    key: str
    clip: Clip

    def validate(self) -> None:
        if self.key != self.clip.clip_key:
            self.fail("key", f"must equal the clip key {self.clip.clip_key!r}")
        if not self.clip.mp4:
            raise RecordError("ShardSample.clip.mp4: a shard sample needs the encoded clip bytes")

    @classmethod
    def from_clip(cls, clip: Clip) -> ShardSample:
        return cls(key=clip.clip_key, clip=clip)

    def to_wds(self) -> dict[str, Any]:
        """The dict ``webdataset.TarWriter.write`` takes."""
        meta = self.clip.replace(mp4=None).to_dict()
        meta["schema_version"] = SCHEMA_VERSION
        return {"__key__": self.key, MP4_MEMBER: self.clip.mp4,
                JSON_MEMBER: json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")}

    @classmethod
    def from_wds(cls, sample: dict[str, Any]) -> ShardSample:
        """Parse a raw sample as ``webdataset`` yields it (``json`` may be bytes or already decoded)."""
        meta = sample.get(JSON_MEMBER)
        if meta is None or sample.get(MP4_MEMBER) is None:
            raise RecordError(f"ShardSample: sample {sample.get('__key__')!r} lacks its mp4 or json member")
        if isinstance(meta, bytes | str):
            meta = json.loads(meta)
        if not isinstance(meta, dict):
            raise RecordError(f"ShardSample: sample {sample.get('__key__')!r} json is not an object")
        meta = dict(meta)
        check_schema_version(meta.pop("schema_version", None), "ShardSample")
        clip = Clip.from_dict(meta).replace(mp4=bytes(sample[MP4_MEMBER]))
        return cls(key=sample.get("__key__", clip.clip_key), clip=clip)
