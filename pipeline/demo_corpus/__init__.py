"""The built-in demo corpus: deterministic 2D-platformer gameplay videos (Procgen) plus the low-quality kinds
the quality filter must reject, with per-step ground-truth actions, a catalog and stand-in hand labels.

``python -m pipeline demo-corpus OUT [--scale S] [--seed N] [--no-faults] [--jobs N] [--quiet]``;
format documented in docs/demo_corpus.md. Modules: ``spec`` (the plan), ``titles`` (catalog text),
``games`` (Procgen + policy), ``junk`` (low-quality drawings), ``render`` (one video + sidecar),
``encode`` (H.264 writer), ``catalog`` (catalog/labels/manifest files), ``build`` (parallel build).
"""

from __future__ import annotations

from pipeline.demo_corpus.cli import CorpusConfig, main

__all__ = ["CorpusConfig", "main"]
