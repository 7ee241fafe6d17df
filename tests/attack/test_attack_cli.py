"""``fmlab attack universal`` / ``eval`` end to end on a tiny npz: exact resume, the outputs, and
the evaluation's properties (zero δ changes nothing, the noise baseline has δ's ℓ∞ norm,
perturbed features never come from the clean-feature cache)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fmlab.cli.main import main
from fmlab.experiments.attack_eval import noise_like
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def npz(tmp_path):
    return make_npz(tmp_path / "d.npz", n_train=48, n_test=24, n_classes=3, hw=(16, 16))


def _universal(npz, out, *extra):
    return main(["attack", "universal", "--out", str(out), "--backbone", "resnet20_cifar",
                 "--surrogate", f"npz:{npz}", "--set", "trainer.batch_size=8",
                 "--set", "trainer.progress=false", "--set", "data.limit=32",
                 "--set", "attack.width=8", "--set", "attack.z_dim=8", *extra])


def _kill_after_step_2(straight, crashed):
    """A copy of the finished 4-step run as if SIGKILLed after its step-2 checkpoint: the
    checkpoint pointer rewound to step 2 and the exports removed."""
    shutil.copytree(straight, crashed)
    for f in ("delta.safetensors", "delta.json", "delta.png"):
        (crashed / f).unlink()
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002") if isinstance(v, str)
                                       else v) for k, v in info.items()} | {"step": 2}))
    return crashed


def test_resume_after_a_kill_is_bit_identical_and_outputs_are_written(npz, tmp_path, capsys):
    straight = tmp_path / "straight"
    assert _universal(npz, straight, "--eps", "8/255", "--set", "trainer.max_steps=4",
                      "--set", "trainer.checkpoint_every=2") == 0
    crashed = _kill_after_step_2(straight, tmp_path / "crashed")
    capsys.readouterr()
    assert main(["attack", "universal", "--resume", str(crashed)]) == 0
    a = load_file(str(straight / "delta.safetensors"))["delta"]
    b = load_file(str(crashed / "delta.safetensors"))["delta"]
    assert torch.equal(a, b) and a.shape == (3, 32, 32)  # the backbone's input size
    info = json.loads((straight / "delta.json").read_text())
    assert info["kind"] == "linf" and info["step"] == 4 and info["linf"] <= 8 / 255
    assert info["backbone"] == "resnet20_cifar" and (straight / "delta.png").is_file()
    assert json.loads((crashed / "delta.json").read_text())["sha256"] == info["sha256"]


def test_patch_variant_writes_a_patch(npz, tmp_path):
    out = tmp_path / "patch"
    assert _universal(npz, out, "--patch", "0.03", "--set", "trainer.max_steps=1") == 0
    patch = load_file(str(out / "delta.safetensors"))["delta"]
    assert patch.shape == (3, 6, 6) and patch.min() >= 0 and patch.max() <= 1
    assert json.loads((out / "delta.json").read_text())["kind"] == "patch"


def test_noise_baseline_has_the_same_linf_norm():
    torch.manual_seed(0)
    d = torch.empty(3, 32, 32).uniform_(-0.02, 0.02)
    n = noise_like(d, "linf", 5)
    assert float(n.abs().max()) == float(d.abs().max())
    assert torch.equal(n.abs(), torch.full_like(n, float(d.abs().max())))  # ± signs only
    assert 0.4 < float((n > 0).float().mean()) < 0.6
    assert torch.equal(n, noise_like(d, "linf", 5)) and not torch.equal(n, noise_like(d, "linf", 6))


def _eval(npz, delta_path, out):
    return main(["attack", "eval", "--perturbation", str(delta_path), "--backbone",
                 "resnet20_cifar", "--data", f"npz:{npz}", "--shots", "4", "--test-limit", "0",
                 "--out", str(out), "--no-db"])


def test_eval_zero_delta_changes_nothing_and_big_delta_is_not_cached_as_clean(npz, tmp_path):
    zero = tmp_path / "zero.safetensors"
    save_file({"delta": torch.zeros(3, 32, 32)}, str(zero), {"kind": "linf"})
    assert _eval(npz, zero, tmp_path / "e0") == 0
    rec = json.loads((tmp_path / "e0" / "results.json").read_text())
    by = {(r["method"], r["condition"]): r["accuracy"] for r in rec}
    assert {c for _, c in by} == {"clean", "delta", "noise"}
    for m in ("linear", "knn"):  # δ = 0 and noise of its norm (0): exactly the clean accuracy
        assert by[(m, "delta")] == by[(m, "clean")] == by[(m, "noise")]
    big = tmp_path / "big.safetensors"  # a δ that wipes the images out: accuracy must change
    save_file({"delta": -torch.ones(3, 32, 32)}, str(big), {"kind": "linf"})
    assert _eval(npz, big, tmp_path / "e1") == 0  # same cache folder (same test): not reused
    rec1 = json.loads((tmp_path / "e1" / "results.json").read_text())
    acc = {(r["method"], r["condition"]): r["accuracy"] for r in rec1}
    assert acc[("linear", "clean")] == by[("linear", "clean")]
    assert acc[("linear", "delta")] == pytest.approx(1 / 3, abs=0.01)  # black images: one class
    assert (tmp_path / "e1" / "summary.md").is_file()


def test_eval_bad_perturbation_exits_2(npz, tmp_path, capsys):
    assert _eval(npz, tmp_path / "missing.safetensors", tmp_path / "e") == 2
    assert "--perturbation" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    save_file({"delta": torch.zeros(32, 32)}, str(bad))
    assert _eval(npz, bad, tmp_path / "e") == 2
    assert "(C, H, W)" in capsys.readouterr().err
