"""Retrieval evaluations for PLIP-style claims: same-identity text→image mAP and colour-attribute
text queries ("a red 7") on ``canvas`` splits. Global embeddings only (inference cost of CLIP).

* Same-identity mAP: every caption of the split is a query over every image; the relevant images
  are those of the caption's identity (canvas: the class of the first object).
* Colour queries: for each (colour, class) pair present in the split, the query
  ``template.format(f"{colour} {class}")`` ranks every image; relevant = images holding an object
  of that colour *and* class (the layout of the canvas says which).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.metrics.retrieval import mean_average_precision
from fmlab.multimodal.evaluate import embed_images, embed_texts


def canvas_objects(split) -> tuple[np.ndarray, np.ndarray]:
    """(labels, colours) ``(N, K)`` of every object of a ``canvas`` split (-1 padding).

    Raises:
        fmlab.errors.DataError: a split without a canvas-like layout.
    """
    kind = getattr(split, "kind", None)
    if kind is None or kind.layout is None:
        raise DataError(f"{getattr(split, 'origin', split)}: colour queries need a synthetic canvas split")
    lay = kind.layout(np.asarray(split.pool.labels, np.int64), np.arange(len(split)), split.seed, **split.params)
    if "colours" not in lay:
        raise DataError(f"{split.origin}: the layout has no object colours")
    return lay["labels"], lay["colours"]


@torch.no_grad()
def identity_retrieval(model, split, batch_size: int = 64) -> dict[str, float]:
    """Text→image mAP where an image is relevant to a caption of the same identity (class).

    Returns:
        ``{"identity_mAP", "chance_identity_mAP"}`` (chance ≈ mean share of relevant images).
    """
    if split.labels is None:
        raise DataError(f"{split.origin}: same-identity retrieval needs labels")
    model.eval()
    img = embed_images(model.encode_image, split.images, batch_size)
    txt = embed_texts(model.encode_text, list(split.captions))
    ident = torch.as_tensor(np.asarray(split.labels, np.int64))
    cap_ident = ident[torch.as_tensor(np.asarray(split.caption_image_index, np.int64))]
    relevant = cap_ident.reshape(-1, 1) == ident.reshape(1, -1)
    return {"identity_mAP": mean_average_precision(txt @ img.T, relevant),
            "chance_identity_mAP": float(relevant.float().mean())}


@torch.no_grad()
def colour_query_retrieval(model, split, colours: Sequence[str], template: str = "a {}",
                           batch_size: int = 64) -> dict[str, float]:
    """mAP of "a <colour> <class>" text queries over a canvas split's images.

    Args:
        model: an :class:`~fmlab.multimodal.model.ImageTextModel`.
        split: a canvas split (its layout gives each object's class and colour index).
        colours: colour names by index (canvas ``COLOURS``).
        template: the query with one ``{}`` for ``"<colour> <class>"``.

    Returns:
        ``colour_mAP`` (mean over queries with at least one relevant image), ``colour_only_mAP``
        (same queries, relevant = any object of that colour, whatever its class), ``n_queries``
        and ``chance_colour_mAP``.
    """
    labels, cols = canvas_objects(split)
    names = list(split.class_names)
    queries, rel, rel_colour = [], [], []
    for c, colour in enumerate(colours):
        has_colour = (cols == c).any(1)
        for k, name in enumerate(names):
            r = ((cols == c) & (labels == k)).any(1)
            if r.any():
                queries.append(template.format(f"{colour} {name}"))
                rel.append(r)
                rel_colour.append(has_colour)
    if not queries:
        raise DataError(f"{split.origin}: no (colour, class) pair occurs")
    model.eval()
    img = embed_images(model.encode_image, split.images, batch_size)
    scores = embed_texts(model.encode_text, queries) @ img.T
    relevant = torch.as_tensor(np.stack(rel))
    return {"colour_mAP": mean_average_precision(scores, relevant),
            "colour_only_mAP": mean_average_precision(scores, torch.as_tensor(np.stack(rel_colour))),
            "n_queries": len(queries), "chance_colour_mAP": float(relevant.float().mean())}
