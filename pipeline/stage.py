"""The convention every pipeline stage follows, so the top-level run can wire stages in one screen.

A stage is a composite ``beam.PTransform`` whose ``expand`` returns ``{MAIN: items that go on,
OUTCOMES: schemas.Outcome records}``. A stage emits an ``Outcome`` only for items whose fate it
decides finally (dropped, failed, or kept at the last stage); items it passes on get their outcome later.
Per-element work lives in plain functions that tests call without Beam.
"""

from __future__ import annotations

MAIN = "main"
OUTCOMES = "outcomes"
