"""Repulsion refuses a non-finite gamma (reliability probe F1) and registers at its definitions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.unlearn.repulsion import REPULSIONS, Repulsion, el2, il2, nl2


def _net_and_anchor():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    return net, {k: v.detach() + 0.1 for k, v in net.named_parameters()}


@pytest.mark.parametrize("gamma", [float("nan"), float("inf"), -float("inf"), -0.5])
def test_non_finite_or_negative_gamma_is_refused_with_its_value(gamma):
    net, anchor = _net_and_anchor()
    with pytest.raises(ConfigError, match=rf"repulsion gamma: {gamma!r}"):
        Repulsion(net, [anchor], "nl2", gamma=gamma)


def test_zero_gamma_is_allowed_and_gives_no_push():
    net, anchor = _net_and_anchor()
    r, logs = Repulsion(net, [anchor], "nl2", gamma=0.0)(net)
    assert float(r.detach()) == 0.0 and math.isclose(logs["d_norm"], 1.0, rel_tol=1e-6)


def test_registry_holds_the_decorated_functions():
    assert REPULSIONS.names() == ["el2", "il2", "nl2"]
    assert REPULSIONS.get("nl2") is nl2 and REPULSIONS.get("el2") is el2 and REPULSIONS.get("il2") is il2
