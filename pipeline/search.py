"""Stage 1: find candidate videos (catalog files, YouTube search), apply the keyword rules, de-duplicate.

    pipeline | Search(config) -> {MAIN: CandidateVideo, OUTCOMES: dropped/failed Outcome, SITE_USAGE: SiteUsage}

Steps: read every source task in parallel -> keyword + duration rules (``pipeline.keywords``) ->
de-duplicate by video id, then by URL -> ``Reshuffle``. Rules run before de-duplication, so a ``duplicate``
outcome always means "another copy of this video went on". De-duplication keeps the copy that comes first
in (source, task, position) order, which does not depend on how Beam distributed the work. The final
``Reshuffle`` breaks fusion: without it a runner may fuse the download into the reading step and fetch
every video of one catalog file on one worker, one after another.

``search_candidates`` is the same stage as plain Python (tests, small scripts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipeline.cli import cli_types
from pipeline.cli.options import option
from pipeline.keywords import KeywordRules, default_keywords_path, load_rules
from pipeline.site.site_access import SITE_USAGE, SiteAccessConfig
from pipeline.sources import CatalogSource, Source, YoutubeSource, generate_queries
from pipeline.stage import MAIN, OUTCOMES
from schemas import CandidateVideo, Outcome, reasons

OrderKey = tuple[int, int, int]  # (source index, task index, position within the task)
Keyed = tuple[OrderKey, CandidateVideo]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Where candidates come from and which survive the keyword rules."""

    keywords_path: str | None = option(  # YAML word lists; None: the shipped pipeline/data/platformers.yaml
        "--keywords", default=None,
        help=f"YAML with games/actions/exclude word lists (default: {default_keywords_path()})")
    catalogs: tuple[str, ...] = option(  # JSONL/CSV/Parquet catalog files (local or gs://)
        "--catalog", action="append", default=(), flag_default=None, to_field=lambda paths, _: tuple(paths or ()),
        help="catalog of candidate videos (.jsonl/.csv/.parquet); repeatable")
    youtube: bool = option("--youtube", action="store_true", default=False,
                           help="search YouTube with yt-dlp (needs the network)")
    youtube_per_query: int = option("--youtube-per-query", type=int, default=20,
                                    help="results per YouTube query (default %(default)d)")
    youtube_date_sorted: bool = option(  # newest first instead of relevance
        "--youtube-date-sorted", action="store_true", default=False, help="newest results first (ytsearchdate)")
    youtube_max_queries: int | None = option(
        "--youtube-max-queries", type=int, default=None,
        help="use only the first N generated queries (default: all games x actions)")
    youtube_query_template: str = option(
        "--youtube-query-template", default="{game} {action}",
        help="query pattern over the word lists (default '%(default)s')")
    # Seconds between one worker's search requests (yt-dlp's sleep_interval_requests, also before each query):
    # hundreds of back-to-back queries invite YouTube's bot check.
    youtube_sleep_s: float = option(
        "--youtube-sleep-s", type=cli_types.seconds, default=1.0,
        help="pause between a worker's search requests, in seconds (default %(default)g)")
    min_duration_s: float | None = option(  # overrides the YAML's bound when set
        "--min-duration-s", type=float, default=None,
        help="drop videos declared shorter (default: the keywords file's, 16)")
    max_duration_s: float | None = option(
        "--max-duration-s", type=float, default=None,
        help="drop videos declared longer, and refuse longer downloads (default: keywords file's, 14400)")
    # Budget, breaker, cookies, proxies and timeouts, shared with the download stage (bot checks hit searches
    # too): run.py hands both stages the same one.
    site: SiteAccessConfig = dataclasses.field(default_factory=SiteAccessConfig)

    def rules(self) -> KeywordRules:
        return load_rules(self.keywords_path).with_durations(self.min_duration_s, self.max_duration_s)

    def ytdlp_params(self) -> dict[str, Any]:
        return {"socket_timeout": self.site.socket_timeout_s}


