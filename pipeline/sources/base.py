"""What a candidate source is: a list of independent read tasks, each yielding candidates in a stable order.

Splitting a source into tasks (one catalog file, one search query) lets Beam spread the reading over
workers, and the (source, task, position) of each candidate gives de-duplication a deterministic order:
when a video turns up twice, the copy that comes first in that order is kept. To add a source, subclass
``Source`` and add it to ``pipeline.search.build_sources``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import ClassVar

from schemas import CandidateVideo, Outcome, reasons
from schemas.site_usage import SiteUsage


class Source(abc.ABC):
    """A producer of ``CandidateVideo`` records (and ``failed`` Outcomes for inputs it cannot read)."""

    name: ClassVar[str]

    def setup(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Per-worker preparation (e.g. reading credentials), called in the reading DoFn's ``setup``."""

    def site_usage(self) -> list[SiteUsage]:
        """What this worker's requests to sites cost since the last call (one record per site), drained at the
        end of each bundle; sources that send no requests (files, ``gs://``) have none."""
        return []

    @abc.abstractmethod
    def tasks(self) -> list[str]:
        """Independent units of reading, in a stable order (file paths, queries)."""

    @abc.abstractmethod
    def read(self, task: str) -> Iterator[CandidateVideo | Outcome]:
        """Candidates of one task in a stable order; unreadable parts become ``failed`` Outcomes."""


def search_failure(item_id: str, reason: str, detail: str) -> Outcome:
    """A ``failed`` Outcome at the search stage for an input that never became a candidate."""
    return Outcome(item_id=item_id, item_kind=reasons.ITEM_VIDEO, stage=reasons.STAGE_SEARCH,
                   outcome=reasons.FAILED, reason=reason, detail=detail, video_id=item_id)
