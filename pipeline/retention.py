"""Source video retention: delete a downloaded video once its clips are committed, and never fetch it again.

Why: at the paper's scale the downloaded sources are tens of TB, and once a video's clips (and outcomes) are in
the segment cache, which is also the clip store (``pipeline.clip_store``), nothing in the pipeline reads the
source again: a rerun takes the cached result. ``--delete-videos`` turns that into disk space.

What stays: the download's completion marker (``<download dir>/<key>.json``, the ``DownloadedVideo`` record
with the file's sha256). A rerun reads it before downloading: when the segment cache holds a committed result
for that record (its outcomes file, the entry's completion marker), the video skips the download and goes
straight to Segment, which reuses the entry. Anything else (no marker, no entry, another segment config)
is downloaded as usual. Without ``--delete-videos`` the stage is the plain download. The deletion itself
is the segment stage's (``segment.delete_committed_source``): it knows when a result is committed.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.download import MARKER_EXTENSION, Download, DownloadConfig
from pipeline.segment import SegmentConfig, cache_paths
from pipeline.site_access import SITE_USAGE
from pipeline.stage import MAIN, OUTCOMES
from schemas import CandidateVideo, DownloadedVideo, ids

log = logging.getLogger(__name__)
COMMITTED = "committed"


def committed_download(candidate: CandidateVideo, download: DownloadConfig,
                       segment: SegmentConfig) -> DownloadedVideo | None:
    """The earlier download of ``candidate`` whose clips the segment cache already holds, else None."""
    try:
        marker = ids.storage_path(download.download_dir.rstrip("/") or "/", candidate.video_id, MARKER_EXTENSION)
        if not storage.exists(marker):
            return None
        record = DownloadedVideo.from_json(storage.read_bytes(marker)).replace(candidate=candidate)
        _, outcomes_path = cache_paths(record, segment)
        return record if FileSystems.exists(outcomes_path) else None
    except Exception as exc:  # noqa: BLE001 - unknown: download as usual (the download stage decides)
        if storage.is_transient(exc):
            storage.reraise_naming(f"video {candidate.video_id!r}", exc)
        log.info("retention: %s has no usable committed result (%s: %s)", candidate.video_id,
                 type(exc).__name__, exc)
        return None


class _SplitCommitted(beam.DoFn):
    def __init__(self, download: DownloadConfig, segment: SegmentConfig):
        self.download = download
        self.segment = segment
        self.skipped = beam.metrics.Metrics.counter("download", "committed_skipped")

    def process(self, candidate: CandidateVideo):
        record = committed_download(candidate, self.download, self.segment)
        if record is None:
            yield candidate
        else:
            self.skipped.inc()
            yield beam.pvalue.TaggedOutput(COMMITTED, record)


class DownloadUnlessCommitted(beam.PTransform):
    """The download stage for ``--delete-videos``: candidates whose clips are committed skip it."""

    def __init__(self, download: DownloadConfig, segment: SegmentConfig):
        super().__init__()
        self.download = download
        self.segment = segment

    def expand(self, candidates):
        split = candidates | "SkipCommitted" >> beam.ParDo(_SplitCommitted(self.download, self.segment)).with_outputs(
            COMMITTED, main=MAIN)
        fetched = split[MAIN] | "Fetch" >> Download(self.download)
        videos = (split[COMMITTED], fetched[MAIN]) | "WithCommitted" >> beam.Flatten()
        return {MAIN: videos, OUTCOMES: fetched[OUTCOMES], SITE_USAGE: fetched[SITE_USAGE]}
