"""Monitors: kNN accuracy against a naive implementation, collapse flagged, healthy passes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from fmlab.engine.data import TensorSource
from fmlab.engine.monitors import (
    CollapseWarning,
    EmbeddingMonitor,
    check_collapse,
    collapse_stats,
    knn_accuracy,
    knn_predict,
)


def _naive_knn(bank, bank_y, queries, k, t, c):
    """Loop-per-query cosine kNN with exp(sim/T) votes."""
    out = []
    for q in queries:
        sims = [float(q @ b / (q.norm() * b.norm())) for b in bank]
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * c
        for i in order:
            votes[int(bank_y[i])] += math.exp(sims[i] / t)
        out.append(max(range(c), key=lambda j: votes[j]))
    return torch.tensor(out)


def test_knn_matches_naive():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(60, 5, generator=g)
    bank_y = torch.randint(0, 4, (60,), generator=g)
    q = torch.randn(25, 5, generator=g)
    for k, t in ((1, 0.07), (7, 0.07), (20, 0.5)):
        pred = knn_predict(bank, bank_y, q, k=k, temperature=t, num_classes=4, chunk=8)
        assert torch.equal(pred, _naive_knn(bank, bank_y, q, k, t, 4))


def test_knn_accuracy_separable_vs_random():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 16, generator=g) * 4
    y = torch.arange(200) % 5
    z = centres[y] + torch.randn(200, 16, generator=g)
    assert knn_accuracy(z[:150], y[:150], z[150:], y[150:]) == 1.0
    noise = torch.randn(200, 16, generator=g)
    assert knn_accuracy(noise[:150], y[:150], noise[150:], y[150:]) < 0.5


def test_collapse_stats_values():
    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(2000, 64, generator=g)
    s = collapse_stats(healthy)
    assert s["std"] == pytest.approx(1 / math.sqrt(64), rel=0.05)
    assert s["std_ratio"] == pytest.approx(1.0, rel=0.05)
    assert s["effective_rank"] > 55  # close to D for isotropic data
    point = torch.randn(1, 64, generator=g) + 1e-4 * torch.randn(500, 64, generator=g)
    s = collapse_stats(point)
    assert s["std_ratio"] < 0.01 and s["effective_rank"] < 1.1
    # an exactly rank-2 cloud has effective rank between 1 and 2
    basis = torch.randn(2, 64, generator=g)
    s = collapse_stats(torch.randn(500, 2, generator=g) @ basis)
    assert 1.0 < s["effective_rank"] <= 2.0 + 1e-6


def test_check_collapse_flags_and_passes():
    g = torch.Generator().manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy embedding raises nothing
        assert not check_collapse(collapse_stats(torch.randn(500, 32, generator=g)))
    point = torch.ones(300, 32) + 1e-5 * torch.randn(300, 32, generator=g)
    with pytest.warns(CollapseWarning, match="std"):
        assert check_collapse(collapse_stats(point))
    # dimensional collapse: spread along one line (± signs) keeps the std, loses the rank
    line = torch.randn(300, 1, generator=g) * torch.randn(1, 32, generator=g)
    stats = collapse_stats(line + 1e-4 * torch.randn(300, 32, generator=g))
    assert stats["std_ratio"] > 0.1
    with pytest.warns(CollapseWarning, match="effective rank"):
        assert check_collapse(stats)


def test_embedding_monitor_on_sources():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(4, 8, generator=g) * 4
    y = torch.arange(120) % 4
    x = centres[y] + torch.randn(120, 8, generator=g)
    mon = EmbeddingMonitor(TensorSource(x[:40], y[:40]), bank=TensorSource(x[40:], y[40:]),
                           k=5, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = mon(lambda imgs: imgs)
    assert out["knn_top1"] == 1.0 and out["collapse_std_ratio"] > 0.3
    with pytest.warns(CollapseWarning, match="at step 7"):
        out = mon(lambda imgs: torch.ones(len(imgs), 8), where="at step 7")
    assert out["collapse_std_ratio"] < 1e-6
