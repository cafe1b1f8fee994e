"""Candidate sources for the search stage: catalog files and YouTube search (see ``base.Source``)."""

from __future__ import annotations

from pipeline.sources.base import Source, search_failure
from pipeline.sources.catalog import CatalogSource
from pipeline.sources.youtube import YoutubeSource, generate_queries

__all__ = ["CatalogSource", "Source", "YoutubeSource", "generate_queries", "search_failure"]
