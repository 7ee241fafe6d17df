"""ε-prediction objective: zero for the oracle ε, labels dropped to the null class at p_uncond."""

from __future__ import annotations

import pytest
import torch

from fmlab.diffusion.objective import DiffusionObjective
from fmlab.diffusion.schedule import NoiseSchedule
from tests.diffusion.test_sample import Oracle

pytestmark = pytest.mark.usefixtures("one_thread")


def test_oracle_has_zero_loss_and_null_labels_come_at_p_uncond():
    torch.manual_seed(0)
    sch = NoiseSchedule("linear", 30)
    target = torch.rand(1, 1, 28, 28)
    net = Oracle(target, sch)
    obj = DiffusionObjective(net, sch, p_uncond=0.25)
    n = 4000
    loss, logs = obj({"images": target.expand(n, -1, -1, -1), "labels": torch.zeros(n, dtype=torch.long)})
    assert float(loss) < 1e-8
    y = net.calls[-1]
    assert set(y.tolist()) == {0, 2}
    assert float((y == 2).float().mean()) == pytest.approx(0.25, abs=0.03)
    assert float(logs["uncond_frac"]) == pytest.approx(float((y == 2).float().mean()))
