"""Fixtures of the service tests; the helpers they use are in tests/served_index.py."""

from __future__ import annotations

import pytest
from served_index import ServedStore, make_served_store


@pytest.fixture(scope="module")
def served_store(tmp_path_factory) -> ServedStore:
    return make_served_store(tmp_path_factory.mktemp("served"))
