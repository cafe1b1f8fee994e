"""The run's exit status, from its ``stats.json``: what an orchestrator needs to decide what to do next.

| code | meaning | what to do |
|---|---|---|
| 0 | done: every input was read and nothing was deferred | nothing |
| 1 | the run failed (a stage raised, or the conservation law does not hold); ``finalize``: the job ended without writing its stats | look at the error; rerun the same ``run`` command to resume |
| 2 | usage error: a bad or unknown flag, an input that cannot be read, an output that cannot be written or holds another run's dataset, a classifier that does not fit the clips; found before any work, nothing written | fix what the one-line message names |
| 65 | the run finished but kept no clip (every video or clip was dropped or failed); ``--allow-empty`` makes it 0 | read ``report.html`` for why |
| 66 | no input could be read: every search query or catalog failed, so there was not one candidate | fix the inputs or the network, then rerun |
| 69 | ``finalize``: the job writing the output has not finished (no ``stats.json`` since its launch) and still holds the output; nothing was changed | run ``finalize`` again later |
| 73 | ``run``: another live job holds the output's lease (``pipeline.cli.lease``); nothing was written | wait for it to end, or ``--force-lease`` if it is gone |
| 75 | some items were deferred (the site blocked a worker and its breaker opened), or failed because the storage kept refusing after its retries (``storage_error``) | rerun into the same ``--output`` later: it retries exactly what is unfinished |
| 130, 143 | interrupted by Ctrl-C (SIGINT) or SIGTERM: the workers were stopped | rerun the same command: it resumes |

65-75 are BSD ``sysexits.h`` codes that schedulers already know. When every input failed because it was deferred,
the code is 75. "Not finished yet" has its own code (69), so a scheduler retrying ``finalize`` stops when done.
"""

from __future__ import annotations

from schemas import reasons
from schemas.stats import Stats

OK = 0
RUN_FAILED = 1
USAGE = 2
EMPTY = 65
NO_INPUT = 66
NOT_FINISHED = 69  # finalize: the job has not finished yet
LEASE_HELD = 73  # run: another live job holds the output
DEFERRED = 75


def exit_status(stats: Stats, allow_empty: bool = False) -> tuple[int, str | None]:
    """(exit code, one-line message or None) for a run that finished with the conservation law holding."""
    failures = stats.search_failures.count
    candidates = stats.videos.candidates
    deferred = stats.deferred
    rerun = "rerun into the same --output to retry them"
    if candidates == 0 and failures > 0 and deferred.search_queries < failures:
        return NO_INPUT, (f"no input could be read: all {failures} search queries/catalogs failed "
                          f"({_reasons(stats)}), so there were no candidate videos")
    refused = storage_failures(stats)
    if deferred.videos or deferred.search_queries or refused:
        parts = [f"{n} {what}" for what, n in (("video(s)", deferred.videos),
                                                ("search query(ies)", deferred.search_queries)) if n]
        said = [f"deferred: {' and '.join(parts)} not finished because the site was blocking"] if parts else []
        if refused:
            said.append(f"storage_error: {refused} item(s) failed because the storage kept refusing")
        return DEFERRED, f"{'; '.join(said)}; {rerun}"
    if not allow_empty and not stats.clips.kept:
        return EMPTY, (f"the dataset is empty: no clip was kept ({candidates} candidate video(s); see report.html "
                       "for why); --allow-empty accepts an empty dataset")
    return OK, None


def storage_failures(stats: Stats) -> int:
    """Videos and clips that ended ``failed: storage_error`` (``Stats.reason_counts``, any stage)."""
    return sum(n for key, n in stats.reasons_by_key() if key.family == reasons.STORAGE_ERROR)


def _reasons(stats: Stats) -> str:
    by_reason = stats.search_failures.by_reason
    return ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items())) or "reasons not recorded"
