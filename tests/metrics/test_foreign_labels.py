"""Intra-FID/PRDC errors name fake labels that are not classes of the reference (probe F14).

Before: fake labels all 42 against a 10-class reference said only "class 0 has 0 fake samples".
The values computed for well-labelled inputs are unchanged; only the refusal's message grows.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from torch import nn

from fmlab.errors import DataError
from fmlab.metrics import FeatureExtractor, StreamingIntraFID, evaluate, fid, intra_fid, intra_prdc
from fmlab.metrics._checks import foreign_labels_hint
from fmlab.metrics.reference import ReferenceStats

RNG = np.random.default_rng(0)
REAL = RNG.normal(size=(60, 3))
Y_REAL = np.arange(60) % 3
FAKE = RNG.normal(size=(30, 3))
Y_OOB = np.full(30, 42)


def test_hint_lists_foreign_labels_and_counts():
    assert foreign_labels_hint([42, 42, 7, 1], range(3)) == (
        "; fake labels 7, 42 (3 samples) are not classes of the reference (0..2)")
    assert foreign_labels_hint([0, 1, 2], range(3)) == ""


@pytest.mark.parametrize("fn", [intra_fid, lambda *a: intra_prdc(*a, k=2)])
def test_class_wise_metrics_name_the_out_of_range_label(fn):
    with pytest.raises(DataError, match=r"class 0 has 20 real and 0 fake.*fake labels 42 \(30 samples\)"):
        fn(REAL, Y_REAL, FAKE, Y_OOB)


def test_streaming_intra_fid_names_the_out_of_range_label():
    m = StreamingIntraFID().update(REAL, Y_REAL, real=True).update(FAKE, Y_OOB)
    with pytest.raises(DataError, match=r"fake labels 42 \(30 samples\)"):
        m.compute()


def test_evaluate_with_cached_reference_names_the_out_of_range_label(monkeypatch):
    """The FID-only path (cached per-class reference statistics, as in `fmlab gan eval`)."""
    ev = importlib.import_module("fmlab.metrics.evaluate")  # the module (the package's `evaluate` is the function)

    per_class = {c: (REAL[Y_REAL == c].mean(0), np.cov(REAL[Y_REAL == c], rowvar=False)) for c in range(3)}
    stats = ReferenceStats(REAL.mean(0), np.cov(REAL, rowvar=False), 60, {"selection": "all"},
                           per_class=per_class, class_counts={c: 20 for c in range(3)})

    class Split:
        labels, content_hash, name, origin = Y_REAL, "h", "test", "toy"

        def iter_batches(self, *a):  # pragma: no cover - never reached: stats are given
            raise AssertionError

        def __len__(self):
            return 60

    monkeypatch.setattr(ev, "reference_statistics", lambda *a, **k: stats)
    with pytest.raises(DataError, match=r"class 0 has 0 fake samples.*fake labels 42 \(30 samples\)"):
        evaluate(FAKE, Split(), extractor=FeatureExtractor("toy", lambda b: b, nn.Identity(), 3, {}),
                 metrics=["ifid"], fake_labels=Y_OOB)


def test_well_labelled_values_unchanged():
    y_fake = np.arange(30) % 3
    direct = np.mean([fid(REAL[Y_REAL == c], FAKE[y_fake == c]) for c in range(3)])
    assert intra_fid(REAL, Y_REAL, FAKE, y_fake)["mean"] == pytest.approx(direct, rel=1e-12)
