"""Self-distilled further pre-training through ``fmlab pretrain``: stage 1 (plain further MAE) makes
the teacher, stage 2 (``mae_selfdistill``) starts the student from the same weights; the distillation
term is zero when student = teacher, resume is exact, a missing teacher exits 2."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import MAESelfDistill

from .conftest import CONFIG_DIR, kill_after_step_2, smoke_args

STAGE1 = CONFIG_DIR / "further_mae_eurosat.yaml"
STAGE2 = CONFIG_DIR / "further_selfdistill_eurosat.yaml"


def test_the_distillation_term_is_zero_when_student_is_teacher_and_pulls_otherwise():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    other = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    x = {"images": torch.randn(4, 3, 8, 8)}
    same = MAESelfDistill(vit, copy.deepcopy(vit), mask_ratio=0.5, decoder_dim=8, decoder_heads=2)
    torch.manual_seed(1)
    loss, logs = same(x)
    assert float(logs["distill"]) == 0.0 and torch.allclose(loss, logs["mae"])
    pulled = MAESelfDistill(vit, other, distill_weight=2.0, mask_ratio=0.5, decoder_dim=8,
                            decoder_heads=2)
    torch.manual_seed(1)
    loss, logs = pulled(x)
    assert float(logs["distill"]) > 0 and torch.allclose(loss, logs["mae"] + 2 * logs["distill"])
    loss.backward()
    assert all(p.grad is None for p in pulled.teacher.parameters())  # stop-gradient, frozen
    assert not pulled.teacher.training and pulled.train().teacher.training is False


def test_two_stages_and_an_exact_resume(npz_sources, tmp_path, capsys):
    teacher = tmp_path / "stage1"
    assert main(smoke_args(STAGE1, npz_sources["cifar10"], teacher, steps=2)) == 0
    student = tmp_path / "stage2"
    extra = (f"objective.teacher_weights={teacher / 'encoder.safetensors'}",
             "trainer.checkpoint_every=2", "trainer.log_every=1")
    assert main(smoke_args(STAGE2, npz_sources["cifar10"], student, *extra, steps=4)) == 0
    logs = [json.loads(line)["logs"] for line in (student / "metrics.jsonl").read_text().splitlines()
            if '"logs"' in line]
    assert logs[0]["distill"] > 0 and {"mae", "distill"} <= set(logs[-1])
    crashed = kill_after_step_2(student, tmp_path / "crashed")
    assert main(["pretrain", "--resume", str(crashed)]) == 0
    a, b = load_file(str(student / "encoder.safetensors")), load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("teacher", ["", "missing/encoder.safetensors"])
def test_a_missing_teacher_exits_2(teacher, npz_sources, tmp_path, capsys):
    args = smoke_args(STAGE2, npz_sources["cifar10"], tmp_path / "run",
                      f"objective.teacher_weights={teacher}")
    assert main(args) == 2
    assert "objective.teacher_weights" in capsys.readouterr().err
