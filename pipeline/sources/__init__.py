"""Candidate sources for the search stage: catalog files and YouTube search (see ``base.Source``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.sources.base import Source, search_failure
from pipeline.sources.catalog import CatalogSource
from pipeline.sources.youtube import YoutubeSource, generate_queries

if TYPE_CHECKING:
    from pipeline.search import SearchConfig

__all__ = ["CatalogSource", "Source", "YoutubeSource", "build_sources", "generate_queries", "search_failure"]


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
