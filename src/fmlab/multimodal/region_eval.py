"""DITO, reduced: open-vocabulary box retrieval with a region-text pre-trained :class:`RegionEncoder`.

Candidate boxes (each image's true boxes plus random ones, :func:`candidate_boxes`) are labelled with
the class they show (IoU >= 0.5 with a true box of that class, else background); each class query's
text embedding ranks *all* candidates of all images by ``cos(region feature, query)``, and the
ranking is scored by :func:`fmlab.metrics.detection.box_retrieval_ap`. :func:`split_classes` draws
base and novel classes; novel classes are never detection labels. Pre-training uses captions only,
and canvas captions name every object, so "novel" means novel for the detection labels (issue 21),
not unseen in text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from fmlab.errors import DataError
from fmlab.metrics.detection import mean_box_retrieval_ap
from fmlab.multimodal.region import RegionEncoder, sample_boxes
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int


def candidate_boxes(true_boxes: torch.Tensor, true_labels: torch.Tensor, num_random: int, size: int | Sequence[int],
                    generator: torch.Generator, iou: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate boxes for retrieval: each image's true boxes plus random ones, with the class they show.

    A candidate shows class ``c`` when its IoU with a true box of class ``c`` is >= ``iou`` (the best such
    box); otherwise its label is -1 (background). Padding (true label < 0) and empty true boxes (an object
    with no pixel above the mask threshold: zero area) get label -2 (ignored) and match nothing.

    Args:
        true_boxes: (B, K, 4) xyxy (padding rows have label < 0).
        true_labels: (B, K) int classes, < 0 for padding.
        num_random: random boxes per image (``sample_boxes`` without the whole image).
        size: image size.
        generator: source of the random boxes.
        iou: IoU needed to count as showing an object.

    Returns:
        (boxes (B, K + num_random, 4), labels (B, K + num_random) int64).

    Examples:
        >>> tb, tl = torch.tensor([[[0.0, 0, 8, 8], [-1, -1, -1, -1]]]), torch.tensor([[3, -1]])
        >>> b, lab = candidate_boxes(tb, tl, 2, 32, torch.Generator().manual_seed(0))
        >>> tuple(b.shape), lab[0, :2].tolist()
        ((1, 4, 4), [3, -2])
    """
    true_boxes, true_labels = torch.as_tensor(true_boxes, dtype=torch.float32), torch.as_tensor(true_labels).long()
    if true_boxes.ndim != 3 or true_labels.shape != true_boxes.shape[:2]:
        raise DataError(f"true_labels: shape {tuple(true_labels.shape)} must be (B,K) of boxes "
                        f"{tuple(true_boxes.shape)}")
    iou = finite_float("iou", iou, low=0.0, high=1.0, low_open=True)
    rand = sample_boxes(len(true_boxes), size, positive_int("num_random", num_random), generator, whole_image=False)
    boxes = torch.cat([true_boxes, rand], dim=1)
    labels = torch.full(boxes.shape[:2], -1, dtype=torch.int64)
    area_ok = (true_boxes[..., 2] > true_boxes[..., 0]) & (true_boxes[..., 3] > true_boxes[..., 1])
    for b in range(len(boxes)):
        valid = (true_labels[b] >= 0) & area_ok[b]
        if valid.any():
            ov = box_iou(boxes[b], true_boxes[b][valid])
            best, arg = ov.max(dim=1)
            labels[b] = torch.where(best >= iou, true_labels[b][valid][arg], labels[b])
        labels[b, : true_labels.shape[1]][~valid] = -2
    return boxes, labels


@torch.no_grad()
def box_retrieval(encoder: RegionEncoder, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                  queries: torch.Tensor, classes: Sequence[int]) -> tuple[dict[int, float], float]:
    """Open-vocabulary box retrieval: rank all candidate boxes of all images for each class query.

    Args:
        encoder: the (pre-trained) region encoder.
        images: (B, ...) images.
        boxes: (B, M, 4) candidate boxes; labels (B, M) their classes (-1 background, -2 ignored).
        labels: see ``boxes``.
        queries: (Q, D) text embeddings, row ``q`` the query of class ``classes[q]``.
        classes: the class of each query.

    Returns:
        ({class: AP}, mean AP over the classes that have a matching box).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> enc = RegionEncoder(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 8)
        >>> b = torch.tensor([[[0.0, 0, 16, 16], [16, 16, 32, 32]]]); lab = torch.tensor([[1, -1]])
        >>> ap, mean = box_retrieval(enc, torch.zeros(1, 32, 32, 3, dtype=torch.uint8), b, lab, torch.randn(1, 8), [1])
        >>> list(ap), mean in (0.5, 1.0)  # one match among two boxes: rank 1 or 2
        ([1], True)
    """
    if queries.ndim != 2 or len(queries) != len(classes):
        raise DataError(f"queries: shape {tuple(queries.shape)} must be (Q,D) with Q = {len(classes)} classes")
    was = encoder.training
    encoder.eval()
    regions = encoder(images, boxes)
    encoder.train(was)
    keep = labels.reshape(-1) >= -1
    feats = F.normalize(regions.reshape(-1, regions.shape[-1])[keep], dim=-1)
    scores = F.normalize(queries.to(feats), dim=-1) @ feats.t()
    flat = labels.reshape(-1)[keep]
    match = torch.stack([flat == int(c) for c in classes])
    ap, mean = mean_box_retrieval_ap(scores, match)
    return {int(c): float(a) for c, a in zip(classes, ap)}, mean


