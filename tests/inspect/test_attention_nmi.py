"""Attention NMI: its known values, the captured maps are the ones the ViT applies, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.metrics.attention import attention_nmi
from fmlab.models.vit import VisionTransformer, attention_maps
from tests.conftest import make_npz


def test_known_values():
    n = 12
    assert float(attention_nmi(torch.eye(n))) == pytest.approx(1.0)  # local
    perm = torch.eye(n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    assert float(attention_nmi(perm)) == pytest.approx(1.0)  # any one-to-one map
    assert float(attention_nmi(torch.full((n, n), 1 / n))) == pytest.approx(0.0, abs=1e-9)  # uniform
    one_key = torch.zeros(n, n)
    one_key[:, 5] = 1
    assert float(attention_nmi(one_key)) == 0.0  # every query on one key: global
    # two groups of queries, each uniform over its own half of the keys: I = log 2
    half = torch.zeros(n, n)
    half[: n // 2, : n // 2] = 2 / n
    half[n // 2:, n // 2:] = 2 / n
    assert float(attention_nmi(half)) == pytest.approx(np.log(2) / np.log(n), rel=1e-6)
    batch = torch.stack([torch.eye(n), torch.full((n, n), 1 / n)]).unsqueeze(1)  # (2, 1, n, n)
    assert attention_nmi(batch).shape == (2, 1)


def test_captured_maps_are_the_attention_the_vit_applies():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2).eval()
    x = torch.randn(3, 3, 8, 8)
    maps = attention_maps(vit, x)
    assert len(maps) == 2 and all(torch.allclose(m.sum(-1), torch.ones(())) for m in maps)
    blk = vit.blocks[0]
    tokens = vit._prefix(vit.embed_patches(x))
    h = blk.norm1(tokens)
    v = blk.attn.qkv(h).chunk(3, dim=-1)[2].reshape(3, 5, 2, 4).transpose(1, 2)
    manual = blk.attn.proj((maps[0] @ v).transpose(1, 2).reshape(3, 5, 8))
    assert torch.allclose(manual, blk.attn(h), atol=1e-5)


def test_inspect_attention_nmi_command(tmp_path, capsys):
    npz = make_npz(tmp_path / "d.npz", hw=(32, 32))
    out = tmp_path / "nmi"
    assert main(["inspect", "attention-nmi", "--encoder", "vit_tiny_cifar", "--data", f"npz:{npz}",
                 "--n", "4", "--out", str(out)]) == 0
    table = json.loads((out / "attention_nmi.json").read_text())
    assert len(table["layers"]) == 6 and table["n_images"] == 4
    assert all(0 <= r["nmi_mean"] <= 1 and len(r["per_head"]) == 3 for r in table["layers"])
    assert (out / "attention_nmi.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["inspect", "attention-nmi", "--encoder", "resnet20_cifar", "--data", f"npz:{npz}",
                 "--out", str(tmp_path / "x")]) == 2
    assert "needs a ViT encoder" in capsys.readouterr().err
