"""KIND layers: the factorised form equals its dense weight; the gate picks exactly one class's tailors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.diffusion.kind import KindConv2d, KindLinear, gate_table, set_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_from_dense_equals_dense_with_every_component_on():
    torch.manual_seed(0)
    lin = nn.Linear(12, 7)
    # 3 learngenes + 3 classes x 2 tailors = 9 >= rank 7: the SVD is complete (+2 padded zeros)
    k = KindLinear.from_dense(lin, learngenes=3, tailors=2, num_classes=3)
    x = torch.randn(5, 12)
    assert torch.allclose(k.dense_weight(None), lin.weight, atol=1e-5)
    assert torch.allclose(k(x), lin(x), atol=1e-5)


def test_conv_from_dense_equals_dense_with_every_component_on():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
    k = KindConv2d.from_dense(conv, learngenes=4, tailors=1, num_classes=2)
    x = torch.randn(2, 3, 9, 9)
    assert torch.allclose(k.dense_weight(None), conv.weight, atol=1e-5)
    assert torch.allclose(k(x), conv(x), atol=1e-5)


def test_truncated_from_dense_is_the_best_rank_r_approximation():
    torch.manual_seed(2)
    lin = nn.Linear(10, 8)
    k = KindLinear.from_dense(lin, learngenes=3)
    w = lin.weight.detach().double()
    s = torch.linalg.svdvals(w)
    err = float(torch.linalg.matrix_norm(k.dense_weight().detach().double() - w))
    assert err == pytest.approx(float(s[3:].norm()), rel=1e-4)  # Eckart–Young


@pytest.mark.parametrize("make", [lambda: KindLinear(6, 5, 2, 2, 3),
                                  lambda: KindConv2d(2, 4, 3, 1, 1, 2, 2, 3)])
def test_per_sample_forward_equals_the_class_dense_weight(make):
    torch.manual_seed(3)
    k = make()
    x = torch.randn(4, 6) if isinstance(k, KindLinear) else torch.randn(4, 2, 5, 5)
    y = torch.tensor([0, 2, 3, 1])   # 3 = the null class: learngenes only
    set_labels(k, y)
    out = k(x)
    for i, c in enumerate(y.tolist()):
        w = k.dense_weight(c)
        ref = (F.linear(x[i:i + 1], w, k.bias) if isinstance(k, KindLinear)
               else F.conv2d(x[i:i + 1], w, k.bias, padding=1))
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5)


def test_changing_class_j_tailors_leaves_class_i_unchanged():
    torch.manual_seed(4)
    k = KindConv2d(3, 5, 3, 1, 1, learngenes=2, tailors=2, num_classes=4)
    x = torch.randn(8, 3, 6, 6)
    y = torch.arange(8) % 4
    set_labels(k, y)
    before = k(x)
    j = 2
    block = slice(j * 2, (j + 1) * 2)     # class j's tailor columns within u_t/s_t/v_t
    with torch.no_grad():
        k.u_t[:, block] += 1.0
        k.s_t[block] += 3.0
        k.v_t[block] -= 0.5
    after = k(x)
    same = y != j
    assert torch.equal(before[same], after[same])
    assert not torch.allclose(before[~same], after[~same])
    # and the learngenes are shared: changing one moves every class
    with torch.no_grad():
        k.s_g[0] += 1.0
    assert not torch.allclose(k(x)[same], after[same])


def test_gate_table_rows():
    g = gate_table(2, 1, 3)
    assert g.shape == (4, 5)
    assert g[:, :2].eq(1).all()                      # learngenes always on
    assert g[:3, 2:].equal(torch.eye(3))             # one tailor block per class
    assert g[3, 2:].eq(0).all()                      # null class: learngenes only
