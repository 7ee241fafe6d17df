"""One-file contract for GAN methods: a loss, a generator and a conditioning head written in a
throwaway module (as a contributor would) train end to end with no other edit.

The module only imports fmlab's public decorators; the run is configured purely with
``--set gan.loss=...``, ``model.generator=...`` and ``model.cond=...``.
"""

from __future__ import annotations

import json

import pytest
import yaml

from fmlab.cli.main import main
from fmlab.gan import CONDITIONINGS, DISCRIMINATORS, GAN_LOSSES, GENERATORS
from fmlab.gan.io import generate_images, load_generator
from tests.conftest import make_npz
from tests.gan_cli.conftest import tiny_config

PLUGIN = '''
"""A contributor's GAN methods: each one class plus its decorator."""
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.gan import Conditioning, Generator, register_conditioning, register_generator, register_loss

CALLS = {"d": 0, "g": 0, "cond_d": 0}


@register_loss("contract_lsq")
class ContractLeastSquares:
    """Least squares with targets +1 / -1."""

    @staticmethod
    def d_loss(real, fake):
        CALLS["d"] += 1
        return (real - 1).pow(2).mean() + (fake + 1).pow(2).mean()

    @staticmethod
    def g_loss(fake):
        CALLS["g"] += 1
        return (fake - 1).pow(2).mean()


@register_generator("contract_linear")
class ContractLinear(Generator):
    """z -> Linear -> tanh, reshaped to an image."""

    def __init__(self, z_dim=8, channels=1, img_size=16, num_classes=0):
        super().__init__(z_dim, num_classes, (channels, img_size, img_size))
        self.fc = nn.Linear(self.z_dim, channels * img_size * img_size)

    def forward(self, z, y=None):
        self._check(z, y)
        return torch.tanh(self.fc(z)).view(z.shape[0], *self.img_shape)


@register_conditioning("contract_ac_real")
class ContractACReal(Conditioning):
    """An AC head whose D term uses the real batch only and whose G term is the CE on fakes."""

    def build(self, head, feature_dim, num_classes, sn):
        head.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, head, phi, y, adv):
        return adv, head.classifier(phi)

    def d_loss(self, real_cls, fake_cls, y_real, y_fake):
        CALLS["cond_d"] += 1
        return F.cross_entropy(real_cls, y_real)

    def g_loss(self, fake_cls, y_fake):
        return F.cross_entropy(fake_cls, y_fake)
'''


@pytest.fixture
def plugin(tmp_path, throwaway_module):
    """Import the throwaway module; afterwards the registries are as shipped again."""
    registries = (GAN_LOSSES, GENERATORS, DISCRIMINATORS, CONDITIONINGS)
    shipped = [set(r.names()) for r in registries]

    def forget() -> None:
        for r, names in zip(registries, shipped):
            for name in set(r.names()) - names:
                r.remove(name)

    with throwaway_module(tmp_path, "contract_gan_plugin", PLUGIN, forget) as module:
        yield module


def _config(tmp_path, **sections):
    npz = make_npz(tmp_path / "digits.npz", n_train=64, n_test=40, n_classes=10, hw=(16, 16),
                   channels=None)
    cfg = tiny_config(npz, samples={"every": 0, "n": 4}, **sections)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_new_loss_and_generator_train_and_export(plugin, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gan", "train", "--config", str(_config(tmp_path)), "--out", str(out),
                 "--no-db", "--set", "gan.loss=contract_lsq",
                 "--set", "model.generator=contract_linear", "--set", "trainer.max_steps=3",
                 "--set", "eval.every=0"]) == 0
    assert "to step 3/3" in capsys.readouterr().out
    # one D and one G update per step, each through the registered loss
    assert plugin.CALLS["d"] == 3 and plugin.CALLS["g"] == 3
    info = json.loads((out / "generator.json").read_text())
    assert info["arch"] == "contract_linear" and info["kwargs"]["z_dim"] == 8
    G, _ = load_generator(out)
    assert type(G).__name__ == "ContractLinear"
    images, _ = generate_images(G, 4, seed=0)
    assert images.shape == (4, 16, 16)


def test_new_conditioning_head_trains_a_conditional_gan(plugin, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gan", "train", "--config", str(_config(tmp_path)), "--out", str(out),
                 "--no-db", "--set", "data.conditional=true",
                 "--set", "model.cond=contract_ac_real", "--set", "trainer.max_steps=2",
                 "--set", "eval.every=0", "--set", "eval.final=false"]) == 0
    assert plugin.CALLS["cond_d"] == 2
    G, _ = load_generator(out)
    assert G.num_classes == 10
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["cond"] == "contract_ac_real"


def test_unknown_names_list_the_registered_ones(tmp_path, capsys):
    assert main(["gan", "train", "--config", str(_config(tmp_path)), "--out", str(tmp_path / "r"),
                 "--no-db", "--set", "gan.loss=nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "hinge" in err and "Traceback" not in err
