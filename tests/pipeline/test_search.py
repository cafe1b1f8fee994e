"""The Search stage on Beam's real local runner: sources -> keyword rules -> de-duplication -> Reshuffle.

YouTube cannot be reached from the test machines, so the YouTube path is fed yt-dlp-shaped flat search
results from ``tests/fixtures/youtube_search`` (hand-written to yt-dlp's shape; see the README there)
through ``YoutubeSource(search=...)``; everything after the search call is the real code. One live test,
marked ``network``, runs a real yt-dlp search when GENIE_NETWORK_TESTS=1.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from yt_dlp.utils import DownloadError

from pipeline import run
from pipeline.cli import options
from pipeline.download import DownloadConfig
from pipeline.search import Search, SearchConfig, build_sources, search_candidates
from pipeline.site.site_access import SiteAccessConfig
from pipeline.sources import CatalogSource, YoutubeSource, generate_queries
from pipeline.sources.youtube import search_url
from pipeline.stage import MAIN, OUTCOMES
from schemas import CandidateVideo, Outcome, reasons

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "youtube_search"
RECORDED = {"ytsearch5:celeste speedrun": "celeste_speedrun.json", "ytsearch5:mario speedrun": "mario_speedrun.json"}
QUERIES = ["celeste speedrun", "mario speedrun", "kirby speedrun"]  # the last one "fails" like a network error


def recorded_search(url: str) -> dict:
    """Stands in for yt-dlp's network call: returns the recorded result for ``url``."""
    if url not in RECORDED:
        raise DownloadError("ERROR: [youtube:search] kirby speedrun: Unable to download API page: "
                            "<urlopen error [Errno -3] Temporary failure in name resolution>")
    return json.loads((FIXTURES / RECORDED[url]).read_text(encoding="utf-8"))


