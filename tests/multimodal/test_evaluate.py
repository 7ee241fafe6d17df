"""Zero-shot and retrieval metrics against direct formulas; end-to-end plumbing on open_clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.multimodal.evaluate import retrieval_metrics, zeroshot_metrics


def test_zeroshot_metrics_on_hand_built_scores():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 7, generator=g)
    labels = torch.randint(0, 7, (40,), generator=g)
    m = zeroshot_metrics(scores, labels)
    ranks = [(scores[i] > scores[i, labels[i]]).sum().item() for i in range(40)]
    assert m["acc1"] == pytest.approx(np.mean([r == 0 for r in ranks]))
    assert m["acc5"] == pytest.approx(np.mean([r < 5 for r in ranks]))
    pred = scores.argmax(1).numpy()
    y = labels.numpy()
    rec = [np.mean(pred[y == c] == c) for c in np.unique(y)]
    assert m["mean_per_class_recall"] == pytest.approx(np.mean(rec))


def test_zeroshot_metrics_known_values():
    scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1])
    m = zeroshot_metrics(scores, labels)
    assert m["acc1"] == pytest.approx(0.5)  # rows 0 and 2
    assert m["acc5"] == pytest.approx(1.0)  # only 3 classes: top-5 is everything
    assert m["mean_per_class_recall"] == pytest.approx((1.0 + 1 / 3) / 2)


def test_retrieval_metrics_any_caption_counts():
    # 3 images; captions 0,1 -> image 0, caption 2 -> image 1, captions 3,4 -> image 2
    idx = np.array([0, 0, 1, 2, 2])
    sim = torch.tensor([
        [0.1, 0.9, 0.5, 0.0, 0.2],   # image 0: best text is 1 (its own) -> hit@1
        [0.8, 0.1, 0.3, 0.0, 0.2],   # image 1: texts ranked 0,2,.. -> own (2) at rank 2
        [0.7, 0.6, 0.5, 0.4, 0.1],   # image 2: own texts 3,4 ranked 4th and 5th
    ])
    m = retrieval_metrics(sim, idx, ks=(1, 2, 4))
    assert m["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert m["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert m["image_to_text_R@4"] == pytest.approx(1.0)
    # text -> image: column-wise argmax ranks
    expected = {}
    for k in (1, 2, 4):
        hits = [int(idx[j] in torch.argsort(sim[:, j], descending=True)[:k].tolist()) for j in range(5)]
        expected[k] = np.mean(hits)
    for k in (1, 2, 4):
        assert m[f"text_to_image_R@{k}"] == pytest.approx(expected[k])


def test_retrieval_metrics_direct_formula_random():
    g = torch.Generator().manual_seed(1)
    n_img, n_txt = 9, 20
    idx = torch.randint(0, n_img, (n_txt,), generator=g).numpy()
    sim = torch.randn(n_img, n_txt, generator=g)
    m = retrieval_metrics(sim, idx, ks=(1, 5))
    for k in (1, 5):
        hits = []
        for i in range(n_img):
            own = set(np.flatnonzero(idx == i).tolist())
            if own:
                top = torch.argsort(sim[i], descending=True)[:k].tolist()
                hits.append(bool(own & set(top)))
        assert m[f"image_to_text_R@{k}"] == pytest.approx(np.mean(hits))


@pytest.fixture(scope="module")
def open_clip_model():
    pytest.importorskip("open_clip")
    from fmlab.multimodal.io import load_image_text_model

    torch.manual_seed(0)
    return load_image_text_model("open_clip:ViT-S-32")


@pytest.mark.slow
def test_open_clip_as_it_is(open_clip_model):
    import open_clip

    from fmlab.models.openclip import load_open_clip

    oc = load_open_clip("open_clip:ViT-S-32")
    tok = open_clip.get_tokenizer("ViT-S-32")(["a cat", "a photo of two dogs"])
    with torch.no_grad():
        torch.testing.assert_close(open_clip_model.encode_text(["a cat", "a photo of two dogs"]),
                                   oc.encode_text(tok))
    assert open_clip_model.feature_dim == 384
    assert open_clip_model.logit_scale.item() == pytest.approx(oc.logit_scale.item())


@pytest.mark.slow
def test_zeroshot_and_retrieval_end_to_end_on_open_clip(open_clip_model):
    from fmlab.data.sources import ArraySplit, ImageTextSplit
    from fmlab.multimodal.evaluate import retrieval_evaluate, zeroshot_evaluate

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (6, 24, 24, 3), dtype=np.uint8)
    split = ArraySplit(imgs, name="test", labels=np.array([0, 1, 2, 0, 1, 2]),
                       class_names=["cat", "dog", "car"], content_hash="h", origin="toy")
    zs = zeroshot_evaluate(open_clip_model, split, split.class_names, ["a photo of a {}.", "a {}"],
                           batch_size=4)
    assert 0 <= zs["acc1"] <= zs["acc5"] == 1.0 and zs["n_classes"] == 3
    sub = zeroshot_evaluate(open_clip_model, split, split.class_names, ["a {}"], classes=[2, 0])
    assert sub["n_images"] == 4 and sub["n_classes"] == 2
    caps = ["a cat", "a small cat", "a dog", "a car", "red", "blue", "green"]
    it = ImageTextSplit(split, caps, np.array([0, 0, 1, 2, 3, 4, 5]))
    r = retrieval_evaluate(open_clip_model, it, batch_size=4, ks=(1, 5, 10))
    assert r["text_to_image_R@10"] == 1.0 and r["image_to_text_R@10"] == 1.0
    assert 0 <= r["image_to_text_R@1"] <= r["image_to_text_R@5"]
    assert r["chance_text_to_image_R@1"] == pytest.approx(1 / 6)
