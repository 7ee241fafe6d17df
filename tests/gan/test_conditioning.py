"""Conditioning: ADC-GAN label mapping and losses, AC / ACGAN-Mod, projection head, CBN."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.gan import create_discriminator
from fmlab.gan.conditioning import (
    ConditionalBatchNorm2d,
    ConditionHead,
    LinearConditionalBatchNorm2d,
    adc_labels,
    cond_d_loss,
    cond_g_loss,
)


def _ce(logits: torch.Tensor, target: list[int]) -> float:
    """Mean cross-entropy written out: −log softmax(logits)[t]."""
    total = 0.0
    for row, t in zip(logits.tolist(), target):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        total += lse - row[t]
    return total / len(target)


def test_adc_label_mapping():
    y = torch.tensor([0, 1, 2, 4])
    assert adc_labels(y, fake=False).tolist() == [0, 2, 4, 8]
    assert adc_labels(y, fake=True).tolist() == [1, 3, 5, 9]


def test_adc_losses_against_direct_formulas():
    g = torch.Generator().manual_seed(0)
    k = 5
    real_cls, fake_cls = torch.randn(6, 2 * k, generator=g), torch.randn(6, 2 * k, generator=g)
    y_r, y_f = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([4, 4, 1, 0, 2, 3])
    d = cond_d_loss("adc", real_cls, fake_cls, y_r, y_f)
    ref_d = _ce(real_cls, [2 * v for v in y_r.tolist()]) + _ce(fake_cls,
                                                                [2 * v + 1 for v in y_f.tolist()])
    assert float(d) == pytest.approx(ref_d, rel=1e-5)
    gl = cond_g_loss("adc", fake_cls, y_f)
    ref_g = _ce(fake_cls, [2 * v for v in y_f.tolist()]) - _ce(fake_cls,
                                                                 [2 * v + 1 for v in y_f.tolist()])
    assert float(gl) == pytest.approx(ref_g, rel=1e-5)


def test_ac_and_acmod_losses():
    g = torch.Generator().manual_seed(1)
    real_cls, fake_cls = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    y_r, y_f = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 2, 0, 1])
    ac = cond_d_loss("ac", real_cls, fake_cls, y_r, y_f)
    assert float(ac) == pytest.approx(_ce(real_cls, y_r.tolist()) + _ce(fake_cls, y_f.tolist()),
                                      rel=1e-5)
    mod = cond_d_loss("acmod", real_cls, None, y_r, None)  # ACGAN-Mod ignores fakes
    assert float(mod) == pytest.approx(_ce(real_cls, y_r.tolist()), rel=1e-5)
    for kind in ("ac", "acmod"):
        assert float(cond_g_loss(kind, fake_cls, y_f)) == pytest.approx(
            _ce(fake_cls, y_f.tolist()), rel=1e-5)
    for kind in ("none", "proj"):
        assert cond_d_loss(kind, None, None, y_r, y_f) is None
        assert cond_g_loss(kind, None, y_f) is None
    with pytest.raises(ConfigError, match="cond='ac' needs class logits"):
        cond_d_loss("ac", None, fake_cls, y_r, y_f)


@pytest.mark.parametrize("name", ["dcgan", "sngan", "biggan", "mlp"])
def test_projection_head_is_psi_plus_inner_product(name):
    kw = {"hidden": 16} if name == "mlp" else {"ch": 4}
    D = create_discriminator(name, num_classes=4, cond="proj", **kw).eval()
    assert D.cond == "proj"
    x = torch.rand(5, *D.img_shape) * 2 - 1
    y = torch.tensor([3, 0, 1, 2, 3])
    with torch.no_grad():
        out = D(x, y)
        phi = D.embed(x)
        psi = D.adv_logit(phi)  # the unconditional logit ψ(φ)
        emb = D.head.embed.weight  # embed(y) table (spectrally normalised where D uses SN)
        ref = torch.stack([psi[i] + (emb[y[i]] * phi[i]).sum() for i in range(5)])
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.embedding, phi)
    assert out.cls_logits is None


def test_default_cond_and_head_sizes():
    assert create_discriminator("sngan", ch=4).cond == "none"
    assert create_discriminator("sngan", ch=4, num_classes=3).cond == "proj"
    head = ConditionHead(8, 3, "adc")
    assert head.classifier.out_features == 6
    assert ConditionHead(8, 3, "acmod").classifier.out_features == 3


def test_conditional_batchnorm_gain_bias_per_class():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.randn(3, 4))
        cbn.bias.weight.copy_(torch.randn(3, 4))
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    out = cbn(x, y)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    xhat = (x - mean) / torch.sqrt(var + 1e-5)
    ref = xhat * cbn.gain.weight[y][:, :, None, None] + cbn.bias.weight[y][:, :, None, None]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # unconditional = plain affine BatchNorm
    assert ConditionalBatchNorm2d(4).bn.affine


def test_linear_conditional_batchnorm_starts_as_plain_bn_for_zero_condition():
    lcbn = LinearConditionalBatchNorm2d(4, cond_dim=6, sn=False)
    x = torch.randn(3, 4, 2, 2)
    out = lcbn(x, torch.zeros(3, 6))  # gain 1 + W·0, bias W·0
    torch.testing.assert_close(out, torch.nn.functional.batch_norm(x, None, None, training=True))
    c = torch.randn(3, 6)
    out = lcbn(x, c)
    g = 1 + c @ lcbn.gain.weight.T
    b = c @ lcbn.bias.weight.T
    ref = torch.nn.functional.batch_norm(x, None, None, training=True) * g[:, :, None, None] \
        + b[:, :, None, None]
    torch.testing.assert_close(out, ref)
