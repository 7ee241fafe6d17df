"""Tiny data sources and a smoke-run helper for the ``fmlab pretrain`` tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import make_npz

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
# configs that need an earlier run's output (a teacher): tested in test_further_pretraining.py
STAGED = {"further_selfdistill_eurosat", "unip_cifar10"}
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.stem not in STAGED)


@pytest.fixture(scope="session")
def npz_sources(tmp_path_factory) -> dict[str, Path]:
    """``cifar10``-like RGB 8x8 and ``mnist``-like grey 28x28 stand-ins (48 train images)."""
    root = tmp_path_factory.mktemp("pretrain_data")
    return {"cifar10": make_npz(root / "rgb.npz", n_train=48, hw=(8, 8)),
            "mnist": make_npz(root / "grey.npz", n_train=48, hw=(28, 28), channels=None)}


def smoke_args(config: Path, npz: Path, out: Path, *extra: str, steps: int = 2) -> list[str]:
    """``fmlab pretrain`` arguments for a few-second run of ``config`` on a tiny npz."""
    sets = [f"data.source=npz:{npz}", "data.limit=32", "data.val_size=8",
            "trainer.batch_size=8", f"trainer.max_steps={steps}", "trainer.progress=false",
            "trainer.tensorboard=false", "monitor.max_train=32", "monitor.max_val=8",
            "schedule.warmup_steps=0"]  # no warm-up: the engine would shorten it, with a warning
    if config.name.startswith("gpt4image"):  # the stand-in data's classes are c0..c3
        sets.append("objective.descriptions_file=templates")
    if config.name.startswith("distill") and not os.environ.get("FMLAB_DATA"):
        sets.append("objective.teacher_weights=null")  # random teacher without the data root
    args = ["pretrain", "--config", str(config), "--out", str(out)]
    for s in [*sets, *extra]:
        args += ["--set", s]
    return args


def source_for(config: Path, npz_sources: dict[str, Path]) -> Path:
    return npz_sources["mnist" if "mnist" in config.stem else "cifar10"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread (see tests/conftest.py)."""


def kill_after_step_2(straight: Path, crashed: Path) -> Path:
    """``crashed``: a copy of the finished ``straight`` run (checkpoints at steps 2 and 4) as if
    killed after its step-2 checkpoint: the later checkpoint's pointer rewound, the export removed."""
    import json
    import shutil

    shutil.copytree(straight, crashed)
    for f in ("encoder.safetensors", "encoder.json"):
        (crashed / f).unlink()
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002")
                                       if isinstance(v, str) else v) for k, v in info.items()}
                                  | {"step": 2}))
    return crashed


def resume_after_kill(straight: Path, tmp_path: Path, capsys) -> tuple[dict, dict]:
    """Kill a copy of the finished 4-step ``straight`` run after step 2 (:func:`kill_after_step_2`),
    resume it through the CLI, check it said so, and return both runs' encoder tensors
    (straight, resumed) with the same keys, for the caller's comparison."""
    from safetensors.torch import load_file

    from fmlab.cli.main import main

    crashed = kill_after_step_2(straight, tmp_path / "crashed")
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(crashed)]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    a = load_file(str(straight / "encoder.safetensors"))
    b = load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys()
    return a, b
