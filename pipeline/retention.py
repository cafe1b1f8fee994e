"""Source video retention: delete a downloaded video once it is cut, and never fetch it again when its clips are
committed.

Why: at the paper's scale the sources are tens of TB, and once a video's clips are in the segment cache (also the
clip store) nothing reads the source again. With ``--delete-videos`` download and segmentation run in one fused
step (``segment.Segment``) and the segmentation deletes the source when done (``segment.delete_source``): the
sources on disk are the videos in flight, at most one per worker thread. The download's completion marker
(``<download dir>/<key>.json``) stays; a rerun reads it and, when the segment cache holds a committed result for
that record, skips the download and goes straight to Segment. Anything else is downloaded as usual.
"""

from __future__ import annotations

import logging

import apache_beam as beam

from pipeline.download import MARKER_EXTENSION, Download, DownloadConfig, DownloadFn
from pipeline.io import storage
from pipeline.segment import SegmentConfig, cache_paths
from schemas import CandidateVideo, DownloadedVideo, ids

log = logging.getLogger(__name__)


def committed_download(candidate: CandidateVideo, download: DownloadConfig,
                       segment: SegmentConfig) -> DownloadedVideo | None:
    """The earlier download of ``candidate`` whose clips the segment cache already holds, else None."""
    try:
        marker = ids.storage_path(download.download_dir.rstrip("/") or "/", candidate.video_id, MARKER_EXTENSION)
        if not storage.exists(marker):
            return None
        record = DownloadedVideo.from_json(storage.read_bytes(marker)).replace(candidate=candidate)
        _, outcomes_path = cache_paths(record, segment)
        return record if storage.exists(outcomes_path) else None
    except Exception as exc:  # noqa: BLE001 - unknown (the store refused, or no record): the download decides
        log.info("retention: %s has no usable committed result (%s: %s)", candidate.video_id,
                 type(exc).__name__, exc)
        return None


class _DownloadUnlessCommittedFn(DownloadFn):
    """The download step, first asking whether the candidate's clips are already committed.

    One step, not a split and a Flatten: a Flatten between the download and the segmentation would make the
    local runner hold every downloaded video until all downloads are done (it materializes a Flatten's inputs),
    so ``--delete-videos`` would not lower the peak (``Segment``'s docstring)."""

    def __init__(self, download: DownloadConfig, segment: SegmentConfig):
        super().__init__(download)
        self.segment = segment
        self.skipped = beam.metrics.Metrics.counter("download", "committed_skipped")

    def process(self, candidate: CandidateVideo):
        record = committed_download(candidate, self.config, self.segment)
        if record is None:
            yield from super().process(candidate)
        else:
            self.skipped.inc()
            yield record


class DownloadUnlessCommitted(Download):
    """The download stage for ``--delete-videos``: candidates whose clips are committed skip it."""

    def __init__(self, download: DownloadConfig, segment: SegmentConfig):
        super().__init__(download)
        self.segment = segment

    def download_fn(self) -> DownloadFn:
        return _DownloadUnlessCommittedFn(self.config, self.segment)
