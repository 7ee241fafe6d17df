"""``fmlab pretrain`` behaviour: resume, config errors, held-out data, exports that
``fmlab adapt`` evaluates, the MP3 export and the distillation teacher's view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.errors import ConfigError
from fmlab.experiments.pretrain import (
    PretrainDataConfig,
    build_pretrain,
    load_pretrain_config,
    load_pretrain_data,
)
from fmlab.models import create_backbone
from fmlab.models.vit import VisionTransformer

from .conftest import CONFIG_DIR, resume_after_kill, smoke_args


def _config(name: str):
    return CONFIG_DIR / f"{name}.yaml"


@pytest.mark.parametrize("name", ["simclr_cifar10", "moco_mnist"])
def test_resume_reaches_the_straight_run_weights(name, npz_sources, tmp_path, capsys):
    """A run killed after its step-2 checkpoint and resumed ends where a straight run ends
    (MoCo: queue, momentum encoder and cosine momentum are part of the state)."""
    src = npz_sources["mnist" if "mnist" in name else "cifar10"]
    straight = tmp_path / "straight"
    args = smoke_args(_config(name), src, straight, "trainer.checkpoint_every=2",
                      "trainer.log_every=1", steps=4)
    assert main(args) == 0
    a, b = resume_after_kill(straight, tmp_path, capsys)
    crashed = tmp_path / "crashed"
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    steps = [json.loads(line)["step"] for line in
             (crashed / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]  # the replayed steps replaced, not duplicated


def test_misspelled_key_exits_2_naming_it(npz_sources, tmp_path, capsys):
    config = _config("simclr_cifar10")
    assert main(smoke_args(config, npz_sources["cifar10"], tmp_path / "a",
                           "trainer.max_stpes=3")) == 2
    err = capsys.readouterr().err
    assert "trainer.max_stpes" in err and "did you mean 'trainer.max_steps'" in err
    assert len(err.strip().splitlines()) == 1
    # objective options are typed from the objective's constructor
    assert main(smoke_args(config, npz_sources["cifar10"], tmp_path / "b",
                           "objective.temprature=0.5")) == 2
    assert "did you mean 'objective.temperature'" in capsys.readouterr().err
    assert main(smoke_args(config, npz_sources["cifar10"], tmp_path / "c",
                           "objective.temperature=hot")) == 2
    assert "objective.temperature: expected a number" in capsys.readouterr().err
    assert main(smoke_args(config, npz_sources["cifar10"], tmp_path / "d",
                           "objective.name=simclrr")) == 2
    assert "did you mean 'simclr'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_cli_refuses_ambiguous_runs(npz_sources, tmp_path, capsys):
    config = _config("supervised_cifar10")
    out = tmp_path / "run"
    assert main(smoke_args(config, npz_sources["cifar10"], out)) == 0
    capsys.readouterr()
    assert main(smoke_args(config, npz_sources["cifar10"], out)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(out), "--config", str(config)]) == 2
    assert "drop --config" in capsys.readouterr().err
    # the policy is fmlab.engine.resolve_run_dir's: a missing directory is named as such, a
    # directory without config.yaml as before
    assert main(["pretrain", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", "--resume", str(tmp_path / "empty")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_warmup_longer_than_a_smoke_run_is_shortened(npz_sources, tmp_path, capsys):
    """Probe observation (d): pretrain shortened such a warm-up while ``clip train`` refused it.
    Both now shorten it in the engine (a smoke run needs only ``trainer.max_steps``), warn naming
    the key, and record the value used in the run's config.yaml."""
    out = tmp_path / "run"
    assert load_pretrain_config(_config("mae_cifar10")).schedule.warmup_steps == 40
    args = smoke_args(_config("mae_cifar10"), npz_sources["cifar10"], out, "schedule.warmup_steps=40")
    assert main(args) == 0
    assert "schedule.warmup_steps: the warm-up (40 steps) does not fit a run of 2 steps; using 0" \
        in capsys.readouterr().err
    assert yaml.safe_load((out / "config.yaml").read_text())["schedule"]["warmup_steps"] == 0


