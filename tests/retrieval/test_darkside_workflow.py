"""``fmlab retrieval``: the Dark Side workflow end to end on the shipped CIFAR-10 demo subset.

The translator is an identity stand-in (a day image is its own "night" version), so these tests
need neither FMLAB_DATA nor a trained translator; they check the wiring, the seeding and the
user errors, not the study's claim (docs/results/darkside/README.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.errors import ConfigError
from fmlab.experiments.darkside import (build_net, evaluate_net, load_darkside_config,
                                        load_domains, load_net, night_variants, run_darkside)
from fmlab.retrieval import ContrastiveLoss, DarkSideObjective

TINY = ["data.source=cifar10_demo", "data.train_limit=96", "data.translator_day=64",
        "night.scarce=16", "data.queries=40", "data.database=120", "model.weights=",
        "trainer.batch_size=32", "trainer.max_steps=3", "trainer.log_every=1",
        "trainer.progress=false", "trainer.tensorboard=false", "mining.anchors=8",
        "mining.negatives=2", "schedule.warmup_steps=0"]


def _cfg(*extra):
    return load_darkside_config("configs/retrieval/darkside_cifar10.yaml", [*TINY, *extra])


def test_splits_are_disjoint_and_seeded():
    cfg = _cfg()
    a, b = load_domains(cfg), load_domains(cfg)
    assert np.array_equal(a.night_query, b.night_query) and np.array_equal(a.train, b.train)
    assert a.scarce_night.shape == (16, 32, 32, 3) and a.night_query.mean() < a.query.mean()
    night = night_variants(_cfg("augment.positives=degraded"), a)
    assert night.shape == a.train.shape and night.mean() < a.train.mean()


def test_objective_uses_night_variants_and_trains(one_thread):
    cfg = _cfg()
    torch.manual_seed(0)
    net = build_net(cfg)
    obj = DarkSideObjective(net, ContrastiveLoss(0.7), anchors=8, negatives=2, pair_prob=1.0)
    batch = {"images": torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8),
             "labels": torch.arange(16) % 4}
    batch["night"] = batch["images"] // 4
    torch.manual_seed(1)
    loss, logs = obj(batch)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= logs["night_anchors"] <= 1.0
    assert net.pool.p.grad is not None
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_run_with_stand_in_translator_is_repeatable(tmp_path, one_thread):
    cfg = _cfg("augment.positives=translated", "augment.translator=unused")
    reps = [run_darkside(cfg, tmp_path / f"r{i}", translate=lambda x: x) for i in range(2)]
    assert reps[0]["mAP"] == reps[1]["mAP"]
    assert set(reps[0]["mAP"]) == {"day_to_day", "night_to_day", "night_to_night"}
    assert json.loads((tmp_path / "r0" / "report.json").read_text())["step"] == 3
    net, cfg2 = load_net(tmp_path / "r0")                   # what `fmlab retrieval eval --model` reads
    assert cfg2.augment.positives == "translated"
    assert evaluate_net(net, load_domains(cfg2)) == reps[0]["mAP"]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="augment.translator"):
        _cfg("augment.positives=translated")
    with pytest.raises(ConfigError, match="augment.positives"):
        _cfg("augment.positives=gan")
    with pytest.raises(ConfigError, match="mining.anchors"):
        _cfg("mining.anchors=100")


def test_cli_refuses_an_unknown_key_with_status_2(tmp_path, capsys):
    rc = main(["retrieval", "train", "--config", "configs/retrieval/darkside_cifar10.yaml",
               "--out", str(tmp_path / "r"), "--set", "mining.anchor=3"])
    assert rc == 2 and "mining.anchor" in capsys.readouterr().err
