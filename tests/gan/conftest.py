"""GAN tests run tiny nets: one intra-op thread is several times faster than two on a shared,
loaded 2-core machine (thread hand-off dominates), and it keeps results bitwise repeatable."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
