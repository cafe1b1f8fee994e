"""Schemas: round trips through JSON and Parquet, validation messages, and the id rules."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import (
    SCHEMA_VERSION,
    CandidateVideo,
    Clip,
    DownloadedVideo,
    HandLabel,
    Outcome,
    RecordError,
    ShardSample,
    from_table,
    ids,
    reasons,
    to_table,
)

CANDIDATE = CandidateVideo(video_id="../../x", source="catalog", url="file:///tmp/a.mp4", title="Céleste speedrun",
                           duration_s=61.5, extra={"views": 3, "tags": ["a", "b"]})
DOWNLOADED = DownloadedVideo(candidate=CANDIDATE, path="/tmp/x.mp4", size_bytes=10, sha256="0" * 64, codec="h264",
                             fps=29.97, width=640, height=360, duration_s=61.5)
CLIP = Clip(clip_key=ids.clip_key("../../x", 16.0), video_id="../../x", clip_index=1, start_s=16.0, end_s=32.0,
            num_frames=160, fps=10.0, width=160, height=90, mp4=b"\x00\x01mp4", quality_score=0.75,
            actions=list(range(160)), video=CANDIDATE)
LABEL = HandLabel(item_id="vid1", score=5, labeller="ann", note="clean")
OUTCOME = Outcome.for_clip(CLIP, reasons.STAGE_QUALITY, reasons.DROPPED, reasons.LOW_QUALITY, "score 0.12 < 0.5")

ALL = [CANDIDATE, DOWNLOADED, CLIP, LABEL, OUTCOME]


@pytest.mark.parametrize("record", ALL, ids=lambda r: type(r).__name__)
def test_json_round_trip(record):
    text = record.to_json()
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert type(record).from_json(text) == record


@pytest.mark.parametrize("record", ALL, ids=lambda r: type(r).__name__)
def test_parquet_round_trip(record, tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(to_table([record, record], type(record)), path)
    table = pq.read_table(path)
    assert table.schema.metadata[b"schema_version"] == SCHEMA_VERSION.encode()
    assert from_table(table, type(record)) == [record, record]


def test_empty_table_keeps_schema():
    assert to_table([], Outcome).schema.names == Outcome.arrow_schema().names


def test_shard_sample_round_trip():
    sample = ShardSample.from_clip(CLIP)
    wds = sample.to_wds()
    assert wds["__key__"] == CLIP.clip_key and "." not in wds["__key__"]
    meta = json.loads(wds["json"])
    assert "mp4" not in meta or meta["mp4"] is None
    assert meta["quality_score"] == 0.75 and len(meta["actions"]) == 160
    assert ShardSample.from_wds(wds) == sample


@pytest.mark.parametrize(
    ("make", "field", "value_text"),
    [
        (lambda: CandidateVideo(video_id="", source="s", url="u"), "video_id", "''"),
        (lambda: CandidateVideo(video_id="a", source="s", url="u", duration_s=-2), "duration_s", "-2"),
        (lambda: CandidateVideo(video_id="a", source="s", url="u", duration_s="long"), "duration_s", "'long'"),
        (lambda: CandidateVideo(video_id="a", source="s", url="u", duration_s=float("nan")), "duration_s", "nan"),
        (lambda: DownloadedVideo(candidate=CANDIDATE, path="p", size_bytes=1, sha256="xyz"), "sha256", "'xyz'"),
        (lambda: CLIP.replace(clip_key="a.b"), "clip_key", "'a.b'"),
        (lambda: CLIP.replace(end_s=1.0), "end_s", "1.0"),
        (lambda: CLIP.replace(quality_score=1.5), "quality_score", "1.5"),
        (lambda: CLIP.replace(actions=[1, 2]), "actions", "[1, 2]"),
        (lambda: HandLabel(item_id="v", score=7), "score", "7"),
        (lambda: HandLabel(item_id="v", score=3, item_kind="frame"), "item_kind", "'frame'"),
        (lambda: Outcome(item_id="v", item_kind="video", stage="search", outcome="lost"), "outcome", "'lost'"),
        (lambda: Outcome(item_id="v", item_kind="video", stage="search", outcome="dropped"), "reason", "''"),
        (lambda: Outcome(item_id="v", item_kind="video", stage="nowhere", outcome="kept"), "stage", "'nowhere'"),
    ],
)
def test_validation_names_field_and_value(make, field, value_text):
    with pytest.raises(RecordError) as info:
        make()
    message = str(info.value)
    assert f".{field}" in message and value_text in message


def test_missing_required_field_is_a_record_error():
    with pytest.raises(RecordError, match="CandidateVideo"):
        CandidateVideo.from_dict({"video_id": "a", "source": "s"})
    with pytest.raises(RecordError, match="not valid JSON"):
        CandidateVideo.from_json("{broken")


HOSTILE = ["../../x", "a.b c", "x" * 300, "x" * 299 + "y", "/etc/passwd", "..", ".", "a/b", "a\\b", "a\x00b",
           "日本語のゲーム", "ゲーム", "a b", "a_b", "a-b", "A", "a", "-", "_", "con", "a" * 64, "a" * 65,
           "abc-h0123456789abcdef", "x.mp4", "x_mp4", "x mp4", "--help", "-rf", "--", "-_-", "help", "rf", "id",
           "-h0123456789abcdef"]


def test_hostile_ids_map_to_safe_unique_keys():
    keys = [ids.video_key(i) for i in HOSTILE]
    assert len(set(keys)) == len(HOSTILE), "two ids share a key"
    for source_id, key in zip(HOSTILE, keys, strict=True):
        assert ids.SAFE_KEY.match(key), (source_id, key)
        assert "." not in key and "/" not in key and len(key) <= ids.MAX_VERBATIM
        assert not key.startswith("-"), (source_id, key)  # never read as a command-line option
        assert ids.video_key(source_id) == key  # stable
        clip = ids.clip_key(source_id, 123.456)
        assert ids.is_safe_key(clip) and clip.endswith("_s000123456")


def test_verbatim_keys_cannot_collide_with_hashed_keys():
    hashed = ids.video_key("a.b")
    assert hashed != "a.b"
    assert ids.video_key(hashed) != hashed  # an id shaped like a hashed key is itself hashed


def test_wellformed_ids_stay_readable():
    assert ids.video_key("dQw4w9WgXcQ") == "dQw4w9WgXcQ"


def test_storage_paths_stay_inside_root():
    for source_id in HOSTILE:
        path = ids.storage_path("gs://bucket/videos/", source_id, "mp4")
        assert path.startswith("gs://bucket/videos/") and "/.." not in path
        assert path.count("/") == "gs://bucket/videos/".count("/")
    with pytest.raises(ValueError):
        ids.storage_name("a", "../mp4")


def test_dash_ids_are_hashed_and_other_ids_keep_their_keys():
    assert ids.video_key("--help").startswith("help-h") and ids.video_key("-").startswith("id-h")
    assert ids.storage_name("-rf", "mp4").startswith("rf-h")
    assert ids.video_key("--help") != ids.video_key("help") == "help"  # the dash-free id stays verbatim
    assert ids.video_key("a-b") == "a-b" and ids.video_key("_x") == "_x"  # inner dashes, leading underscores


def test_storage_path_refuses_an_empty_root():
    for root in ("", "   "):
        with pytest.raises(ValueError, match="storage root"):
            ids.storage_path(root, "a", "mp4")
    assert ids.storage_path("/", "a", "mp4") == "/a.mp4"  # the root only when asked for explicitly
    assert ids.storage_path("out/videos/", "a", "mp4") == "out/videos/a.mp4"


# ---- strings that cannot become UTF-8 -------------------------------------------------------------------
@pytest.mark.parametrize(("make", "field"), [
    (lambda: CandidateVideo(video_id="a\ud800", source="s", url="u"), "video_id"),
    (lambda: CandidateVideo(video_id="a", source="s", url="u", title="t\udfff x"), "title"),
    (lambda: CandidateVideo(video_id="a", source="s", url="u", description="\udc80"), "description"),
    (lambda: CandidateVideo(video_id="a", source="s", url="u", extra={"k": "\ud800"}), "extra"),
    (lambda: CandidateVideo(video_id="a", source="s", url="u", extra={"\ud800": 1}), "extra"),
    (lambda: HandLabel(item_id="v", score=3, note="\ud83d"), "note"),
    (lambda: CandidateVideo.from_json(json.dumps({"video_id": "x\ud800", "source": "s", "url": "u"})), "video_id"),
])
def test_lone_surrogates_are_refused_naming_the_field(make, field):
    """JSON's "\\ud800" is a valid Python str but has no UTF-8 form: it must fail here, not in a Parquet writer."""
    with pytest.raises(RecordError) as info:
        make()
    message = str(info.value)
    assert f".{field}:" in message and "UTF-8" in message and "\\u" in message  # the value, escaped
    message.encode("utf-8")  # the error itself is safe to record


