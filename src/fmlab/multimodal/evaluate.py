"""Zero-shot classification and image-text retrieval, the CLIP_benchmark protocol.

Metrics are pure functions of a similarity/score matrix and labels, so tests can check them on
hand-built matrices; the ``*_evaluate`` functions add the embedding passes.

* Zero-shot: class weights = mean of L2-normalised prompt embeddings over templates,
  renormalised (:func:`fmlab.adapt.build_zeroshot_weights`); report acc@1, acc@5 and mean
  per-class recall.
* Retrieval: cosine similarities of normalised embeddings; image→text recall@k counts an image
  as a hit when *any* of its captions is among its top k texts; text→image recall@k counts a
  caption as a hit when its image is among its top k images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.errors import DataError


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``min(k, C)`` highest scores."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return float((top == labels.reshape(-1, 1)).any(1).float().mean())


def mean_per_class_recall(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pred = scores.argmax(1)
    recalls = [float((pred[labels == c] == c).float().mean()) for c in labels.unique()]
    return float(np.mean(recalls))


def zeroshot_metrics(scores: torch.Tensor, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Top-1, top-5 accuracy and mean per-class recall of class scores.

    Args:
        scores: ``(N, C)`` image-to-class similarities.
        labels: ``(N,)`` true classes.

    Returns:
        ``{"acc1", "acc5", "mean_per_class_recall"}``.

    Examples:
        >>> m = zeroshot_metrics(torch.eye(3), [0, 1, 2])
        >>> m["acc1"], m["mean_per_class_recall"]
        (1.0, 1.0)
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise DataError(f"scores {tuple(scores.shape)} do not match {labels.shape[0]} labels")
    return {"acc1": topk_accuracy(scores, labels, 1), "acc5": topk_accuracy(scores, labels, 5),
            "mean_per_class_recall": mean_per_class_recall(scores, labels)}


def retrieval_metrics(sim: torch.Tensor, caption_image_index: torch.Tensor | np.ndarray,
                      ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``sim`` (n_images, n_texts); ``caption_image_index[j]`` is the image of text ``j``."""
    idx = torch.as_tensor(caption_image_index, dtype=torch.int64)
    n_img, n_txt = sim.shape
    if idx.shape != (n_txt,):
        raise DataError(f"caption_image_index has shape {tuple(idx.shape)}, expected ({n_txt},)")
    positive = idx.reshape(1, -1) == torch.arange(n_img).reshape(-1, 1)  # (n_img, n_txt)
    has_caption = positive.any(1)
    out: dict[str, float] = {}
    for k in ks:
        top_t = sim.topk(min(k, n_txt), dim=1).indices  # texts per image
        hit_i = positive.gather(1, top_t).any(1)[has_caption]
        out[f"image_to_text_R@{k}"] = float(hit_i.float().mean())
        top_i = sim.T.topk(min(k, n_img), dim=1).indices  # images per text
        out[f"text_to_image_R@{k}"] = float((top_i == idx.reshape(-1, 1)).any(1).float().mean())
    return out


@torch.no_grad()
def embed_images(encode: Callable[[torch.Tensor], torch.Tensor], split,
                 batch_size: int = 64) -> torch.Tensor:
    """L2-normalised embeddings of every image of ``split`` (an :class:`ImageSplit`)."""
    rows = [F.normalize(encode(torch.from_numpy(imgs)).float(), dim=-1)
            for _, imgs in split.iter_batches(batch_size)]
    return torch.cat(rows) if rows else torch.zeros(0, 0)


@torch.no_grad()
def embed_texts(encode: Callable[[list[str]], torch.Tensor], texts: list[str],
                batch_size: int = 256) -> torch.Tensor:
    rows = [F.normalize(encode(list(texts[i:i + batch_size])).float(), dim=-1)
            for i in range(0, len(texts), batch_size)]
    return torch.cat(rows)


@torch.no_grad()
def zeroshot_evaluate(model, split, class_names: Sequence[str], templates: Sequence[str],
                      classes: Sequence[int] | None = None, batch_size: int = 64) -> dict:
    """Zero-shot on an image split with labels. ``classes`` restricts the evaluation to a subset
    of class indices (images of other classes are dropped; the candidate set is the subset)."""
    from fmlab.adapt.zeroshot import build_zeroshot_weights

    if split.labels is None:
        raise DataError(f"split {split.name!r} of {split.origin} has no labels; zero-shot needs them")
    keep = np.arange(len(split))
    labels = split.labels
    names = list(class_names)
    if classes is not None:
        classes = list(classes)
        remap = -np.ones(len(class_names), dtype=np.int64)
        remap[classes] = np.arange(len(classes))
        keep = np.flatnonzero(np.isin(labels, classes))
        labels = remap[labels[keep]]
        names = [class_names[c] for c in classes]
    model.eval()
    weights = build_zeroshot_weights(names, list(templates), lambda t: model.encode_text(t).float())
    feats = []
    for start in range(0, len(keep), batch_size):
        imgs = torch.from_numpy(split.get_batch(keep[start:start + batch_size]))
        feats.append(F.normalize(model.encode_image(imgs).float(), dim=-1))
    scores = torch.cat(feats) @ F.normalize(weights, dim=-1).T
    out = zeroshot_metrics(scores, labels)
    out.update(n_images=len(keep), n_classes=len(names), chance_acc1=1.0 / len(names),
               chance_acc5=min(5, len(names)) / len(names))
    return out


@torch.no_grad()
def retrieval_evaluate(model, split, batch_size: int = 64, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Retrieval on an :class:`ImageTextSplit` (images + captions + caption_image_index)."""
    model.eval()
    img = embed_images(model.encode_image, split.images, batch_size)
    txt = embed_texts(model.encode_text, list(split.captions))
    out = retrieval_metrics(img @ txt.T, split.caption_image_index, ks)
    n_img, n_txt = img.shape[0], txt.shape[0]
    caps_per_img = np.bincount(np.asarray(split.caption_image_index), minlength=n_img)
    out.update(n_images=n_img, n_texts=n_txt)
    for k in ks:  # expected recall of a random ranking
        out[f"chance_text_to_image_R@{k}"] = min(k, n_img) / n_img
        with_caps = caps_per_img[caps_per_img > 0]
        miss = [_hypergeom_miss(n_txt, int(c), min(k, n_txt)) for c in with_caps]
        out[f"chance_image_to_text_R@{k}"] = float(1 - np.mean(miss))
    return out


def _hypergeom_miss(n: int, positives: int, k: int) -> float:
    """P(no positive among k of n drawn without replacement)."""
    p = 1.0
    for i in range(k):
        p *= max(n - positives - i, 0) / (n - i)
    return p
