"""Suite-wide settings: keep torch to few threads on the 2-core CI machines and skip network tests offline."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _online() -> bool:
    try:
        socket.create_connection(("www.youtube.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    if not any("network" in item.keywords for item in items):
        return
    if os.environ.get("GENIE_NETWORK_TESTS") == "1" and _online():
        return
    skip = pytest.mark.skip(reason="network test: set GENIE_NETWORK_TESTS=1 on a machine with internet access")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
