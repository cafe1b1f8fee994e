"""Test suite (a regular package so that `tests.*` helpers win over stray site-packages `tests` dirs)."""
