"""``fmlab gan unlearn --config/--set``: the shipped YAML, flag precedence, and errors.

``run_unlearn`` is replaced by a recorder, so these tests check the settings that would run
(the training itself is tested in tests/unlearn).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import fmlab.experiments.unlearn as unlearn_mod
from fmlab.cli.main import main
from fmlab.experiments.unlearn import UnlearnConfig
from fmlab.experiments.unlearn_config import load_unlearn_config

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "gan" / "unlearn_mnist_mlp.yaml"
BASE = ["gan", "unlearn", "--generator", "G.ckpt", "--arch", "mlp", "--target-class", "3"]
REPORT = {"metrics": {"before": {"target_share": 0.5, "fid": 10.0},
                      "after": {"target_share": 0.1, "fid": 12.0}}}


@pytest.fixture
def recorded(monkeypatch):
    seen: list[UnlearnConfig] = []

    def fake_run(cfg):
        seen.append(cfg)
        return REPORT

    monkeypatch.setattr(unlearn_mod, "run_unlearn", fake_run)
    return seen


def _fields(cfg: UnlearnConfig) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: v for k, v in d.items() if k not in ("out", "db")}


def test_shipped_config_is_the_flag_defaults(recorded, tmp_path, capsys):
    """The YAML and no YAML give the same run: the shipped file is the study's defaults."""
    out = str(tmp_path / "u")
    assert main([*BASE, "--out", out, "--no-db"]) == 0
    assert main([*BASE, "--out", out, "--no-db", "--config", str(SHIPPED)]) == 0
    flags, config = recorded
    assert _fields(flags) == _fields(config)
    assert flags.db is None and str(flags.out) == out
    assert "class 3 share 0.500 -> 0.100" in capsys.readouterr().out


def test_file_then_flags_then_set(recorded, tmp_path):
    cfg_file = tmp_path / "u.yaml"
    cfg_file.write_text("gamma: 4.0\nrepulsion: el2\nunlearn: {steps: 50, lr_g: 1.0e-4}\n")
    assert main([*BASE, "--out", str(tmp_path / "u"), "--config", str(cfg_file),
                 "--gamma", "2", "--unlearn-steps", "60", "--set", "unlearn.steps=70",
                 "--set", "adapt.batch_size=8"]) == 0
    (cfg,) = recorded
    assert (cfg.gamma, cfg.repulsion) == (2.0, "el2")          # flag beats file
    assert (cfg.unlearn.steps, cfg.unlearn.lr_g) == (70, 1e-4)  # --set beats flag; file kept
    assert cfg.adapt.batch_size == 8 and cfg.adapt.steps == 400
    assert cfg.arch == "mlp" and cfg.db == tmp_path / "u" / "fmlab.db"


@pytest.mark.parametrize("text, sets, needle", [
    ("gama: 1\n", [], "unknown key 'gama' (did you mean 'gamma'?)"),
    ("unlearn: {steps: abc}\n", [], "unlearn.steps"),
    ("", ["unlearn.steps=0"], "steps must be >= 1"),           # --set is validated too
    ("", ["repulsion=bogus"], "unknown repulsion 'bogus'"),
    ("- 1\n", [], "top level must be a mapping"),
])
def test_bad_settings_exit_2_naming_the_key(recorded, tmp_path, capsys, text, sets, needle):
    cfg_file = tmp_path / "u.yaml"
    cfg_file.write_text(text)
    out = tmp_path / "u"
    args = [*BASE, "--out", str(out), "--config", str(cfg_file)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not recorded and not out.exists()


def test_library_loader_defaults_match_the_dataclass():
    cfg = load_unlearn_config(None, values={"generator": "G", "target_class": 0, "out": "o"})
    assert cfg == UnlearnConfig(generator="G", target_class=0, out=Path("o"))
