"""The run's exit status from stats.json (pipeline.audit.exit_status): success, no readable input, deferred items."""

from __future__ import annotations

import dataclasses

from pipeline.audit import aggregates, exit_status
from pipeline.audit.exit_status import DEFERRED, EMPTY, NO_INPUT, OK
from schemas.stats import ClipCounts, Deferred, ReasonKey, SearchFailures, Stats, VideoCounts


def stats(candidates=3, search_failures=0, by_reason=None, reason_counts=None, kept=2) -> Stats:
    """An empty run's stats with the parts exit_status reads set, deferred items counted as the audit does."""
    reason_counts = reason_counts or {}
    return dataclasses.replace(
        aggregates.compute_stats([], [], 0), videos=VideoCounts(candidates),
        search_failures=SearchFailures(search_failures, by_reason or {}), clips=ClipCounts(cut=kept, kept=kept),
        reason_counts=reason_counts,
        deferred=aggregates.deferred_counts([(ReasonKey.parse(k), n) for k, n in reason_counts.items()]))


def test_a_clean_run_exits_zero():
    assert exit_status.exit_status(stats(reason_counts={"video:download:failed:http_404": 1})) == (OK, None)
    # some inputs unreadable, others read: still a result, reported in the summary, not a failed run
    assert exit_status.exit_status(stats(candidates=2, search_failures=1,
                                         by_reason={"search_error": 1}))[0] == OK


def test_a_run_that_read_no_input_exits_66_with_the_reasons():
    """The offline case from the issue: both queries 'Unable to download API page', zero candidates."""
    code, message = exit_status.exit_status(stats(candidates=0, search_failures=2, by_reason={"search_error": 2},
                                                  reason_counts={"video:search:failed:search_error": 2}))
    assert code == NO_INPUT == 66
    assert message == ("no input could be read: all 2 search queries/catalogs failed (2 search_error), "
                       "so there were no candidate videos")
    assert "\n" not in message


def test_deferred_items_exit_75_naming_the_counts():
    counts = {"video:download:failed:deferred": 7, "video:download:failed:http_429": 3,
              "video:search:failed:deferred": 2, "clip:segment:dropped:short_tail": 4}
    assert stats(reason_counts=counts).deferred == Deferred(videos=7, search_queries=2)
    code, message = exit_status.exit_status(stats(reason_counts=counts))
    assert code == DEFERRED == 75
    assert message.startswith("deferred: 7 video(s) and 2 search query(ies) not finished") and "rerun" in message


def test_no_input_because_everything_was_deferred_is_a_rerun_not_a_dead_end():
    counts = {"video:search:failed:deferred": 4}
    code, _ = exit_status.exit_status(stats(candidates=0, search_failures=4, by_reason={"deferred": 4},
                                            reason_counts=counts))
    assert code == DEFERRED
    mixed = {"video:search:failed:deferred": 1, "video:search:failed:search_error": 3}
    assert exit_status.exit_status(stats(candidates=0, search_failures=4, reason_counts=mixed))[0] == NO_INPUT


def test_a_run_that_kept_no_clip_exits_65_unless_an_empty_dataset_is_allowed():
    code, message = exit_status.exit_status(stats(kept=0))
    assert code == EMPTY == 65 and message.startswith("the dataset is empty: no clip was kept (3 candidate")
    assert exit_status.exit_status(stats(kept=0), allow_empty=True) == (OK, None)
    # nothing readable and deferred items keep their own codes: they say more than "empty"
    assert exit_status.exit_status(stats(candidates=0, search_failures=1, by_reason={"search_error": 1},
                                         reason_counts={"video:search:failed:search_error": 1}, kept=0))[0] == NO_INPUT
