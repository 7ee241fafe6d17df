"""UNIP attention distillation: KL formula, zero for a copy of the teacher, the NMI-chosen layer
(kept across resume), and the two runs through ``fmlab pretrain``."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from fmlab.cli.main import main
from fmlab.errors import ConfigError
from fmlab.metrics.attention import attention_nmi
from fmlab.models.vit import VisionTransformer, attention_maps
from fmlab.pretrain import UNIP
from fmlab.pretrain.unip import attention_kl

from .conftest import CONFIG_DIR, smoke_args


def _vit(dim=8, depth=2, heads=2, seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=8, patch_size=4, embed_dim=dim, depth=depth, num_heads=heads)


def test_attention_kl_formula():
    t = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    s = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    manual = sum(float(t[b, h, q] @ (t[b, h, q].log() - s[b, h, q].log()))
                 for b in range(2) for h in range(3) for q in range(5)) / 30
    assert float(attention_kl(t, s)) == pytest.approx(manual, rel=1e-5)


def test_a_copy_of_the_teacher_has_zero_loss_and_the_chosen_layer_is_the_closest_nmi():
    teacher = _vit(depth=3)
    x = {"images": torch.randn(4, 3, 8, 8)}
    same = UNIP(copy.deepcopy(teacher), teacher, teacher_layer=2)
    loss, _ = same(x)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    auto = UNIP(_vit(depth=1, heads=1, seed=1), teacher, hybrid_nmi=0.05)
    loss, logs = auto(x)
    nmi = [float(attention_nmi(a).mean()) for a in attention_maps(teacher, x["images"])]
    want = min(range(3), key=lambda i: abs(nmi[i] - 0.05))
    assert int(logs["teacher_layer"]) == want and int(auto.layer) == want
    loss.backward()  # heads differ (1 vs 2): compared as head means; the student learns
    assert auto.encoder.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in auto.teacher.parameters())
    moved = UNIP(_vit(depth=1, heads=1, seed=1), teacher)
    moved.load_state_dict(auto.state_dict())
    assert int(moved.layer) == want  # the choice resumes with the weights


def test_mismatched_grids_are_refused():
    other = VisionTransformer(img_size=8, patch_size=2, embed_dim=8, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match="token grid"):
        UNIP(_vit(), other)


def test_teacher_run_then_student_run(npz_sources, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(smoke_args(CONFIG_DIR / "mae_cifar10.yaml", npz_sources["cifar10"], teacher,
                           "model.kwargs={embed_dim: 48, depth: 3, num_heads: 3}")) == 0
    student = tmp_path / "student"
    assert main(smoke_args(CONFIG_DIR / "unip_cifar10.yaml", npz_sources["cifar10"], student,
                           f"objective.teacher_weights={teacher / 'encoder.safetensors'}",
                           "model.kwargs={embed_dim: 24, depth: 2, num_heads: 3}",
                           "trainer.log_every=1")) == 0
    logs = [json.loads(line)["logs"] for line in (student / "metrics.jsonl").read_text().splitlines()
            if '"logs"' in line]
    assert logs and logs[-1]["kl"] > 0 and 0 <= logs[-1]["teacher_layer"] < 3
    assert json.loads((student / "encoder.json").read_text())["load_check"] == "ok"
    capsys.readouterr()
    assert main(smoke_args(CONFIG_DIR / "unip_cifar10.yaml", npz_sources["cifar10"], tmp_path / "x")) == 2
    assert "objective.teacher_weights" in capsys.readouterr().err