def build_sources(config: SearchConfig) -> list[Source]:
    """The sources ``config`` enables, in a fixed order (catalogs first: their rows win de-duplication)."""
    sources: list[Source] = []
    if config.catalogs:
        sources.append(CatalogSource(config.catalogs))
    if config.youtube:
        rules = config.rules()
        sources.append(YoutubeSource(
            queries=generate_queries(rules, config.youtube_query_template, config.youtube_max_queries),
            per_query=config.youtube_per_query,
            date_sorted=config.youtube_date_sorted,
            ydl_params=config.ytdlp_params(),
            sleep_s=config.youtube_sleep_s,
            site=config.site,
        ))
    return sources


# ---- plain functions ------------------------------------------------------------------------------------
def normalise_url(url: str) -> str:
    """URL identity for de-duplication: scheme and host case-folded, fragment dropped."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def dropped(candidate: CandidateVideo, reason: str, detail: str) -> Outcome:
    """The search stage's ``dropped`` Outcome (duration from the declared duration)."""
    return Outcome.for_video(candidate, reasons.STAGE_SEARCH, reasons.DROPPED, reason, detail)


def read_source_task(source: Source, source_index: int, task_index: int, task: str
                     ) -> Iterator[Keyed | Outcome]:
    """A task's candidates with their order keys, and its failures."""
    for position, item in enumerate(source.read(task)):
        yield item if isinstance(item, Outcome) else ((source_index, task_index, position), item)


def duplicate_detail(what: str, first_source: str, first_id: str, first_url: str) -> str:
    """A ``duplicate`` outcome's detail: which copy (source, id, URL) went on instead."""
    return f"same {what} as the {first_source} candidate {first_id!r} kept ({first_url})"


def keep_first(keyed: Iterable[Keyed], what: str) -> tuple[Keyed, list[Outcome]]:
    """Of candidates sharing a ``what`` (video id / URL), keep the first in order; drop the rest."""
    ordered = sorted(keyed, key=lambda kc: kc[0])
    first = ordered[0][1]
    outcomes = [dropped(c, reasons.DUPLICATE, duplicate_detail(what, first.source, first.video_id, first.url))
                for _, c in ordered[1:]]
    return ordered[0], outcomes


def search_candidates(sources: list[Source], rules: KeywordRules) -> tuple[list[CandidateVideo], list[Outcome]]:
    """The whole stage without Beam: (candidates that go on, in order; dropped/failed Outcomes)."""
    passed: list[Keyed] = []
    outcomes: list[Outcome] = []
    for s_index, source in enumerate(sources):
        for t_index, task in enumerate(source.tasks()):
            for item in read_source_task(source, s_index, t_index, task):
                if isinstance(item, Outcome):
                    outcomes.append(item)
                    continue
                verdict = rules.check(item[1])
                if verdict:
                    outcomes.append(dropped(item[1], *verdict))
                else:
                    passed.append(item)
    for key_of, what in ((lambda c: c.video_id, "video id"), (lambda c: normalise_url(c.url), "URL")):
        groups: dict[str, list[Keyed]] = {}
        for kc in passed:
            groups.setdefault(key_of(kc[1]), []).append(kc)
        passed = []
        for group in groups.values():
            kept, dups = keep_first(group, what)
            passed.append(kept)
            outcomes.extend(dups)
    return [c for _, c in sorted(passed, key=lambda kc: kc[0])], outcomes


