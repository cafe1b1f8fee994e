"""Record types exchanged between the pipeline's stages, the classifier and the model loaders.

Import records from here: ``from schemas import CandidateVideo, Clip, Outcome``.
"""

from schemas import ids, reasons
from schemas.base import Record, RecordError, from_table, to_table
from schemas.records import CandidateVideo, Clip, DownloadedVideo, HandLabel, Outcome, ShardSample
from schemas.version import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "CandidateVideo", "Clip", "DownloadedVideo", "HandLabel", "Outcome", "Record",
    "RecordError", "ShardSample", "from_table", "ids", "reasons", "to_table",
]
