"""Record types exchanged between the pipeline's stages, the classifier and the model loaders.

Import records from here: ``from schemas import CandidateVideo, Clip, Outcome``.

The clip format shared by the pipeline, the classifier and the model lives here too, in modules imported by
name (they pull in PyAV and webdataset, which the records do not need): ``clip_format`` (geometry, rate,
length, codec settings, shard layout), ``clip_codec`` (encode/decode a clip's mp4), ``frame_times`` (which
source frame becomes which clip frame), ``decoders`` (video files to frames at the clip geometry),
``shard_writer`` (the one shard writer) and ``shard_source`` (the one shard opener).
"""

from schemas import ids, reasons
from schemas.base import Record, RecordError, from_table, to_table
from schemas.records import CandidateVideo, Clip, DownloadedVideo, HandLabel, Outcome, ShardSample
from schemas.version import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "CandidateVideo", "Clip", "DownloadedVideo", "HandLabel", "Outcome", "Record",
    "RecordError", "ShardSample", "from_table", "ids", "reasons", "to_table",
]
