"""Fixtures for the GAN commands: a tiny labelled grey npz and a tiny-DCGAN config for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import make_npz


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny nets: one intra-op thread (the shared fixture of tests/conftest.py)."""


@pytest.fixture
def digits_npz(tmp_path) -> Path:
    """64 train / 40 test grey 16×16 images of 10 classes (class-dependent brightness)."""
    return make_npz(tmp_path / "digits.npz", n_train=64, n_test=40, n_classes=10, hw=(16, 16),
                    channels=None)


def tiny_config(npz: Path, **sections) -> dict:
    """A 16×16 DCGAN (ch 4) config on ``npz`` that trains a step in a few milliseconds."""
    cfg = {
        "name": "tiny",
        "data": {"source": f"npz:{npz}", "channels": 1, "img_size": 16},
        "model": {"ch": 4, "z_dim": 8},
        "ema": {"decay": 0.9},
        "trainer": {"max_steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5,
                    "progress": False, "tensorboard": False},
        "samples": {"every": 10, "n": 16},
        "eval": {"every": 10, "n": 40, "ref": f"npz:{npz}:test", "features": "lenet5_mnist",
                 "metrics": ["fid", "kid", "prdc"]},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture
def write_config(tmp_path, digits_npz):
    def write(name: str = "tiny.yaml", **sections) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(digits_npz, **sections)))
        return path

    return write
