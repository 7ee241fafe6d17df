"""GAN tests run tiny nets: one intra-op thread is several times faster than two on a shared,
loaded 2-core machine (thread hand-off dominates), and it keeps results bitwise repeatable."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread (see tests/conftest.py)."""
