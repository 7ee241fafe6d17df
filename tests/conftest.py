"""Shared fixtures. Tests needing the real data skip with a reason when FMLAB_DATA is unset."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# No test may reach the network: Hugging Face libraries must use local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own FMLAB_CACHE so caches never leak between tests or into ~/.cache."""
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: thread hand-off costs more than it saves
    (badly so on a loaded 2-core machine) and results stay bitwise repeatable. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` or an autouse wrapper."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_root() -> Path:
    root = os.environ.get("FMLAB_DATA")
    if not root:
        pytest.skip("FMLAB_DATA is not set: the real data (MNIST, CIFAR-10, weights) is unavailable")
    return Path(root)


def make_npz(path: Path, n_train: int = 40, n_test: int = 20, n_classes: int = 4, hw=(8, 8),
             channels: int | None = 3, seed: int = 0, **overrides) -> Path:
    """A small labelled npz source with class-dependent brightness (so features separate)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % n_classes
        shape = (n, *hw) + ((channels,) if channels else ())
        base = (y * (200 // max(1, n_classes - 1))).reshape(-1, *([1] * (len(shape) - 1)))
        x = np.clip(base + rng.integers(0, 40, size=shape), 0, 255).astype(np.uint8)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = y.astype(np.uint8)
    arrays["class_names"] = np.array([f"c{i}" for i in range(n_classes)])
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    return make_npz(tmp_path / "tiny.npz")


@contextlib.contextmanager
def _throwaway_module(folder: Path, name: str, source: str,
                      forget: Callable[[], None]) -> Iterator[ModuleType]:
    """Write ``source`` as module ``name`` in ``folder``, import it, and undo it all afterwards:
    the one-file contract tests register a method from a module fmlab has never seen, then
    ``forget()`` removes its registrations so the registries are as shipped again."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
        forget()


@pytest.fixture(scope="session")
def throwaway_module():
    """``with throwaway_module(folder, name, source, forget) as module:`` (see above)."""
    return _throwaway_module