@pytest.fixture
def catalog(tmp_path) -> Path:
    rows = [
        {"id": "local1", "url": "videos/local1.mp4", "title": "CoinRun speedrun", "duration_s": 40},
        {"id": "cE1esTe0001", "url": "https://www.youtube.com/watch?v=cE1esTe0001",  # also a search hit
         "title": "Celeste Any% Speedrun", "duration_s": 1612},
        {"id": "local2", "url": "videos/local1.mp4", "title": "CoinRun gameplay", "duration_s": 40},  # same URL
        {"id": "local3", "url": "videos/local3.mp4", "title": "Ninja unboxing gameplay", "duration_s": 40},
        "not an object",
        {"id": "local1", "url": "videos/other.mp4", "title": "Jumper speedrun", "duration_s": 40},  # same id
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sources_for(catalog: Path):
    return [CatalogSource([str(catalog)]),
            YoutubeSource(QUERIES, per_query=5, search=recorded_search)]


EXPECTED_KEPT = {"local1", "cE1esTe0004", "mAr1oSpd001", "mAr1oSpd002"}
EXPECTED_OUTCOMES = Counter({
    ("catalog.jsonl:line5", reasons.BAD_CATALOG_ROW): 1,
    ("local1", reasons.DUPLICATE): 1,  # line 6, same id as line 1
    ("local2", reasons.DUPLICATE): 1,  # same URL as local1
    ("local3", reasons.excluded_word("unboxing")): 1,
    ("cE1esTe0001", reasons.DUPLICATE): 1,  # the catalog row came first
    ("cE1esTe0002", reasons.excluded_word("music")): 1,
    ("cE1esTe0003", reasons.TOO_SHORT): 1,
    ("mAr1oSpd001", reasons.DUPLICATE): 1,  # found again by the second query
    ("mAr1oSpd003", reasons.excluded_word("movie")): 1,
    ("mAr1oSpd004", reasons.TOO_LONG): 1,
    ("youtube:mario speedrun#5", reasons.SEARCH_ERROR): 1,  # a result entry without an id
    ("youtube:kirby speedrun", reasons.SEARCH_ERROR): 1,  # a query that failed
})
EXPECTED_KEPT.add("cE1esTe0001")  # the catalog's copy


def test_plain_search_accounts_for_every_input(catalog):
    config = SearchConfig(catalogs=(str(catalog),))
    kept, outcomes = search_candidates(sources_for(catalog), config.rules())
    assert {c.video_id for c in kept} == EXPECTED_KEPT
    assert Counter((o.item_id, o.reason) for o in outcomes) == EXPECTED_OUTCOMES
    # every catalog line and every search entry (and the failed query) ends in exactly one place
    assert len(kept) + len(outcomes) == 6 + 5 + 5 + 1
    by_id = {c.video_id: c for c in kept}
    assert by_id["cE1esTe0001"].source == "catalog"
    assert by_id["local1"].url.endswith("/videos/local1.mp4") and by_id["local1"].url.startswith("file:///")
    hit = by_id["mAr1oSpd002"]
    assert (hit.source, hit.query, hit.duration_s, hit.channel) == ("youtube", "mario speedrun", 600.0,
                                                                     "Game Theory-ish")
    assert hit.extra["view_count"] == 1000000 and hit.extra["search_rank"] == 2
    dup = next(o for o in outcomes if o.item_id == "mAr1oSpd001")
    assert dup.outcome == reasons.DROPPED and dup.duration_s == 3600.0  # declared duration for the funnel
    failed = [o for o in outcomes if o.reason in (reasons.SEARCH_ERROR, reasons.BAD_CATALOG_ROW)]
    assert all(o.outcome == reasons.FAILED for o in failed)
    assert "name resolution" in next(o.detail for o in failed if o.item_id == "youtube:kirby speedrun")


def test_beam_search_matches_plain_search(catalog):
    config = SearchConfig(catalogs=(str(catalog),))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | Search(config, sources=sources_for(catalog))
        assert_that(result[MAIN] | "Ids" >> beam.Map(lambda c: c.video_id), equal_to(sorted(EXPECTED_KEPT)),
                    label="Kept")
        assert_that(result[OUTCOMES] | "Keys" >> beam.Map(lambda o: (o.item_id, o.reason)),
                    equal_to(list(EXPECTED_OUTCOMES.elements())), label="Outcomes")
        assert_that(result[MAIN] | "Types" >> beam.Map(lambda c: type(c).__name__),
                    equal_to(["CandidateVideo"] * len(EXPECTED_KEPT)), label="KeptTypes")
        assert_that(result[OUTCOMES] | "OutTypes" >> beam.Map(lambda o: isinstance(o, Outcome)),
                    equal_to([True] * sum(EXPECTED_OUTCOMES.values())), label="OutcomeTypes")


def test_search_output_is_reshuffled_so_downloads_fan_out(catalog):
    p = beam.Pipeline(runner=FnApiRunner())
    result = p | Search(SearchConfig(catalogs=(str(catalog),)))
    producer = result[MAIN].producer
    labels = []
    while producer is not None:
        labels.append((producer.full_label, type(producer.transform).__name__))
        producer = producer.parent
    assert any(kind == "Reshuffle" and label.endswith("SpreadCandidates") for label, kind in labels), labels


def test_dedupe_keeps_the_first_in_source_order(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps({"id": "v", "url": "https://x/1", "title": "Mario speedrun", "channel": "A"}) + "\n")
    second.write_text(json.dumps({"id": "v", "url": "https://x/2", "title": "Mario speedrun", "channel": "B"}) + "\n")
    rules = SearchConfig().rules()
    for order, expected in (([first, second], "A"), ([second, first], "B")):
        kept, outcomes = search_candidates([CatalogSource([str(p) for p in order])], rules)
        assert [c.channel for c in kept] == [expected]
        assert [o.reason for o in outcomes] == [reasons.DUPLICATE]


def test_queries_and_search_urls():
    rules = SearchConfig().rules()
    queries = generate_queries(rules)
    assert queries[0] == f"{rules.games[0]} {rules.actions[0]}"
    assert len(queries) == len(set(queries)) == len(rules.games) * len(rules.actions)
    assert generate_queries(rules, "{action} {game}", limit=2) == [f"{rules.actions[0]} {rules.games[0]}",
                                                                  f"{rules.actions[1]} {rules.games[0]}"]
    assert search_url("celeste speedrun", 7) == "ytsearch7:celeste speedrun"
    assert search_url("celeste speedrun", 7, date_sorted=True) == "ytsearchdate7:celeste speedrun"


def test_command_line_options_build_both_configs(catalog):
    parser = argparse.ArgumentParser()
    for config_class in (SearchConfig, DownloadConfig, SiteAccessConfig):  # the stages' flags must not collide
        options.add_options(parser, config_class)
    ns = parser.parse_args(["--catalog", str(catalog), "--catalog", "b.csv", "--youtube", "--youtube-per-query", "3",
                            "--youtube-date-sorted", "--max-duration-s", "600", "--retries", "5",
                            "--max-filesize", "50M", "--rate-limit", "1.5M", "--cookies", "c.txt",
                            "--youtube-sleep-s", "2.5"])
    site = options.build(SiteAccessConfig, ns)  # shared: run.py hands both stages the same one
    search, download = options.build(SearchConfig, ns, site=site), options.build(DownloadConfig, ns, site=site)
    assert search.catalogs == (str(catalog), "b.csv") and search.youtube and search.youtube_per_query == 3
    assert search.rules().max_duration_s == 600 and search.rules().min_duration_s == 16
    assert search.site.cookies == "c.txt" and download.site.cookies == "c.txt"  # a path: read on each worker
    assert run.longest_video_s(search) == 600 and download.retries == 5  # run.py: the download's max_duration_s
    assert download.max_filesize == 50 * 1024**2 and download.rate_limit == int(1.5 * 1024**2)
    assert download.download_dir is None  # run.py defaults it to <output>/videos
    sources = build_sources(search)
    assert [s.name for s in sources] == ["catalog", "youtube"]
    assert sources[1].tasks()[0] == f"{search.rules().games[0]} {search.rules().actions[0]}"
    # searches are paced: before each query, and between its pages inside yt-dlp
    assert sources[1].sleep_s == 2.5 and sources[1].params["sleep_interval_requests"] == 2.5
    assert sources[1].site == search.site  # the same budget, breaker and credentials as the downloads
    assert options.build(SearchConfig, parser.parse_args([])).youtube_sleep_s == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--youtube-sleep-s", "-1"])
    defaults = parser.parse_args([])
    assert run.longest_video_s(options.build(SearchConfig, defaults)) == SearchConfig().rules().max_duration_s
    with pytest.raises(ValueError, match="no candidate source"):
        Search(SearchConfig())


@pytest.mark.network
def test_live_youtube_search():
    """Real YouTube through yt-dlp (needs the internet; skipped offline)."""
    source = YoutubeSource(["celeste speedrun"], per_query=3)
    items = list(source.read("celeste speedrun"))
    candidates = [i for i in items if isinstance(i, CandidateVideo)]
    assert candidates, items
    assert all(c.url.startswith("https://www.youtube.com/") and c.title for c in candidates)
