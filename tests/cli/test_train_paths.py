"""``--resume [RUN_DIR]`` of the config-driven commands (cli.common.add_train_arguments / train_paths)."""

from __future__ import annotations

import argparse

import pytest

from fmlab.cli.common import add_train_arguments, train_paths
from fmlab.errors import ConfigError


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_arguments(p, "configs/x.yaml")
    return p.parse_args(argv)


def test_both_resume_forms_name_the_same_run(tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")
    a = train_paths(_parse(["--resume", str(tmp_path)]), "configs/x.yaml")
    b = train_paths(_parse(["--out", str(tmp_path), "--resume"]), "configs/x.yaml")
    assert a == b == (tmp_path / "config.yaml", tmp_path, True)
    assert train_paths(_parse(["--config", "c.yaml", "--out", "r"]), "configs/x.yaml")[2] is False


def test_resume_without_a_directory_or_with_a_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--resume: give the run directory"):
        train_paths(_parse(["--resume"]), "configs/x.yaml")
    (tmp_path / "config.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="drop --config"):
        train_paths(_parse(["--config", "c.yaml", "--resume", str(tmp_path)]), "configs/x.yaml")


TRAIN_COMMANDS = (["pretrain"], ["gan", "train"], ["clip", "train"], ["text", "pretrain"],
                  ["dense", "train"], ["region", "pretrain"], ["video", "train"], ["str", "pretrain"],
                  ["attack", "universal"], ["vlgpt", "tokenizer"], ["vlgpt", "train"],
                  ["diffusion", "train"], ["translate", "train"], ["caption", "train"])


@pytest.mark.parametrize("command", TRAIN_COMMANDS, ids=" ".join)
def test_every_training_command_takes_both_resume_forms(command, tmp_path):
    """One way to resume across the CLI: each training command parses --resume RUN_DIR and
    --out RUN_DIR --resume into the same (config, run, resumed)."""
    from fmlab.cli.main import build_parser

    (tmp_path / "config.yaml").write_text("{}\n")
    parser = build_parser()
    a = parser.parse_args([*command, "--resume", str(tmp_path)])
    b = parser.parse_args([*command, "--out", str(tmp_path), "--resume"])
    assert train_paths(a, "x") == train_paths(b, "x") == (tmp_path / "config.yaml", tmp_path, True)