def test_non_utf8_config_exits_2_naming_the_file(tmp_path, capsys):
    """Probe F6: a Latin-1 YAML was a UnicodeDecodeError traceback."""
    bad = tmp_path / "nonutf8.yaml"
    bad.write_bytes(b"objective:\n  name: simclr\nname: caf\xe9\n")
    assert main(["pretrain", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmlab: error: ") and str(bad) in err and "not UTF-8 text" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_training_data_and_monitor_queries_come_from_train(npz_sources):
    """Seeded order (the CIFAR-10 file is sorted by class): the first ``limit`` images train,
    the last ``val_size`` are the monitor's queries; ``order_seed=null`` keeps file order."""
    z = np.load(npz_sources["cifar10"])
    src = f"npz:{npz_sources['cifar10']}"
    order = np.random.default_rng(5).permutation(48)
    data = load_pretrain_data(PretrainDataConfig(source=src, limit=16, val_size=8, order_seed=5))
    assert torch.equal(data.train.tensors["images"], torch.from_numpy(z["x_train"][order[:16]]))
    assert torch.equal(data.train.tensors["labels"],
                       torch.from_numpy(z["y_train"][order[:16]]).long())
    assert torch.equal(data.train.tensors["index"], torch.arange(16))
    assert torch.equal(data.val.tensors["images"], torch.from_numpy(z["x_train"][order[-8:]]))
    assert not set(order[:16]) & set(order[-8:])
    assert data.num_classes == 4
    plain = load_pretrain_data(PretrainDataConfig(source=src, limit=16, val_size=8,
                                                  order_seed=None))
    assert torch.equal(plain.train.tensors["images"], torch.from_numpy(z["x_train"][:16]))
    assert torch.equal(plain.val.tensors["images"], torch.from_numpy(z["x_train"][-8:]))
    with pytest.raises(ConfigError, match="data.val_size: 47 leaves 1 of the 48 images"):
        load_pretrain_data(PretrainDataConfig(source=src, val_size=47))


def test_fmlab_adapt_evaluates_exported_encoders(npz_sources, tmp_path, capsys):
    """The MP3 ViT (trained without position embeddings) and a ResNet, by name and weights."""
    src = npz_sources["cifar10"]
    for name in ("mp3_cifar10", "supervised_cifar10"):
        run = tmp_path / name
        assert main(smoke_args(_config(name), src, run)) == 0
        meta = json.loads((run / "encoder.json").read_text())
        assert meta["kwargs"] == {}  # loads under the plain registry name
        out = tmp_path / f"adapt_{name}"
        assert main(["adapt", "--backbone", meta["architecture"], "--weights",
                     str(run / "encoder.safetensors"), "--data", f"npz:{src}", "--methods",
                     "ncm,knn", "--shots", "2", "--seeds", "1", "--out", str(out),
                     "--no-db"]) == 0
        records = json.loads((out / "results.json").read_text())
        assert {r["method"] for r in records} == {"ncm", "knn"}
        assert all(r["protocol"]["weights_sha256"] == meta["weights_sha256"] for r in records)
        capsys.readouterr()


def test_mp3_export_gives_the_trained_features(npz_sources, tmp_path):
    """Zero position embeddings: the default ViT computes exactly the pos_embed=False ViT."""
    run = tmp_path / "mp3"
    assert main(smoke_args(_config("mp3_mnist"), npz_sources["mnist"], run)) == 0
    ckpt = load_file(str(sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]))
    trained = VisionTransformer(pos_embed=False)
    trained.load_state_dict({k[8:]: v for k, v in ckpt.items() if k.startswith("encoder.")})
    exported = create_backbone("vit_tiny_cifar", weights=run / "encoder.safetensors")
    assert torch.count_nonzero(exported.trunk.pos_embed) == 0
    images = torch.from_numpy(np.load(npz_sources["mnist"])["x_test"][:6])
    x = exported.preprocess(images)
    torch.testing.assert_close(exported.trunk.eval()(x), trained.eval()(x), rtol=0, atol=1e-6)


def test_distill_teacher_sees_the_students_crop_in_its_own_preprocessing(npz_sources):
    """MNIST: RGB/ImageNet-normalised student views, 1-channel [0, 1] LeNet-5 teacher views."""
    cfg = load_pretrain_config(_config("distill_mnist"), [
        f"data.source=npz:{npz_sources['mnist']}", "data.val_size=8",
        "objective.teacher_weights=null", "augment.padding=0"])
    data = load_pretrain_data(cfg.data)
    with pytest.warns(UserWarning, match="randomly initialised teacher"):
        obj, transform, bb = build_pretrain(cfg, data)
    teacher_spec = obj.teacher.preprocess
    assert teacher_spec.channels == 1 and bb.preprocess.channels == 3
    batch = data.train.get_batch(np.arange(12))
    out = transform(batch, torch.Generator().manual_seed(0))
    assert out["images"].shape == (12, 3, 32, 32)
    plain = teacher_spec(batch["images"])  # padding 0: the crop is the whole (resized) image
    flipped = plain.flip(-1)
    for i in range(12):  # each sample is either flipped or not, for both networks alike
        t = out["teacher_images"][i]
        assert (torch.allclose(t, plain[i], atol=1e-5) or torch.allclose(t, flipped[i], atol=1e-5))
    student = bb.preprocess(batch["images"])
    same_flip = [torch.allclose(out["teacher_images"][i], plain[i], atol=1e-5) for i in range(12)]
    for i in range(12):
        ref = student[i] if same_flip[i] else student[i].flip(-1)
        torch.testing.assert_close(out["images"][i], ref, rtol=0, atol=1e-5)
    assert 0 < sum(same_flip) < 12


@pytest.mark.parametrize("arch, kwargs", [
    ("resnet_cifar", "{depth: 8, width: 8}"),
    pytest.param("timm:vit_tiny_patch16_224", "{img_size: 32, patch_size: 8}",
                 marks=pytest.mark.slow),
])
def test_architecture_kwargs_are_recorded_for_loading(arch, kwargs, npz_sources, tmp_path):
    run = tmp_path / "run"
    assert main(smoke_args(_config("simclr_cifar10"), npz_sources["cifar10"], run,
                           f"model.arch={arch}", f"model.kwargs={kwargs}")) == 0
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["load_check"] == "ok" and meta["architecture"] == arch
    expected = yaml.safe_load(kwargs) | ({"num_classes": 0} if arch.startswith("timm:") else {})
    assert meta["kwargs"] == expected
    bb = create_backbone(arch, weights=run / "encoder.safetensors", **meta["kwargs"])
    exported = load_file(str(run / "encoder.safetensors"))
    assert all(torch.equal(bb.trunk.state_dict()[k], v) for k, v in exported.items())


def test_teacher_weights_need_their_variable(npz_sources, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMLAB_DATA", str(tmp_path))  # so smoke_args keeps the config's teacher
    args = smoke_args(_config("distill_cifar10"), npz_sources["cifar10"], tmp_path / "run")
    monkeypatch.delenv("FMLAB_DATA")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "objective.teacher_weights" in err and "FMLAB_DATA" in err and "not set" in err
