"""`fmlab adapt --clip-model`: joint-space features, the model's own zero-shot weights, and CoOp
beside the other methods on the same split files."""

from __future__ import annotations

import json

import numpy as np

import pytest
import torch

from fmlab.cli.main import main
from tests.conftest import make_npz


def test_joint_image_backbone_gives_encode_image(tiny_model):
    from fmlab.multimodal.io import joint_image_backbone

    bb = joint_image_backbone(tiny_model)
    x = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode(x), tiny_model.encode_image(x))
    assert bb.feature_dim == tiny_model.feature_dim == 16
    assert bb.protocol()["backbone"].endswith(":image_embed")


def test_adapt_with_clip_model_runs_coop_and_zeroshot(saved_clip, tmp_path):
    npz = make_npz(tmp_path / "a.npz", n_train=40, n_test=20, n_classes=4, hw=(16, 16))
    out = tmp_path / "run"
    rc = main(["adapt", "--clip-model", str(saved_clip), "--data", f"npz:{npz}", "--methods",
               "ncm,zeroshot,coop,cones", "--shots", "2", "--seeds", "1", "--out", str(out), "--no-db"])
    assert rc == 0
    recs = json.loads((out / "results.json").read_text())
    assert sorted(r["method"] for r in recs) == ["cones", "coop", "ncm", "zeroshot"]
    coop = next(r for r in recs if r["method"] == "coop")
    assert coop["hyperparameters"]["n_ctx"] == 16 and 0.0 <= coop["accuracy"] <= 1.0
    # every method scored on the same split file
    assert len({r["split_sha256"] for r in recs}) == 1
    proto = coop["protocol"]
    assert proto["clip_model"] == str(saved_clip)
    assert proto["backbone"].endswith(":image_embed") and proto["weights_sha256"]
    assert "coop" in (out / "summary.md").read_text()


@pytest.mark.parametrize("argv, needle", [
    (["--backbone", "resnet20_cifar", "--methods", "coop"], "--clip-model"),
    (["--methods", "ncm"], "--backbone is required"),
])
def test_coop_without_an_image_text_model_is_a_clear_error(argv, needle, tmp_path, capsys):
    npz = make_npz(tmp_path / "a.npz")
    rc = main(["adapt", "--data", f"npz:{npz}", "--shots", "1", "--seeds", "1", "--out",
               str(tmp_path / "o"), "--no-db", *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_coop_factory_needs_the_model():
    from fmlab.adapt.protocol import create_method
    from fmlab.errors import ConfigError

    with pytest.raises(ConfigError, match="clip-model"):
        create_method("coop")


@pytest.mark.parametrize("method", ["coop", "cones"])
def test_coop_in_the_sweep_never_depends_on_the_test_set(tiny_model, method):
    """Two sweeps with unrelated test sets fit the same prompts (same scores on a probe)."""
    from fmlab.adapt.protocol import run_sweep

    g = torch.Generator().manual_seed(0)
    names = ["cat", "dog", "car", "ship"]
    centres = torch.randn(4, 16, generator=g)
    ytr = np.repeat(np.arange(4), 10)
    Xtr = (centres[ytr] + 0.3 * torch.randn(40, 16, generator=g)).numpy()
    probe = torch.randn(6, 16, generator=g).numpy()
    seen = []

    def sweep(Xte, yte):
        out = {}
        params = {"model": tiny_model, "class_names": names, "epochs": 3}
        run_sweep(Xtr, ytr, Xte, yte, [method], shots=(2,), seeds=(1,), class_names=names,
                  method_params={method: {**params, **({"n_ctx": 2} if method == "coop" else {})}},
                  on_fit=lambda m, k, s, est: out.update(p=est.decision_function(probe)))
        seen.append(out["p"])

    sweep(torch.randn(12, 16, generator=g).numpy(), np.arange(12) % 4)
    sweep(torch.randn(9, 16, generator=g).numpy() * 5, (np.arange(9) + 1) % 4)
    np.testing.assert_array_equal(seen[0], seen[1])


def test_joint_backbone_hash_tells_random_inits_apart(tiny_model, tiny_text_tower_factory):
    """No weights file: the cache key must still differ between two random inits."""
    from fmlab.models import create_backbone
    from fmlab.multimodal.io import joint_image_backbone
    from fmlab.multimodal.model import ImageTextModel

    torch.manual_seed(1)
    other = ImageTextModel(create_backbone("resnet_cifar", depth=8, width=8),
                           tiny_text_tower_factory(), embed_dim=16)
    a, b = joint_image_backbone(tiny_model), joint_image_backbone(other)
    assert a.weights_sha256 and a.weights_sha256 != b.weights_sha256
    assert a.weights_sha256 == joint_image_backbone(tiny_model).weights_sha256