def split_classes(num_classes: int, num_novel: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split classes into base (may be detection labels) and novel (never detection labels), seeded.

    On canvas the captions name every object, so novel classes *are* seen in text during
    pre-training; they are novel only for the detection labels (as in DITO's open-vocabulary setting).

    Args:
        num_classes: classes 0..num_classes-1.
        num_novel: how many are novel (0 <= num_novel < num_classes).
        seed: seed of the split.

    Returns:
        (sorted base classes, sorted novel classes).

    Examples:
        >>> base, novel = split_classes(10, 3, seed=0)
        >>> len(base), len(novel), sorted(base + novel) == list(range(10))
        (7, 3, True)
    """
    num_classes = positive_int("num_classes", num_classes)
    num_novel = non_negative_int("num_novel", num_novel)
    check(num_novel < num_classes, "num_novel", num_novel, f"must be < num_classes {num_classes}")
    perm = torch.randperm(num_classes, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return sorted(perm[num_novel:]), sorted(perm[:num_novel])


RELATION_WORDS = ("left of", "right of", "above", "below", "and")


def canvas_vocab(class_names: Sequence[str]) -> dict[str, int]:
    """The closed word vocabulary of ``canvas`` captions over a pool's classes (templates, sizes, colours,
    relations, class names), so every run over the same pool tokenises alike, whatever it rendered.

    Args:
        class_names: the pool's class names (any words; multi-word names give several tokens).

    Returns:
        word → id (ids from 2; 0 padding, 1 unknown), in a fixed order.

    Examples:
        >>> v = canvas_vocab(["3", "7"]); v["a"], "7" in v, "left" in v
        (2, True, True)
    """
    from fmlab.data.synthetic.canvas import COLOURS, SIZES, TEMPLATES
    from fmlab.multimodal.region import caption_tokens

    words = [t.format("a") for t in TEMPLATES] + list(SIZES) + COLOURS + list(RELATION_WORDS) + list(class_names)
    return caption_tokens(words)[1]


def class_prompt_tokens(class_names: Sequence[str], vocab: dict[str, int],
                        prompt: str = "a {size} {colour} {name}") -> torch.Tensor:
    """Token ids of the class prompts, every size and colour filled in (an ensemble per class).

    Args:
        class_names: the classes' names (one query per class).
        vocab: the word vocabulary (:func:`canvas_vocab`).
        prompt: template with ``{name}`` and optionally ``{size}``/``{colour}`` (filled with every value).

    Returns:
        int64 (C, E, L): E prompts per class.

    Examples:
        >>> class_prompt_tokens(["3"], canvas_vocab(["3"]), "a {name}").shape
        torch.Size([1, 1, 2])
    """
    from fmlab.data.synthetic.canvas import COLOURS, SIZES
    from fmlab.multimodal.region import caption_tokens

    check("{name}" in prompt, "prompt", prompt, "must contain {name}")
    sizes = SIZES if "{size}" in prompt else ("",)
    colours = COLOURS if "{colour}" in prompt else ("",)
    texts = [prompt.format(size=s, colour=c, name=n) for n in class_names for s in sizes for c in colours]
    ids, _ = caption_tokens(texts, vocab)
    return ids.reshape(len(class_names), len(sizes) * len(colours), -1)


@torch.no_grad()
def class_queries(text_encoder: torch.nn.Module, prompt_tokens: torch.Tensor) -> torch.Tensor:
    """(C, D) class queries: the mean of each class's normalised prompt embeddings (C, E, L tokens)."""
    was = text_encoder.training
    text_encoder.eval()
    c, e, n = prompt_tokens.shape
    emb = F.normalize(text_encoder(prompt_tokens.reshape(c * e, n)), dim=-1).reshape(c, e, -1).mean(1)
    text_encoder.train(was)
    return emb
