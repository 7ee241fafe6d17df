"""iBOT / KoLeo in DINO: the MIM term covers masked positions only; masking off is plain DINO."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import DINO
from fmlab.pretrain.ibot import ibot_loss, ibot_masks, masked_vit_tokens

from .conftest import TinyCNN

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)


def _dino(**kw) -> DINO:
    torch.manual_seed(1)
    return DINO(_vit(), out_dim=64, hidden_dim=32, bottleneck_dim=16, use_bn=True, **kw)


def _views(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"global_views": [torch.randn(4, 3, 16, 16, generator=g) for _ in range(2)],
            "local_views": [torch.randn(4, 3, 8, 8, generator=g)]}


def test_mim_loss_is_the_masked_mean_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    mask = torch.rand(3, 5, generator=g) < 0.5
    mask[2] = False  # an unmasked image does not count
    mask[0, 0] = mask[1, 0] = True
    c = torch.randn(1, 7, generator=g)
    ce = -(F.softmax((t - c) / 0.04, -1) * F.log_softmax(s / 0.1, -1)).sum(-1)
    ref = torch.stack([ce[i][mask[i]].mean() for i in range(2)]).mean()
    assert torch.allclose(ibot_loss(s, t, mask, c, 0.1, 0.04), ref, atol=1e-5)
    s2, t2 = s.clone(), t.clone()
    s2[~mask], t2[~mask] = torch.randn(int((~mask).sum()), 7), 0.0
    assert torch.allclose(ibot_loss(s2, t2, mask, c, 0.1, 0.04), ref, atol=1e-5)


def test_with_masking_off_the_loss_is_plain_dino():
    plain = _dino()
    switched = _dino(ibot_weight=1.0, ibot_mask_prob=0.0)
    switched.load_state_dict(plain.state_dict(), strict=False)  # + mask token, patch centre
    batch = _views()
    loss_p, logs_p = plain(batch)
    loss_s, logs_s = switched(batch)
    assert float(logs_s["ibot"]) == 0.0 and float(logs_s["ibot_mask_ratio"]) == 0.0
    assert torch.allclose(loss_s, loss_p, atol=1e-6)


def test_masking_on_adds_a_trainable_mim_term():
    obj = _dino(ibot_weight=1.0, ibot_mask_prob=1.0, koleo_weight=0.1)
    torch.manual_seed(0)
    loss, logs = obj(_views())
    assert float(logs["ibot"]) > 0 and "koleo" in logs
    assert torch.allclose(loss.detach(), logs["dino"] + logs["ibot"] + 0.1 * logs["koleo"],
                          atol=1e-5)
    loss.backward()
    assert obj.mask_token.grad is not None and obj.mask_token.grad.abs().sum() > 0


def test_mask_rates_on_a_large_batch():
    torch.manual_seed(0)
    m = ibot_masks(20000, 64, 0.5, (0.1, 0.5))
    masked = m.any(1)
    assert abs(float(masked.float().mean()) - 0.5) < 0.02
    ratio = m[masked].float().mean(1)
    assert float(ratio.min()) >= 6 / 64 and float(ratio.max()) <= 32 / 64
    assert abs(float(ratio.mean()) - 0.3) < 0.01


def test_masked_patches_are_replaced_before_the_encoder_sees_them():
    vit = _vit()
    x = torch.randn(2, 3, 16, 16)
    none = torch.zeros(2, 16, dtype=torch.bool)
    token = torch.randn(1, 1, 32)
    assert torch.allclose(masked_vit_tokens(vit, x, none, token), vit.forward_tokens(x), atol=1e-6)
    mask = none.clone()
    mask[:, 0] = True
    y = x.clone()
    y[..., :4, :4] += 3.0  # only patch 0 changes, and it is masked
    assert torch.allclose(masked_vit_tokens(vit, x, mask, token),
                          masked_vit_tokens(vit, y, mask, token), atol=1e-6)


def test_ibot_needs_a_vit():
    with pytest.raises(ConfigError, match="ViT"):
        DINO(TinyCNN(), out_dim=16, hidden_dim=16, bottleneck_dim=8, ibot_weight=1.0)