def test_outcome_detail_escapes_what_utf8_cannot_hold():
    """An Outcome is the record of a failure: its free-text detail is escaped rather than refused."""
    outcome = Outcome(item_id="v", item_kind="video", stage="download", outcome="failed", reason="x",
                      detail="cannot open /tmp/\udcff.mp4")
    assert outcome.detail == "cannot open /tmp/\\udcff.mp4"
    assert Outcome.from_json(outcome.to_json().encode("utf-8")) == outcome
    to_table([outcome], Outcome)  # Parquet takes it


@pytest.mark.parametrize("item_id", ["", "  "])
def test_outcome_needs_an_item_id(item_id):
    with pytest.raises(RecordError, match=r"Outcome\.item_id"):
        Outcome(item_id=item_id, item_kind="video", stage="search", outcome="failed", reason="bad_catalog_row")


# ---- schema versions ---------------------------------------------------------------------------------------
def _with_version(record, version) -> str:
    data = json.loads(record.to_json())
    data["schema_version"] = version
    return json.dumps(data)


def test_json_of_another_major_version_is_refused():
    major = int(SCHEMA_VERSION.split(".")[0])
    for version in (f"{major + 1}.0", f"{major - 1}.9", "banana", 2):
        with pytest.raises(RecordError, match="schema.version") as info:
            Clip.from_json(_with_version(CLIP, version))
        assert str(version) in str(info.value)
    newer_minor = json.loads(_with_version(CLIP, f"{major}.99"))
    newer_minor["field_from_the_future"] = [1, 2]
    assert Clip.from_json(json.dumps(newer_minor)) == CLIP  # same major: read, unknown field ignored
    unversioned = json.loads(CLIP.to_json())
    del unversioned["schema_version"]
    assert Clip.from_json(json.dumps(unversioned)) == CLIP  # hand-written data carries no version


def test_parquet_of_another_major_version_is_refused(tmp_path):
    major = int(SCHEMA_VERSION.split(".")[0])
    table = to_table([OUTCOME], Outcome)
    for version, ok in ((f"{major + 1}.0", False), (f"{major}.5", True)):
        path = tmp_path / f"{version}.parquet"
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"schema_version": version.encode()}),
                       path)
        if ok:
            assert from_table(pq.read_table(path), Outcome) == [OUTCOME]
        else:
            with pytest.raises(RecordError, match=f"schema version {version}"):
                from_table(pq.read_table(path), Outcome)
    foreign = pa.Table.from_pylist([OUTCOME.to_row()])  # written by another tool: no version metadata
    assert from_table(foreign, Outcome) == [OUTCOME]


def test_shard_json_of_another_major_version_is_refused():
    wds = ShardSample.from_clip(CLIP).to_wds()
    meta = json.loads(wds["json"])
    meta["schema_version"] = f"{int(SCHEMA_VERSION.split('.')[0]) + 1}.0"
    with pytest.raises(RecordError, match="schema version"):
        ShardSample.from_wds({**wds, "json": json.dumps(meta).encode()})
