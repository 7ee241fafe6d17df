"""save_adapter / load_adapter: identical outputs after training, for every method; clear errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError, DataError, FmlabError, ModelError
from fmlab.utils.io import sha256_file

from .nets import TinyAttnNet, TinyConvNet, make, tiny_timm_vit, train_steps

CASES = [
    ("full", TinyConvNet, {}),
    ("linear", TinyConvNet, {}),
    ("bitfit", TinyConvNet, {"head": "head"}),
    ("lora", TinyConvNet, {"r": 2, "alpha": 4, "head": "head"}),
    ("lora", TinyAttnNet, {"r": 2, "dropout": 0.1}),
    ("svfit", TinyConvNet, {"head": "head"}),
    ("svfit", TinyAttnNet, {"rank": 3}),
    ("pela", TinyConvNet, {"compression_ratio": 1.5}),
    ("pela", TinyAttnNet, {"targets": ["patch", "fc"]}),
    ("vpt", "vit", {"num_tokens": 3, "deep": True, "head": "head"}),
    ("vpt", "vit", {"num_tokens": 2}),
]


def _base(cls):
    return tiny_timm_vit() if cls == "vit" else make(cls)


def _input(cls):
    g = torch.Generator().manual_seed(2)
    return torch.randn(4, 3, 32, 32, generator=g) if cls == "vit" else torch.randn(
        6, 3, 8, 8, generator=g)


@pytest.mark.parametrize(("method", "cls", "kw"), CASES,
                         ids=[f"{m}-{c if isinstance(c, str) else c.__name__}-{i}"
                              for i, (m, c, _) in enumerate(CASES)])
def test_round_trip_after_training_gives_identical_outputs(tmp_path, method, cls, kw):
    m = fp.apply(_base(cls), method, **kw)
    x = _input(cls)
    train_steps(m, x, steps=3)  # in train mode: BN statistics move too
    with torch.no_grad():
        want = m(x)
        assert not torch.allclose(want, _base(cls)(x), atol=1e-5)  # training changed something
    fp.save_adapter(m, tmp_path / "ad")
    loaded = fp.load_adapter(_base(cls), tmp_path / "ad", method=method)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-6)
    assert fp.trainable_parameters(loaded) == fp.trainable_parameters(m)
    assert fp.adapter_stages(loaded) == fp.adapter_stages(m)
    train_steps(loaded, x, steps=1)  # and it can keep training


def test_files_on_disk(tmp_path):
    m = fp.apply(make(), "lora", r=2, head="head")
    fp.save_adapter(m, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors",
                     "fmlab_adapter.json", "fmlab_extra.safetensors"]
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.fc.lora_A.weight" in keys and len(keys) == 6
    extra = set(load_file(tmp_path / "fmlab_extra.safetensors"))
    assert {"head.weight", "head.bias", "bn1.running_mean", "bn1.running_var"} <= extra
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 2
    meta = json.loads((tmp_path / "fmlab_adapter.json").read_text())
    assert meta["stages"][0]["targets"] == ["conv1", "conv2", "fc"]


def test_svfit_adapter_is_tiny(tmp_path):
    m = fp.apply(make(), "svfit", rank=2)
    fp.save_adapter(m, tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(t.numel() for t in tensors.values()) == 6


def test_stacked_pela_then_lora_round_trip(tmp_path):
    teacher = make()
    m = fp.apply(copy.deepcopy(teacher), "pela", targets=["conv2", "fc"])
    x = torch.randn(6, 3, 8, 8)
    fp.pela_distill(m, teacher, [x], steps=3, lr=1e-2)
    fp.apply(m, "lora", targets=["conv2.1", "fc.0"], r=2, init=False, head="head")
    train_steps(m, x)
    with torch.no_grad():
        want = m(x)
    fp.save_adapter(m, tmp_path)
    assert (tmp_path / "stage0_pela.safetensors").is_file()
    loaded = fp.load_adapter(make(), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-6)
    assert [s["method"] for s in fp.adapter_stages(loaded)] == ["pela", "lora"]


def test_resnet20_backbone_round_trip(tmp_path):
    from fmlab.models import create_backbone

    torch.manual_seed(0)  # random init: the fresh base must be the same draw
    bb = fp.apply(create_backbone("resnet20_cifar"), "svfit", targets="trunk.layer3.*conv*",
                  head="head")
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    train_steps(bb, x, steps=2)
    with torch.no_grad():
        want = bb(x)
    fp.save_adapter(bb, tmp_path)
    torch.manual_seed(0)
    loaded = fp.load_adapter(create_backbone("resnet20_cifar"), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-6)


# -- errors -------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    m = fp.apply(make(), "lora", r=2)
    train_steps(m, torch.randn(4, 3, 8, 8))
    return fp.save_adapter(m, tmp_path / "ad")


def _rehash(d):
    meta = json.loads((d / "fmlab_adapter.json").read_text())
    meta["files"] = {f: sha256_file(d / f) for f in meta["files"]}
    (d / "fmlab_adapter.json").write_text(json.dumps(meta))


def test_missing_directory_and_meta(tmp_path, saved):
    with pytest.raises(DataError, match="does not exist"):
        fp.load_adapter(make(), tmp_path / "nope")
    (saved / "fmlab_adapter.json").unlink()
    with pytest.raises(DataError, match="fmlab_adapter.json is missing"):
        fp.load_adapter(make(), saved)


def test_missing_or_tampered_file(saved):
    (saved / "adapter_model.safetensors").rename(saved / "moved")
    with pytest.raises(DataError, match="adapter_model.safetensors is missing"):
        fp.load_adapter(make(), saved)
    (saved / "moved").rename(saved / "adapter_model.safetensors")
    (saved / "adapter_config.json").write_text("{}")
    with pytest.raises(DataError, match="adapter_config.json does not match the sha256"):
        fp.load_adapter(make(), saved)


def test_wrong_or_unknown_method(saved):
    with pytest.raises(ConfigError, match="method is 'lora', expected 'svfit'"):
        fp.load_adapter(make(), saved, method="svfit")
    meta = json.loads((saved / "fmlab_adapter.json").read_text())
    meta["stages"][0]["method"] = "dora"
    (saved / "fmlab_adapter.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.method: unknown peft method 'dora'"):
        fp.load_adapter(make(), saved)


def test_peft_config_disagreeing_with_fmlab_json(saved):
    cfg = json.loads((saved / "adapter_config.json").read_text())
    cfg["r"] = 4
    (saved / "adapter_config.json").write_text(json.dumps(cfg))
    _rehash(saved)
    with pytest.raises(DataError, match="adapter_config.json: r is 4"):
        fp.load_adapter(make(), saved)


def test_missing_and_unexpected_keys(saved):
    path = saved / "adapter_model.safetensors"
    tensors = load_file(path)
    key = "base_model.model.fc.lora_B.weight"
    tensors.pop(key)
    save_file(tensors, path)
    _rehash(saved)
    with pytest.raises(DataError, match=r"adapter_model.safetensors: tensor 'fc.lora_B.default"):
        fp.load_adapter(make(), saved)
    tensors = load_file(path) | {key: torch.zeros(16, 2), "base_model.model.x.lora_A.weight":
                                 torch.zeros(1)}
    save_file(tensors, path)
    _rehash(saved)
    with pytest.raises(DataError, match="unexpected tensor 'x.lora_A.default.weight'"):
        fp.load_adapter(make(), saved)


def test_shape_mismatch_names_file_and_key(saved):
    other = make()
    other.fc = nn.Linear(8, 20)
    other.head = nn.Linear(20, 3)
    with pytest.raises(ModelError, match=r"adapter_model.safetensors: tensor 'fc.lora_B.default"
                                         r".weight' has shape \[16, 2\], the model expects \[20, 2\]"):
        fp.load_adapter(other, saved)


def test_base_without_a_target_module(saved):
    other = make()
    del other.conv2
    with pytest.raises(ModelError, match="module 'conv2' of stages\\[0\\] is not in the base"):
        fp.load_adapter(other, saved)


def test_svfit_refuses_a_different_base(tmp_path):
    fp.save_adapter(fp.apply(make(seed=0), "svfit"), tmp_path)
    with pytest.raises(ModelError, match="base weight conv1.weight differs"):
        fp.load_adapter(make(seed=1), tmp_path)


def test_save_and_load_preconditions(tmp_path, saved):
    with pytest.raises(ConfigError, match="no fmlab.peft adapter"):
        fp.save_adapter(make(), tmp_path / "x")
    with pytest.raises(ConfigError, match="already has fmlab.peft adapters"):
        fp.load_adapter(fp.apply(make(), "bitfit"), saved)
    assert issubclass(DataError, FmlabError)
