"""The one-file contract of a PEFT method (issue 27, refactor #1): a method written in a new module,
imported and nothing else edited, runs through ``fmlab finetune`` with its own recipe and its own
BatchNorm policy; a half-registered one (no recipe) gives one clean error, never a KeyError.
"""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
import torch
import yaml

from fmlab.cli.main import main

WEIGHTS = str(files("fmlab") / "assets" / "resnet20_cifar10.safetensors")

METHOD_FILE = '''
"""NormTune: train only the normalisation layers (a throwaway method for the contract test)."""
from torch import nn

from fmlab.peft.basic import NORM_TYPES, _SubtreeMethod
from fmlab.peft.core import register
from fmlab.peft.recipe import Recipe


@register
class NormTune(_SubtreeMethod):
    name = "normtune"
    recipe = Recipe(lr=0.0123, weight_decay=0.007, max_steps=3)
    trains_norm_statistics = True

    def adapter_params(self, model, stage):
        return {f"{n}.{p}": q for n, m in model.named_modules() if isinstance(m, NORM_TYPES)
                for p, q in m.named_parameters(recurse=False)}


@register
class NormTuneFrozenStats(NormTune):
    name = "normtune_frozen"
    trains_norm_statistics = False


@register
class Halfway(_SubtreeMethod):
    name = "halfway"  # registered, but declares no fine-tuning recipe
'''


@pytest.fixture(scope="module")
def normtune(tmp_path_factory, throwaway_module):
    """Write the method into a new module, import it; unregister it afterwards."""
    from fmlab.peft import METHODS

    def forget() -> None:
        for name in ("normtune", "normtune_frozen", "halfway"):
            METHODS.remove(name)

    with throwaway_module(tmp_path_factory.mktemp("plugin"), "fmlab_normtune_plugin", METHOD_FILE,
                          forget) as module:
        yield module


def _run(out, method, *extra):
    return main(["finetune", "--backbone", "resnet20_cifar", "--weights", WEIGHTS,
                 "--data", "cifar10_demo", "--method", method, "--shots", "2", "--seeds", "1",
                 "--max-test", "20", "--set", "trainer.batch_size=10", "--out", str(out),
                 "--no-db", *extra])


def _bn_means(model):
    return torch.cat([m.running_mean.flatten() for m in model.modules()
                      if isinstance(m, torch.nn.BatchNorm2d)])


@pytest.mark.parametrize("method, stats_move", [("normtune", True), ("normtune_frozen", False)])
def test_a_one_file_method_runs_with_its_recipe_and_bn_policy(normtune, tmp_path, method,
                                                              stats_move):
    from fmlab.experiments.finetune import build_base, load_finetuned

    assert _run(tmp_path, method) == 0
    rec = json.loads((tmp_path / "results.json").read_text())[0]
    run_dir = tmp_path / f"{method}_2_1"
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    # the recipe declared on the class, with no --set: lr, weight decay and steps
    assert cfg["optim"]["lr"] == 0.0123 and cfg["optim"]["weight_decay"] == 0.007
    assert cfg["trainer"]["max_steps"] == 3 and rec["steps"] == 3
    # only the norm layers and the head train (BN weight + bias of ResNet-20, head 64*10+10)
    bn = sum(m.weight.numel() + m.bias.numel() for m in build_base("resnet20_cifar", WEIGHTS, 10)
             .modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert rec["trainable_parameters"] == bn + 650
    # bn_stats=auto follows the class's trains_norm_statistics (the state kept is a trained one,
    # not the start, so statistics that were updated show in it)
    assert rec["best_step"] > 0
    base = _bn_means(build_base("resnet20_cifar", WEIGHTS, 10))
    tuned = _bn_means(load_finetuned(run_dir))
    assert (not torch.equal(base, tuned)) is stats_move


def test_the_method_list_and_help_come_from_the_registry(normtune, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    assert "normtune" in out and "lr 0.0123, weight decay 0.007, 3 steps" in out
    assert "halfway" not in out  # no recipe: not a fine-tuning method


def test_a_half_registered_method_is_one_clean_error(normtune, tmp_path, capsys):
    rc = _run(tmp_path, "halfway")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "'halfway'" in err and "recipe" in err
    assert not (tmp_path / "results.json").exists()
