"""``data.label_noise`` in ``fmlab pretrain``: noisy training labels, clean monitor queries,
checked values, recorded in the run's config, and resumable bit-identically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from fmlab.cli.main import main
from fmlab.data import open_source
from fmlab.experiments.pretrain import PretrainDataConfig, load_pretrain_data
from tests.conftest import make_npz

from .conftest import CONFIG_DIR, resume_after_kill, smoke_args

CONFIG = CONFIG_DIR / "supervised_noise_cifar10.yaml"


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory):
    return make_npz(tmp_path_factory.mktemp("noise") / "n.npz", n_train=2000, n_test=4,
                    n_classes=4, hw=(4, 4))


def test_train_labels_are_noisy_and_queries_clean(big_npz):
    clean = open_source(f"npz:{big_npz}").split("train").labels
    cfg = PretrainDataConfig(source=f"npz:{big_npz}", val_size=200, label_noise=0.3,
                             noise_seed=5)
    data = load_pretrain_data(cfg)
    order = np.random.default_rng(cfg.order_seed).permutation(len(clean))
    train_clean = clean[order[:1800]]
    flipped = data.train.labels != train_clean
    assert abs(flipped.mean() - 0.3) < 0.05
    np.testing.assert_array_equal(data.val.labels, clean[order[1800:]])  # queries stay clean
    again = load_pretrain_data(cfg)
    np.testing.assert_array_equal(again.train.labels, data.train.labels)  # seeded
    # an image's noisy label does not depend on data.limit
    limited = load_pretrain_data(PretrainDataConfig(source=f"npz:{big_npz}", val_size=200,
                                                    label_noise=0.3, noise_seed=5, limit=100))
    np.testing.assert_array_equal(limited.train.labels, data.train.labels[:100])
    plain = load_pretrain_data(PretrainDataConfig(source=f"npz:{big_npz}", val_size=200))
    np.testing.assert_array_equal(plain.train.labels, train_clean)  # p = 0: untouched


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_invalid_p_exits_2_naming_the_key(value, npz_sources, tmp_path, capsys):
    args = smoke_args(CONFIG, npz_sources["cifar10"], tmp_path / "o", f"data.label_noise={value}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data.label_noise" in err and "Traceback" not in err


def test_recorded_in_the_config_snapshot_and_resumable(npz_sources, tmp_path, capsys):
    straight = tmp_path / "straight"
    args = smoke_args(CONFIG, npz_sources["cifar10"], straight, "data.label_noise=0.2",
                      "data.noise_seed=3", "trainer.checkpoint_every=2", "trainer.log_every=1",
                      steps=4)
    assert main(args) == 0
    saved = yaml.safe_load((straight / "config.yaml").read_text())
    assert saved["data"]["label_noise"] == 0.2 and saved["data"]["noise_seed"] == 3
    a, b = resume_after_kill(straight, tmp_path, capsys)
    for k in a:
        assert torch.equal(a[k], b[k]), k
