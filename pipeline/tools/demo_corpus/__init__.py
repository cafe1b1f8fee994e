"""The built-in demo corpus: deterministic 2D-platformer gameplay videos (Procgen) plus the low-quality kinds
the quality filter must reject, with per-step ground-truth actions, a catalog and stand-in hand labels.

``python -m pipeline demo-corpus OUT [--scale S] [--seed N] [--no-faults] [--jobs N] [--quiet]``;
format documented in docs/demo_corpus.md. Modules: ``spec`` (the plan), ``titles`` (catalog text),
``games`` (Procgen + policy), ``junk`` (low-quality drawings), ``render`` (one video + sidecar),
``encode`` (H.264 writer), ``catalog`` (catalog/labels/manifest files), ``build`` (parallel build).

It is the project's one generator of gameplay and junk: ``clips`` draws the same kinds, with the same player
and drawings, straight into 160x90 clips for the classifier tests and benchmarks (see its docstring for why it
lives here).
"""

from __future__ import annotations

from pipeline.tools.demo_corpus.cli import CorpusConfig, main

__all__ = ["CorpusConfig", "main"]