# ---- Beam ------------------------------------------------------------------------------------------------
class _ReadTaskFn(beam.DoFn):
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def setup(self) -> None:
        for source in self.sources:
            source.setup()

    def process(self, element: tuple[int, int, str]):
        s_index, t_index, task = element
        for item in read_source_task(self.sources[s_index], s_index, t_index, task):
            if isinstance(item, Outcome):
                Metrics.counter(reasons.STAGE_SEARCH, f"failed/{reasons.reason_family(item.reason)}").inc()
                yield beam.pvalue.TaggedOutput(OUTCOMES, item)
            else:
                Metrics.counter(reasons.STAGE_SEARCH, "candidates").inc()
                yield item

    def finish_bundle(self):
        for source in self.sources:
            for usage in source.site_usage():
                yield beam.pvalue.TaggedOutput(SITE_USAGE, GlobalWindows.windowed_value(usage))


class _RulesFn(beam.DoFn):
    def __init__(self, rules: KeywordRules) -> None:
        self.rules = rules

    def process(self, keyed: Keyed):
        verdict = self.rules.check(keyed[1])
        if verdict is None:
            yield keyed
            return
        Metrics.counter(reasons.STAGE_SEARCH, f"dropped/{reasons.reason_family(verdict[0])}").inc()
        yield beam.pvalue.TaggedOutput(OUTCOMES, dropped(keyed[1], *verdict))


def _keep_first_fn(group: tuple[str, Iterable[Keyed]], what: str):
    kept, outcomes = keep_first(group[1], what)
    yield kept
    for outcome in outcomes:
        Metrics.counter(reasons.STAGE_SEARCH, f"dropped/{reasons.DUPLICATE}").inc()
        yield beam.pvalue.TaggedOutput(OUTCOMES, outcome)


class _Dedupe(beam.PTransform):
    def __init__(self, key_name: str, what: str) -> None:
        super().__init__()
        self.key_name, self.what = key_name, what

    def expand(self, keyed):
        key_of = (lambda c: c.video_id) if self.key_name == "video_id" else (lambda c: normalise_url(c.url))
        return (keyed
                | "Key" >> beam.Map(lambda kc: (key_of(kc[1]), kc))
                | "Group" >> beam.GroupByKey()
                | "KeepFirst" >> beam.FlatMap(_keep_first_fn, self.what).with_outputs(OUTCOMES, main=MAIN))


class Search(beam.PTransform):
    """``pipeline | Search(cfg)`` -> ``{MAIN: CandidateVideo, OUTCOMES: dropped/failed Outcome, SITE_USAGE:
    SiteUsage}`` (what the queries cost, per site and bundle).

    ``sources`` replaces the sources ``config`` enables (tests feed recorded YouTube results this way).
    """

    def __init__(self, config: SearchConfig, sources: list[Source] | None = None) -> None:
        super().__init__()
        self.config = config
        self.rules = config.rules()
        self.sources = list(sources) if sources is not None else build_sources(config)
        if not self.sources:
            raise ValueError("no candidate source: give --catalog PATH and/or --youtube")

    def expand(self, root):
        tasks = [(s, t, task) for s, source in enumerate(self.sources) for t, task in enumerate(source.tasks())]
        read = (root
                | "Tasks" >> beam.Create(tasks)
                | "SpreadTasks" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadTaskFn(self.sources)).with_outputs(OUTCOMES, SITE_USAGE, main=MAIN))
        ruled = read[MAIN] | "Rules" >> beam.ParDo(_RulesFn(self.rules)).with_outputs(OUTCOMES, main=MAIN)
        by_id = ruled[MAIN] | "DedupeById" >> _Dedupe("video_id", "video id")
        by_url = by_id[MAIN] | "DedupeByUrl" >> _Dedupe("url", "URL")
        candidates = (by_url[MAIN]
                      | "DropOrder" >> beam.Map(lambda kc: kc[1])
                      | "SpreadCandidates" >> beam.Reshuffle())
        outcomes = ((read[OUTCOMES], ruled[OUTCOMES], by_id[OUTCOMES], by_url[OUTCOMES])
                    | "Outcomes" >> beam.Flatten())
        return {MAIN: candidates, OUTCOMES: outcomes, SITE_USAGE: read[SITE_USAGE]}
