"""PVP: `fmlab finetune pretrain-peft` (stage 1) and `fmlab finetune --init-from` (stage 2).

Properties: the saved modules rebuild stage 1's function on a fresh backbone; stage 2 starts at
exactly stage 1's module values with a fresh head; a different method / option / backbone, or an
upstream that shares an image with the downstream test split, is refused (exit 2, named).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fmlab.peft as fp
from fmlab.cli.main import main
from fmlab.experiments import finetune_run
from fmlab.experiments.finetune import build_base, load_finetuned
from fmlab.peft.core import get_record
from tests.conftest import make_npz

FAST = ["--set", "trainer.max_steps=3", "--set", "trainer.batch_size=4", "--no-db"]
VIT = ["--backbone", "vit_tiny_cifar"]


def _stage1(tmp, method="vpt", backbone=VIT, options=("num_tokens=2",), extra=()):
    up = make_npz(tmp / "up.npz", n_train=24, n_test=6, n_classes=3, hw=(16, 16), seed=0)
    out = tmp / f"pvp_{method}"
    opts = [a for o in options for a in ("--option", o)]
    rc = main(["finetune", "pretrain-peft", *backbone, "--data", f"npz:{up}", "--method", method,
               *opts, "--out", str(out), *FAST, *extra])
    assert rc == 0
    return up, out


@pytest.fixture(scope="module")
def vpt_pvp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pvp")
    up, out = _stage1(tmp, extra=("--set", "data.limit=20", "--set", "optim.lr=0.05"))
    down = make_npz(tmp / "down.npz", n_train=16, n_test=6, n_classes=2, hw=(16, 16), seed=1)
    return tmp, up, out, down


def _stage2(out_dir, down, pvp, method="vpt", options=("num_tokens=2",), backbone=VIT, extra=()):
    opts = [a for o in options for a in ("--option", o)]
    return main(["finetune", *backbone, "--data", f"npz:{down}", "--method", method, *opts,
                 "--init-from", str(pvp), "--shots", "2", "--seeds", "1", "--out", str(out_dir),
                 *FAST, *extra])


def test_stage1_writes_the_adapter_and_its_provenance(vpt_pvp):
    _, up, out, _ = vpt_pvp
    meta = json.loads((out / "pvp.json").read_text())
    assert meta["method"] == "vpt" and meta["options"]["num_tokens"] == 2
    assert meta["steps"] == 3 and meta["seed"] == 0 and meta["upstream"] == f"npz:{up}"
    # data.limit=20 of 24: the seeded subset, every image of it hashed (with its train index)
    assert meta["n_images"] == 20 and meta["data_limit"] == 20
    (rec,) = json.loads((out / "results.json").read_text())
    assert rec["shots"] == "all" and rec["n_train"] == 20 and rec["n_val"] == 0
    hashes = load_file(str(out / meta["image_hashes"]))
    assert hashes["sha256"].shape == (20, 32)
    idx = hashes["index"].numpy()
    assert len(np.unique(idx)) == 20 and idx.max() < 24
    x_up = np.load(up)["x_train"]
    from fmlab.data.hashing import image_sha256

    assert np.array_equal(hashes["sha256"].numpy(), image_sha256(x_up[idx]))
    # only the prompts (and the discarded upstream head) trained: 2 tokens x 192
    assert rec["trainable_parameters"] == 2 * 192 + (192 * 3 + 3)


def test_saved_modules_reproduce_stage1_on_a_fresh_backbone(vpt_pvp):
    tmp, up, out, _ = vpt_pvp
    run = out / "vpt_all_0"
    reloaded = load_finetuned(run)
    x = torch.from_numpy(np.load(up)["x_test"])
    ref = torch.tensor(json.loads((run / "finetune.json").read_text())["check_logits"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x)[: len(ref)], ref, rtol=0, atol=1e-6)
    # stage 2's way in: a fresh base, the method applied, the modules copied (head left alone)
    fresh = fp.apply(build_base("vit_tiny_cifar", None, 5), "vpt", head="head", num_tokens=2)
    fp.init_from_adapter(fresh, run / "adapter")
    with torch.no_grad():
        assert torch.equal(fresh.eval().encode(x), reloaded.encode(x))
        untrained = fp.apply(build_base("vit_tiny_cifar", None, 5), "vpt", head="head",
                             num_tokens=2).eval()
        assert not torch.allclose(untrained.encode(x), reloaded.encode(x))


def test_init_from_starts_at_the_saved_modules_with_a_fresh_head(vpt_pvp, monkeypatch):
    tmp, _, out, down = vpt_pvp
    saved = fp.METHODS.get("vpt").from_file(
        load_file(str(out / "vpt_all_0" / "adapter" / "adapter_model.safetensors")))
    seen = {}
    train = finetune_run._train

    def spy(model, *args, **kwargs):
        seen["start"] = {k: p.detach().clone() for k, p in get_record(model).stages[-1].refs.items()}
        seen["head"] = model.head.weight.shape
        return train(model, *args, **kwargs)

    monkeypatch.setattr(finetune_run, "_train", spy)
    assert _stage2(tmp / "s2", down, out) == 0
    assert seen["start"].keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(seen["start"][k], v), k
    assert seen["head"] == (2, 192)  # the downstream classes, not stage 1's three
    (rec,) = json.loads((tmp / "s2" / "results.json").read_text())
    assert rec["init_from"] == str(out)
    meta = json.loads((out / "pvp.json").read_text())
    assert rec["init_sha256"] == meta["adapter_sha256"]
    assert rec["hyperparameters"]["init"]["init_sha256"] == meta["adapter_sha256"]


@pytest.mark.parametrize("method, options, backbone, message", [
    ("vpt", ("num_tokens=3",), VIT, "num_tokens=3 (saved 2)"),
    ("vpt", ("num_tokens=2", "deep=true"), VIT, "deep=True (saved False)"),
    ("lora", ("r=2",), VIT, "'vpt'"),
    ("vpt", ("num_tokens=2",), VIT + ["--seed", "1"], "random-init seed"),
])
def test_a_mismatch_exits_2_naming_it(vpt_pvp, capsys, method, options, backbone, message):
    tmp, _, out, down = vpt_pvp
    rc = _stage2(tmp / "bad", down, out, method, options, backbone)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp / "bad" / "results.json").exists()


def test_upstream_overlapping_the_test_split_is_refused(vpt_pvp, capsys):
    tmp, up, out, down = vpt_pvp
    meta = json.loads((out / "pvp.json").read_text())
    used = load_file(str(out / meta["image_hashes"]))["index"].numpy()
    z = dict(np.load(down))
    x_up = np.load(up)["x_train"]
    z["x_test"][4] = x_up[used[7]]
    z["x_test"][2] = x_up[used[3]]
    np.savez(tmp / "leak.npz", **z)
    rc = _stage2(tmp / "leak", tmp / "leak.npz", out)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "overlaps the test split" in err and "2 of its 6 images" in err
    assert f"test index 2 = upstream train index {used[3]}" in err
    # an upstream image left out by data.limit is no leak
    unused = np.setdiff1d(np.arange(24), used)[0]
    z["x_test"][4] = z["x_test"][2] = x_up[unused]
    np.savez(tmp / "ok.npz", **z)
    assert _stage2(tmp / "ok", tmp / "ok.npz", out) == 0


def test_same_source_upstream_is_allowed_when_disjoint_from_test(vpt_pvp):
    tmp, up, out, _ = vpt_pvp
    assert _stage2(tmp / "same", up, out, extra=("--max-test", "3")) == 0


def test_lora_on_a_cnn_both_stages(tmp_path, monkeypatch):
    rn = ["--backbone", "resnet20_cifar"]
    _, out = _stage1(tmp_path, "lora", rn, ("r=2",), ("--set", "optim.lr=0.05"))
    saved = load_file(str(out / "lora_all_0" / "adapter" / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in saved.items())
    seen = {}
    train = finetune_run._train

    def spy(model, *args, **kwargs):
        seen.update({k: p.detach().clone() for k, p in get_record(model).stages[-1].refs.items()})
        return train(model, *args, **kwargs)

    monkeypatch.setattr(finetune_run, "_train", spy)
    down = make_npz(tmp_path / "down.npz", n_train=16, n_test=4, n_classes=2, hw=(16, 16), seed=1)
    assert _stage2(tmp_path / "s2", down, out, "lora", ("r=2", "seed=5"), rn) == 0
    want = fp.METHODS.get("lora").from_file(saved)  # peft's file keys -> the stage's names
    assert seen.keys() == want.keys()
    for k, v in want.items():
        assert torch.equal(seen[k], v), k


@pytest.mark.parametrize("extra, message", [
    (["--set", "data.limt=3"], "unknown key 'data.limt'"),
    (["--set", "data.limit=-1"], "data.limit must be an integer >= 0"),
    (["--method", "lora,vpt"], "give one method"),
])
def test_stage1_bad_input_exits_2(tmp_path, capsys, extra, message):
    up = make_npz(tmp_path / "up.npz", n_train=8, n_test=2, n_classes=2, hw=(8, 8))
    args = ["finetune", "pretrain-peft", *VIT, "--data", f"npz:{up}", "--method", "vpt",
            "--out", str(tmp_path / "o"), *FAST, *extra]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o" / "pvp.json").exists()
