"""T2I-SupCon part (a), ``loss.name: clip_supcon``: the joint SupCon term against a direct loop,
λ = 0 is plain CLIP exactly, a source without class labels is refused, and the shipped config."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.multimodal.clip_supcon import (ClipSupConObjective, SupConOptions, class_label_table,
                                          joint_supcon_loss)
from fmlab.multimodal.losses import clip_loss
from fmlab.multimodal.objective import ContrastiveObjective

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def _loop_supcon(img: torch.Tensor, txt: torch.Tensor, labels: list[int], tau: float) -> float:
    """The paper's L_SC written out: anchors and keys are the 2B pooled, normalised embeddings."""
    z = [v / v.norm() for v in [*img, *txt]]
    y = labels + labels
    total = 0.0
    for i in range(len(z)):
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(z)) if a != i)
        pos = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
    return total / len(z)


def test_joint_supcon_matches_the_loop_formula_on_random_tensors():
    torch.manual_seed(0)
    img, txt = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    labels = [0, 1, 0, 2, 1, 3]  # class 3 has only its own caption as a positive
    for tau in (0.1, 0.5):
        got = joint_supcon_loss(img, txt, torch.tensor(labels), tau)
        assert float(got) == pytest.approx(_loop_supcon(img, txt, labels, tau), rel=1e-5)
    with pytest.raises(DataError, match="labels"):
        joint_supcon_loss(img, txt, torch.tensor(labels[:5]), 0.1)


def _template_source(n: int = 6):
    from fmlab.multimodal.data import TemplateCaptions

    rng = np.random.default_rng(0)
    split = SimpleNamespace(labels=np.array([0, 1, 2, 0, 1, 2])[:n], name="train", origin="toy",
                            get_batch=lambda rows: rng.integers(0, 255, (len(rows), 32, 32, 3), dtype=np.uint8))
    return TemplateCaptions(split, ["zero", "one", "two"], ["a {}.", "the digit {}"])


def test_weight_zero_is_plain_clip_and_weight_adds_the_term(tiny_model):
    src = _template_source()
    tiny_model.eval()  # no dropout / batch statistics: both objectives see the same embeddings
    batch = src.get_batch(np.arange(6))
    plain, _ = ContrastiveObjective(tiny_model, src.captions, "clip")(batch)
    zero, logs0 = ClipSupConObjective(tiny_model, src, SupConOptions(weight=0.0))(batch)
    assert torch.equal(zero, plain) and "loss_supcon" not in logs0
    obj = ClipSupConObjective(tiny_model, src, SupConOptions(weight=0.7, tau=0.2))
    loss, logs = obj(batch)
    with torch.no_grad():
        img = tiny_model.encode_image(batch["images"])
        txt = tiny_model.encode_text([src.captions[i] for i in batch["caption_ids"].tolist()])
        want = clip_loss(img, txt, tiny_model.logit_scale_value()) + 0.7 * joint_supcon_loss(
            img, txt, batch["labels"], 0.2)
    torch.testing.assert_close(loss.detach(), want)
    assert float(logs["loss_supcon"]) > 0
    loss.backward()
    assert tiny_model.image_proj.weight.grad is not None


def test_a_source_without_class_labels_is_refused_by_name():
    from fmlab.multimodal.data import ImageTextPairs

    def pairs(labels):
        images = type("Images", (), {"labels": labels, "origin": "toy.jsonl", "name": "train",
                                     "__len__": lambda self: 3})()
        return ImageTextPairs(SimpleNamespace(images=images, captions=["a", "b", "c"],
                                              caption_image_index=np.arange(3)))

    assert class_label_table(pairs(np.array([4, 2, 4]))).tolist() == [4, 2, 4]
    assert class_label_table(_template_source()) is None
    with pytest.raises(DataError, match=r"clip_supcon needs class labels.*toy\.jsonl"):
        class_label_table(pairs(None))


def test_shipped_config_is_mnist_digits_plus_the_term(monkeypatch):
    from dataclasses import asdict

    from fmlab.experiments.clip import load_clip_config

    monkeypatch.setenv("FMLAB_DATA", "/nonexistent")  # only parsed; nothing is read
    base = load_clip_config(ROOT / "configs" / "clip" / "mnist_digits.yaml")
    cfg = load_clip_config(ROOT / "configs" / "clip" / "mnist_digits_supcon.yaml")
    assert cfg.loss.name == "clip_supcon" and cfg.loss.supcon.weight > 0
    a, b = asdict(base), asdict(cfg)
    a.pop("loss"), b.pop("loss")
    assert a == b
    with pytest.raises(ConfigError, match="loss.supcon.tau"):
        load_clip_config(ROOT / "configs" / "clip" / "mnist_digits_supcon.yaml", ["loss.supcon.tau=0"])
