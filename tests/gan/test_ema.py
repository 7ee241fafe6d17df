"""EMA of G (the engine's EMA + warm-up): formula, warm-up, buffers, spectral-norm nets."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.gan import EMA, create_generator


def test_ema_update_formula_and_warmup():
    G = create_generator("mlp", hidden=8, z_dim=4)
    ema = EMA(G, decay=0.9, start_step=1)
    for p in ema.module.parameters():
        assert not p.requires_grad
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    ema.update(G)  # step 0 < start_step: copy
    for (_, e), (_, p) in zip(ema.module.named_parameters(), G.named_parameters()):
        torch.testing.assert_close(e, p)
    old = {k: v.clone() for k, v in ema.module.named_parameters()}
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(2.0)
    ema.update(G)
    for k, p in G.named_parameters():
        torch.testing.assert_close(dict(ema.module.named_parameters())[k], 0.9 * old[k] + 0.1 * p)
    other = EMA(create_generator("mlp", hidden=8, z_dim=4), decay=0.9)
    other.load_state_dict(ema.state_dict())  # averaged weights and the update count travel
    assert int(other.num_updates) == 2
    torch.testing.assert_close(other.module._modules["0"].weight, ema.module._modules["0"].weight)
    with pytest.raises(ConfigError, match="decay must lie in"):
        EMA(G, decay=1.0)


def test_ema_copies_buffers_and_handles_spectral_norm():
    G = create_generator("biggan", ch=4, z_dim=8, num_classes=2)
    ema = EMA(G, decay=0.5)
    G.train()
    G(G.sample_z(4), torch.tensor([0, 1, 0, 1]))  # moves BN running stats and SN vectors
    ema.update(G)
    torch.testing.assert_close(ema.module.bn.running_mean, G.bn.running_mean)
    assert not ema.module.training
    x = ema.module(G.sample_z(2), torch.tensor([0, 1]))
    assert x.shape == (2, 3, 32, 32)
