"""The one-file contract: a new pre-training objective is one module, nothing else is edited.

A throwaway Barlow Twins (a pure loss, a 15-line ``Objective`` with ``default_transform`` and its
registration decorator) is written into a new module in a temporary directory, imported, and
run by ``fmlab pretrain`` from a YAML that names it. A second throwaway objective declares that
it needs labels, the training-set size, the number of classes and a piece it builds itself from
its own config keys; the builder fills them without knowing its name.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from fmlab.cli.main import main
from fmlab.engine.checkpoint import latest_checkpoint
from fmlab.engine.data import TensorSource
from fmlab.errors import DataError
from fmlab.experiments import pretrain_config
from fmlab.experiments.pretrain import (
    PretrainData,
    build_pretrain,
    load_pretrain_config,
    load_pretrain_data,
)
from fmlab.pretrain import OBJECTIVES, Objective, register_objective

from .conftest import smoke_args

BARLOW = '''
    """Barlow Twins (Zbontar et al. 2021): decorrelate the two views' embedding dimensions."""
    from __future__ import annotations

    import torch
    from torch import Tensor, nn

    from fmlab.pretrain import Objective, register_objective
    from fmlab.pretrain.heads import ProjectionHead


    def barlow_loss(z1: Tensor, z2: Tensor, lambd: float) -> Tensor:
        """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2, C the views' cross-correlation."""
        z1 = (z1 - z1.mean(0)) / (z1.std(0) + 1e-6)
        z2 = (z2 - z2.mean(0)) / (z2.std(0) + 1e-6)
        c = z1.T @ z2 / z1.shape[0]
        diag = torch.diagonal(c)
        return (diag - 1).pow(2).sum() + lambd * (c.pow(2).sum() - diag.pow(2).sum())


    @register_objective("barlow")
    class Barlow(Objective):
        def __init__(self, encoder: nn.Module, feature_dim: int | None = None,
                     proj_dim: int = 32, lambd: float = 5e-3) -> None:
            super().__init__()
            self._set_encoder(encoder, feature_dim)
            self.head = ProjectionHead(self.feature_dim, 2 * proj_dim, proj_dim)
            self.lambd = float(lambd)

        def forward(self, batch):
            v1, v2 = batch["views"]
            loss = barlow_loss(self.head(self.encoder(v1)), self.head(self.encoder(v2)), self.lambd)
            return loss, {"loss": loss.detach()}

        @classmethod
        def default_transform(cls, image_size: int = 32, scale: tuple[float, float] = (0.2, 1.0),
                              mean=None, std=None, channels: int | None = None):
            from fmlab.data import augment as A

            view = A.simclr_view(image_size, scale=scale, mean=mean or A.IMAGENET_MEAN,
                                 std=std or A.IMAGENET_STD)
            return A.BatchTransform({"views": [view, view]}, channels=channels)
'''

CONFIG = """\
name: barlow_tiny
model:
  arch: resnet_cifar
  kwargs: {depth: 8, width: 8}
objective:
  name: barlow
  proj_dim: 16
  lambd: 0.005
augment:
  scale: [0.3, 1.0]
optim:
  lr: 0.001
"""


def _forget(name: str) -> None:
    """Undo a throwaway registration (registry entry and the cached config class)."""
    cls = OBJECTIVES.remove(name)
    pretrain_config._CLASSES.pop(cls, None)


@pytest.fixture
def barlow_module(tmp_path, throwaway_module):
    with throwaway_module(tmp_path / "scratch_methods", "fmlab_barlow_contract", BARLOW,
                          lambda: _forget("barlow")) as module:
        yield module


def test_a_new_objective_is_one_module(barlow_module, npz_sources, tmp_path, capsys):
    assert OBJECTIVES.get("barlow") is barlow_module.Barlow
    config = tmp_path / "barlow.yaml"
    config.write_text(CONFIG)
    src = npz_sources["cifar10"]
    # its constructor's options are typed config keys, with the usual errors
    assert main(smoke_args(config, src, tmp_path / "bad", "objective.lambd=abc")) == 2
    assert "objective.lambd: expected a number, got 'abc'" in capsys.readouterr().err
    assert main(smoke_args(config, src, tmp_path / "bad", "objective.lamb=0.01")) == 2
    assert "did you mean 'objective.lambd'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    out = tmp_path / "run"
    assert main(smoke_args(config, src, out, "objective.lambd=0.01")) == 0
    assert "with barlow to step 2/2" in capsys.readouterr().out
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["objective"] == "barlow" and meta["load_check"] == "ok"
    assert meta["kwargs"] == {"depth": 8, "width": 8}
    # the export is the trained encoder of the last checkpoint
    exported = load_file(str(out / "encoder.safetensors"))
    ckpt = load_file(str(latest_checkpoint(out).weights))
    assert exported.keys() == {k[len("encoder."):] for k in ckpt if k.startswith("encoder.")}
    assert all(torch.equal(v, ckpt[f"encoder.{k}"]) for k, v in exported.items())
    saved = load_pretrain_config(out / "config.yaml")
    assert saved.objective.lambd == 0.01 and saved.objective.proj_dim == 16


@pytest.fixture
def needy():
    """An objective that needs labels, the data size, the class count and a built piece."""

    @register_objective("needy_contract")
    class Needy(Objective):
        needs = ("labels", "num_samples", "num_classes", "widget")
        config_fields = (("widget_width", int, 3),)

        def __init__(self, encoder: nn.Module, num_samples: int, num_classes: int,
                     widget: nn.Module, scale: float = 1.0) -> None:
            super().__init__()
            self._set_encoder(encoder, None)
            self.num_samples, self.num_classes, self.widget = num_samples, num_classes, widget
            self.scale = scale

        @classmethod
        def provide(cls, need, section):
            if need == "widget":
                return nn.Linear(section.widget_width, 1)
            return super().provide(need, section)

        @classmethod
        def default_transform(cls, image_size: int = 32, mean=None, std=None,
                              channels: int | None = None):
            from fmlab.pretrain import Supervised

            return Supervised.default_transform(image_size, 4, mean, std, channels)

    try:
        yield Needy
    finally:
        _forget("needy_contract")


def test_declared_needs_are_filled_without_a_name_check(needy, npz_sources):
    cfg = load_pretrain_config(None, [
        "objective.name=needy_contract", "objective.widget_width=5", "objective.scale=2",
        "model.arch=resnet_cifar", "model.kwargs={depth: 8, width: 8}",
        f"data.source=npz:{npz_sources['cifar10']}", "data.limit=20", "data.val_size=8"])
    # what the run fills is not a config key; the class's own config field is
    assert set(vars(cfg.objective)) == {"name", "scale", "widget_width"}
    data = load_pretrain_data(cfg.data)
    obj, transform, _ = build_pretrain(cfg, data)
    assert isinstance(obj, needy) and obj.scale == 2.0
    assert obj.num_samples == len(data.train) == 20 and obj.num_classes == data.num_classes == 4
    assert obj.widget.in_features == 5
    batch = transform(data.train.get_batch(np.arange(4)), torch.Generator().manual_seed(0))
    assert batch["images"].shape == (4, 3, 32, 32)

    unlabelled = PretrainData(TensorSource(data.train.tensors["images"]), None, None,
                              data.image_shape, "x")
    with pytest.raises(DataError, match="objective 'needy_contract' needs labels"):
        build_pretrain(cfg, unlabelled)
