"""Config loading: YAML into dataclasses, typed --set overrides, errors that name the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import yaml

from fmlab.engine.config import (
    EngineConfig,
    OptimConfig,
    TrainerConfig,
    load_config,
    save_config,
)
from fmlab.errors import ConfigError


@dataclass
class PretrainConfig:
    """A per-command config nesting the engine's sections, as the CLI's configs do."""

    method: str = "simclr"
    temperature: float = 0.5
    views: tuple[int, ...] = (224, 96)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


def _write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_values_and_defaults(tmp_path):
    p = _write(tmp_path, "method: mae\ntrainer:\n  max_steps: 30\n  bf16: true\n"
                         "optim:\n  name: lars\n  lr: 1e-3\n  betas: [0.9, 0.95]\n")
    cfg = load_config(p, PretrainConfig)
    assert cfg.method == "mae"
    assert cfg.trainer.max_steps == 30 and cfg.trainer.bf16 is True
    assert cfg.trainer.batch_size == TrainerConfig().batch_size  # untouched default
    # YAML 1.1 reads "1e-3" as a string; the float field converts it
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.9, 0.95) and isinstance(cfg.optim.betas, tuple)


def test_overrides_are_typed(tmp_path):
    p = _write(tmp_path, "trainer:\n  max_steps: 30\n")
    cfg = load_config(p, PretrainConfig, [
        "trainer.max_steps=100", "trainer.bf16=yes", "trainer.grad_clip=3",
        "optim.lr=5e-4", "optim.betas=0.8,0.9", "method=123", "views=[32]",
    ])
    assert cfg.trainer.max_steps == 100 and isinstance(cfg.trainer.max_steps, int)
    assert cfg.trainer.bf16 is True
    assert cfg.trainer.grad_clip == 3.0 and isinstance(cfg.trainer.grad_clip, float)
    assert cfg.optim.lr == pytest.approx(5e-4)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.method == "123"  # str field keeps the raw text
    assert cfg.views == (32,)


def test_optional_field_accepts_null():
    cfg = load_config(None, EngineConfig, ["schedule.final_weight_decay=0.4"])
    assert cfg.schedule.final_weight_decay == pytest.approx(0.4)
    cfg = load_config(None, EngineConfig, ["schedule.final_weight_decay=null"])
    assert cfg.schedule.final_weight_decay is None


def test_unknown_yaml_key_names_the_nested_path(tmp_path):
    p = _write(tmp_path, "trainer:\n  max_stpes: 3\n")
    with pytest.raises(ConfigError, match=r"trainer\.max_stpes") as e:
        load_config(p, PretrainConfig)
    assert "trainer.max_steps" in str(e.value)  # the suggestion
    assert str(p) in str(e.value)


def test_unknown_override_key_names_it():
    with pytest.raises(ConfigError, match=r"optim\.learning_rate"):
        load_config(None, EngineConfig, ["optim.learning_rate=0.1"])
    with pytest.raises(ConfigError, match=r"'nope\.x'"):
        load_config(None, EngineConfig, ["nope.x=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, EngineConfig, ["trainer.max_steps"])


def test_bad_values_name_key_and_value():
    with pytest.raises(ConfigError, match=r"trainer\.max_steps.*'ten'"):
        load_config(None, EngineConfig, ["trainer.max_steps=ten"])
    with pytest.raises(ConfigError, match=r"trainer\.max_steps.*1\.5"):
        load_config(None, EngineConfig, ["trainer.max_steps=1.5"])
    with pytest.raises(ConfigError, match=r"optim\.name.*'adam'"):
        load_config(None, EngineConfig, ["optim.name=adam"])
    with pytest.raises(ConfigError, match=r"optim\.betas"):
        load_config(None, EngineConfig, ["optim.betas=[0.9]"])
    with pytest.raises(ConfigError, match=r"trainer\.bf16"):
        load_config(None, EngineConfig, ["trainer.bf16=maybe"])
    # range checks run after overrides, with the dotted key
    with pytest.raises(ConfigError, match=r"trainer\.accumulate"):
        load_config(None, EngineConfig, ["trainer.accumulate=0"])
    with pytest.raises(ConfigError, match=r"schedule\.warmup_epochs"):
        load_config(None, EngineConfig, ["schedule.warmup_epochs=1", "schedule.warmup_steps=5"])


def test_section_override_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="section"):
        load_config(None, EngineConfig, ["trainer=3"])
    p = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p, EngineConfig)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", EngineConfig)
    p = _write(tmp_path, "trainer: [1, 2]\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_config(p, EngineConfig)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, PretrainConfig, ["optim.betas=0.5,0.6", "trainer.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["optim"]["betas"] == [0.5, 0.6] and raw["trainer"]["seed"] == 7
    again = load_config(tmp_path / "config.yaml", PretrainConfig)
    assert again == cfg


def test_non_utf8_file_is_a_config_error_naming_it(tmp_path):
    """Probe F6: ``load_config`` (gan train, clip train, pretrain) let a UnicodeDecodeError out."""
    p = tmp_path / "nonutf8.yaml"
    p.write_bytes(b"trainer:\n  seed: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"nonutf8\.yaml: not UTF-8 text \(byte 0xe9 at offset 28\)"):
        load_config(p, EngineConfig)
    # the same text in UTF-8 is read (the check is about the encoding, not the accent)
    q = tmp_path / "utf8.yaml"
    q.write_bytes(b"trainer:\n  seed: 1\n# caf\xc3\xa9\n")
    assert load_config(q, EngineConfig).trainer.seed == 1


class _Toy:
    """A constructor with typed, untyped, required and run-filled parameters."""

    def __init__(self, encoder, size: int, lr: float = 0.1, name: str | None = None,
                 untyped=3, steps: int = 10) -> None:
        pass


class _ToyChild(_Toy):
    def __init__(self, encoder, depth: int = 2, **kwargs) -> None:
        super().__init__(encoder, **kwargs)


def test_config_section_from_signature_types_fields_from_the_constructor(tmp_path):
    from fmlab.engine.config import config_section_from_signature

    section = config_section_from_signature("ToySection", _Toy.__init__, cls=_Toy, skip={"steps"},
                                            extra=(("teacher", str, "t"),))
    # typed keyword parameters with defaults, minus skip, plus extra; required/untyped left out
    assert [f.name for f in dataclasses.fields(section)] == ["lr", "name", "teacher"]
    assert section() == section(lr=0.1, name=None, teacher="t")

    Run = dataclasses.make_dataclass("Run", [("toy", section, field(default_factory=section))])
    cfg = load_config(_write(tmp_path, "toy:\n  lr: 1e-2\n"), Run, ["toy.name=null"])
    assert cfg.toy.lr == pytest.approx(0.01) and isinstance(cfg.toy.lr, float)
    with pytest.raises(ConfigError, match="toy.lr: expected a number"):
        load_config(None, Run, ["toy.lr=abc"])
    with pytest.raises(ConfigError, match="did you mean 'toy.lr'"):
        load_config(None, Run, ["toy.lrr=1"])
    # a **kwargs passthrough adds the parent's constructor options after the child's own
    child = config_section_from_signature("ChildSection", _ToyChild.__init__, cls=_ToyChild)
    assert [f.name for f in dataclasses.fields(child)] == ["depth", "lr", "name", "steps"]
