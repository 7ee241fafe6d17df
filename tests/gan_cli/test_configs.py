"""The shipped ``configs/gan/*.yaml``: they load, say what the issue asks, and run (with data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmlab.cli.main import main
from fmlab.engine.logger import read_metrics
from fmlab.experiments.gan_config import load_gan_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "gan"
EXPECTED = ["cifar10_sngan_hinge", "mnist_dcgan_ac", "mnist_dcgan_adaptivemix",
            "mnist_dcgan_adc", "mnist_dcgan_diffaug10", "mnist_dcgan_hinge",
            "mnist_dcgan_hinge_diffaug", "mnist_dcgan_nodiffaug10", "mnist_style"]
# caption-conditioned (issue 23; docs/results/textgan): evaluated on 2,000 held-out captions
CAPTION = ["mnist_cgan_nomismatch", "mnist_galip", "mnist_galip_scratchD", "mnist_gancls",
           "mnist_t2i_supcon"]
# their own experiments behind `gan train` (config family; tests/gan_cli/test_video_story_cli.py)
FAMILIES = {"video_tganc": "tganc", "canvas_story": "story"}


def _load(name: str, *overrides: str):
    return load_gan_config(CONFIG_DIR / f"{name}.yaml", list(overrides))


def test_every_experiment_has_a_valid_config():
    # unlearn_*.yaml are `gan unlearn` settings (tests/gan_cli/test_unlearn_config.py),
    # genda_*.yaml `gan adapt` settings (tests/test_genda.py)
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")
                  if not p.stem.startswith(("unlearn_", "genda_"))) == sorted(EXPECTED + CAPTION
                                                                             + list(FAMILIES))
    from fmlab.experiments.story_config import load_story_config
    from fmlab.experiments.tganc_config import load_tganc_config

    for name, family in FAMILIES.items():
        load = load_tganc_config if family == "tganc" else load_story_config
        cfg = load(CONFIG_DIR / f"{name}.yaml", ["trainer.max_steps=7", "data.limit=100"])
        assert (cfg.family, cfg.trainer.max_steps, cfg.data.limit) == (family, 7, 100)
    for name in CAPTION:
        cfg = _load(name, "trainer.max_steps=7", "data.limit=100")
        assert (cfg.data.conditioning, cfg.eval.n, cfg.trainer.max_steps) == ("caption", 2000, 7)
    for name in EXPECTED:
        cfg = _load(name, "trainer.max_steps=7", "trainer.checkpoint_every=3", "data.limit=100")
        assert cfg.name == name
        assert (cfg.trainer.max_steps, cfg.trainer.checkpoint_every, cfg.data.limit) == (7, 3, 100)
        # mnist_style (GenDA's source G) evaluates on 5,000 samples, as in its results
        assert cfg.ema.enabled and cfg.eval.n == (5000 if name == "mnist_style" else 10000)


def test_configs_encode_the_experiments():
    hinge = _load("mnist_dcgan_hinge")
    assert (hinge.gan.loss, hinge.data.conditional, hinge.eval.features) == ("hinge", False,
                                                                          "lenet5_mnist")
    assert hinge.eval.ref == "mnist:test"
    # the recommended unconditional config is the baseline plus DiffAugment, nothing else
    hinge_da = _load("mnist_dcgan_hinge_diffaug")
    assert hinge_da.gan.diffaug == "color,translation,cutout" and hinge.gan.diffaug == ""
    hinge_da.gan.diffaug, hinge_da.name = "", hinge.name
    assert hinge_da == hinge
    for name, cond in (("mnist_dcgan_ac", "ac"), ("mnist_dcgan_adc", "adc")):
        cfg = _load(name)
        assert cfg.data.conditional and cfg.model.cond == cond
        assert {"ifid", "iprdc", "class_recall"} <= set(cfg.eval.metrics)
    assert _load("mnist_dcgan_adaptivemix").gan.adaptivemix
    aug, noaug = _load("mnist_dcgan_diffaug10"), _load("mnist_dcgan_nodiffaug10")
    assert aug.data.fraction == noaug.data.fraction == 0.1
    assert aug.gan.diffaug == "color,translation,cutout" and noaug.gan.diffaug == ""
    # the pair differs in the augmentation only (and the name)
    aug.gan.diffaug, aug.name = "", noaug.name
    assert aug == noaug
    cifar = _load("cifar10_sngan_hinge")
    assert (cifar.model.generator, cifar.data.channels, cifar.eval.features) == (
        "sngan", 3, "resnet56_cifar")


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_every_config_runs_a_few_steps(name, data_root, tmp_path):
    run = tmp_path / name
    # eval.n=100: 10 samples per class, as intra-class PRDC (k = 5) needs more than 5
    sets = ["trainer.max_steps=3", "trainer.batch_size=8", "data.limit=64", "eval.n=100",
            "eval.ref_n=200", "samples.n=10", "trainer.progress=false"]
    args = ["gan", "train", "--config", str(CONFIG_DIR / f"{name}.yaml"), "--out", str(run)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    final = [r for r in read_metrics(run) if "eval" in r][-1]
    assert final["step"] == 3 and final["eval"]["fid"] > 0
    assert (run / "generator.safetensors").is_file()
