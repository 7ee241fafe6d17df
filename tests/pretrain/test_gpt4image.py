"""GPT4Image: reduces to supervised CE at λ = 0, the alignment formulas, seeded description draws,
the shipped CIFAR-10 descriptions."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.multimodal.losses import multi_positive_loss
from fmlab.pretrain import GPT4Image, Supervised
from fmlab.pretrain.gpt4image import description_bank, load_descriptions

from .conftest import TinyCNN


def _bank(k: int = 3, m: int = 4, d: int = 6, seed: int = 0, counts=None):
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts or [m] * k)
    return F.normalize(torch.randn(k, m, d, generator=g), dim=-1), counts


def _batch(n: int = 8, k: int = 3):
    g = torch.Generator().manual_seed(1)
    return {"images": torch.randn(n, 3, 8, 8, generator=g), "labels": torch.arange(n) % k}


def test_without_alignment_it_is_supervised_cross_entropy():
    enc = TinyCNN(dim=8).eval()
    torch.manual_seed(0)
    sup = Supervised(enc, num_classes=3)
    torch.manual_seed(0)  # the classifier head is created first in both
    g4i = GPT4Image(enc, 3, _bank(), align_weight=0.0)
    batch = _batch()
    assert torch.allclose(sup(batch)[0], g4i(batch)[0], atol=1e-6)


def test_cosine_alignment_formula_with_one_description_per_class():
    enc = TinyCNN(dim=8).eval()
    bank = _bank(m=1)
    obj = GPT4Image(enc, 3, bank, align="cosine", align_weight=0.5)
    batch = _batch()
    loss, logs = obj(batch)
    f = enc(batch["images"])
    z = F.normalize(obj.proj(f), dim=-1)
    t = bank[0][batch["labels"], 0]
    align = (1 - (z * t).sum(-1)).mean()
    ce = F.cross_entropy(obj.head(f), batch["labels"])
    assert torch.allclose(logs["align"], align, atol=1e-6)
    assert torch.allclose(loss, ce + 0.5 * align, atol=1e-6)


def test_contrastive_alignment_treats_the_same_description_as_positive():
    enc = TinyCNN(dim=8).eval()
    obj = GPT4Image(enc, 3, _bank(), temperature=0.1)
    batch = _batch()
    torch.manual_seed(5)
    _, logs = obj(batch)
    torch.manual_seed(5)
    text, ids = obj.draw_texts(batch["labels"])
    z = F.normalize(obj.proj(enc(batch["images"])), dim=-1)
    assert torch.allclose(logs["align"], multi_positive_loss(z, text, 10.0, ids), atol=1e-6)


def test_draws_stay_in_each_class_pool_and_cover_it_uniformly():
    obj = GPT4Image(TinyCNN(dim=8), 3, _bank(m=4, counts=[4, 1, 3]))
    labels = torch.arange(30000) % 3
    torch.manual_seed(0)
    _, ids = obj.draw_texts(labels)
    j = ids - labels * 4
    for c, n in enumerate([4, 1, 3]):
        freq = torch.bincount(j[labels == c], minlength=4).float() / 10000
        assert torch.all(freq[n:] == 0)  # padding is never drawn
        assert torch.allclose(freq[:n], torch.full((n,), 1 / n), atol=0.02)


def test_description_bank_and_file_errors(tmp_path):
    def encode(texts):
        return torch.stack([torch.tensor([float(len(t)), 1.0]) for t in texts])

    bank, counts = description_bank({"a": ["x", "yy"], "b": ["zzz"]}, ["b", "a"], encode)
    assert bank.shape == (2, 2, 2) and counts.tolist() == [1, 2]
    assert torch.allclose(bank[1, 1], F.normalize(torch.tensor([2.0, 1.0]), dim=0))
    templ, _ = description_bank(None, ["cat"], lambda t: torch.ones(len(t), 2) * len(t[0]))
    assert templ.shape == (1, 1, 2)
    with pytest.raises(ConfigError, match=r"no descriptions for classes \['c'\]"):
        description_bank({"a": ["x"]}, ["a", "c"], encode)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": []}))
    with pytest.raises(ConfigError, match="class 'a' needs a non-empty list"):
        load_descriptions(bad)


def test_shipped_descriptions_cover_the_cifar10_classes():
    from fmlab.data import open_source

    pools = GPT4Image.provide("descriptions", type("S", (), {"descriptions_file": "cifar10"})())
    names = open_source("cifar10_demo").class_names
    assert set(names) <= set(pools) and all(len(pools[c]) >= 3 for c in names)
