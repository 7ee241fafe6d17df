"""PELA: rank formula, SVD factors = best rank-r approximation, ≥⅓ fewer weights, distillation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError

from .nets import TinyAttnNet, make


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 12), nn.ReLU(),
                         nn.Linear(12, 4)).eval()


def test_rank_formula_and_factor_shapes():
    m = fp.apply(_mlp(), "pela", targets=["0", "2"], compression_ratio=2)
    # r = ⌊d_in·d_out / (ratio·(d_in + d_out))⌋: 600/100 = 6; 240/64 = 3.75 → 3
    assert [d["rank"] for d in fp.adapter_stages(m)[0]["info"]["layers"]] == [6, 3]
    assert isinstance(m[0], fp.LowRankPair)
    assert m[0][0].weight.shape == (6, 30) and m[0][0].bias is None
    assert m[0][1].weight.shape == (20, 6) and m[0][1].bias.shape == (20,)


def test_factors_are_the_best_rank_r_approximation():
    base = _mlp()
    w = base[0].weight.detach().numpy().astype(np.float64)
    m = fp.apply(copy.deepcopy(base), "pela", targets="0", compression_ratio=2)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    best = (u[:, :6] * s[:6]) @ vt[:6]
    np.testing.assert_allclose(m[0].product().detach().numpy(), best, rtol=0, atol=1e-5)
    # √σ is split evenly: both factors have the same singular values
    s1 = np.linalg.svd(m[0][0].weight.detach().numpy(), compute_uv=False)
    s2 = np.linalg.svd(m[0][1].weight.detach().numpy(), compute_uv=False)
    np.testing.assert_allclose(s1, np.sqrt(s[:6]), rtol=1e-5)
    np.testing.assert_allclose(s2, np.sqrt(s[:6]), rtol=1e-5)
    torch.testing.assert_close(m[0][1].bias, base[0].bias)


def test_full_rank_conv_pair_reproduces_the_conv():
    torch.manual_seed(0)
    holder = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1))
    base = copy.deepcopy(holder)
    fp.apply(holder, "pela", targets="0", compression_ratio=0.01)  # rank capped at min(27, 5)
    pair = holder[0]
    assert pair[0].kernel_size == (3, 3) and pair[0].stride == (2, 2) and pair[0].out_channels == 5
    assert pair[1].kernel_size == (1, 1)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(holder(x), base(x), rtol=1e-5, atol=1e-5)


def test_compression_ratio_2_removes_at_least_a_third():
    from fmlab.models import create_backbone

    bb = create_backbone("resnet20_cifar", weights=None)
    targeted = [n for n, mod in bb.named_modules() if isinstance(mod, nn.Conv2d)]
    before = sum(bb.get_submodule(n).weight.numel() for n in targeted)
    fp.apply(bb, "pela", targets="trunk.*conv*", compression_ratio=2)
    savings = fp.parameter_savings(bb)
    assert savings["before"] == before  # every conv of resnet20 (no conv biases)
    assert savings["removed"] >= before / 3
    assert fp.trainable_parameters(bb) == savings["after"]


def test_only_the_factors_train():
    m = fp.apply(make(), "pela", targets=["conv2", "fc"])
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert names == {"conv2.0.weight", "conv2.1.weight", "fc.0.weight", "fc.1.weight",
                     "fc.1.bias"}


def test_uncompressible_layers():
    with pytest.raises(ConfigError, match=r"cannot compress '4': its rank at .* 8 is 0"):
        fp.apply(_mlp(), "pela", targets="re:(0|4)", compression_ratio=8)
    # default targets skip what cannot be compressed: 30→20 gives r = 1, 20→12 and 12→4 give 0
    m = fp.apply(_mlp(), "pela", compression_ratio=8)
    assert [d["module"] for d in fp.adapter_stages(m)[0]["info"]["layers"]] == ["0"]
    with pytest.raises(ConfigError, match="out_proj of a MultiheadAttention"):
        fp.apply(make(TinyAttnNet), "pela", targets="attn.out_proj")
    with pytest.raises(ConfigError, match="compression_ratio must be a positive number"):
        fp.apply(_mlp(), "pela", compression_ratio=0)


def test_inf_norm_penalty_matches_direct_formula():
    teacher = _mlp()
    student = fp.apply(copy.deepcopy(teacher), "pela", targets=["0", "2"], compression_ratio=2)
    eps = 0.01
    terms = []
    for name in ("0", "2"):
        w_t = teacher.get_submodule(name).weight.detach().numpy().astype(np.float64)
        pair = student.get_submodule(name)
        w2 = pair[1].weight.detach().numpy().astype(np.float64)
        w1 = pair[0].weight.detach().numpy().astype(np.float64)
        terms.append((np.max(np.abs(w2 @ w1 - w_t)) - eps) ** 2)
    got = fp.inf_norm_penalty(student, teacher, eps=eps)
    assert got.item() == pytest.approx(np.mean(terms), rel=1e-5)
    got.backward()
    assert student[0][0].weight.grad is not None


def test_loss_terms_match_direct_formulas():
    teacher = _mlp()
    student = fp.apply(copy.deepcopy(teacher), "pela", targets=["0", "2"], compression_ratio=2)
    x = torch.randn(5, 30)
    loss_fn = fp.PELADistillLoss(student, teacher, kd_alpha=0.7, kd_beta=0.3, temperature=2.0,
                                 inf_norm_weight=0.0)
    loss, logs = loss_fn(x)
    with torch.no_grad():
        hs0, ht0 = student[0](x), teacher[0](x)
        hs2 = student[2](student[1](hs0))
        ht2 = teacher[2](teacher[1](ht0))
        feat = (F.mse_loss(hs0, ht0) + F.mse_loss(hs2, ht2)) / 2
        ps = torch.softmax(student(x) / 2, -1)
        pt = torch.softmax(teacher(x) / 2, -1)
        kl = (pt * (pt.log() - ps.log())).sum(-1).mean() * 4
    assert logs["feature_mse"] == pytest.approx(feat.item(), rel=1e-5)
    assert logs["logits_kl"] == pytest.approx(kl.item(), rel=1e-4)
    assert loss.item() == pytest.approx(0.7 * feat.item() + 0.3 * kl.item(), rel=1e-4)


def test_distillation_loss_falls_on_random_images():
    teacher = make()
    student = fp.apply(copy.deepcopy(teacher), "pela", targets=["conv2", "fc"],
                       compression_ratio=4)
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(16, 3, 8, 8, generator=g) for _ in range(4)]
    frozen = {n: p.clone() for n, p in student.named_parameters() if not p.requires_grad}
    hist = fp.pela_distill(student, teacher, images, steps=40, lr=1e-2, kd_beta=1.0)
    first = np.mean([h["loss"] for h in hist[:4]])
    last = np.mean([h["loss"] for h in hist[-4:]])
    # rank-limited factors keep an irreducible error; the loss must still fall clearly
    assert last < 0.85 * first
    assert hist[-1]["feature_mse"] < hist[0]["feature_mse"]
    assert hist[-1]["inf_norm"] < hist[0]["inf_norm"]
    assert {"feature_mse", "logits_kl", "inf_norm", "loss"} <= set(hist[0])
    for n, p in student.named_parameters():  # only the factors moved
        if n in frozen:
            assert torch.equal(p, frozen[n])
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_distill_stops_on_a_one_shot_iterable_and_restores_modes():
    teacher = _mlp()
    student = fp.apply(copy.deepcopy(teacher), "pela", targets="0").train()
    gen = (torch.randn(4, 30) for _ in range(3))
    assert len(fp.pela_distill(student, teacher, gen, steps=10)) == 3
    assert student.training and not teacher.training
    with pytest.raises(ConfigError, match="separate"):
        fp.PELADistillLoss(student, student)


def test_engine_contract_dict_batch_modes_and_encoder():
    teacher = _mlp()
    student = fp.apply(copy.deepcopy(teacher), "pela", targets=["0", "2"])
    loss_fn = fp.PELADistillLoss(student, teacher).train()
    assert loss_fn.encoder is student
    assert not student.training and not teacher.training  # default: student in eval mode
    fp.PELADistillLoss(student, teacher, student_train_mode=True).train()
    assert student.training and not teacher.training
    x = torch.randn(4, 30)
    loss, logs = loss_fn({"images": x, "labels": torch.zeros(4, dtype=torch.long)})
    assert loss.requires_grad and logs["loss"] == pytest.approx(loss_fn(x)[1]["loss"])
    assert set(logs) == {"feature_mse", "inf_norm", "loss"}
