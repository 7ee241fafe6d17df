"""DITO, reduced (Kim et al., 2023): region-text contrastive pre-training and open-vocabulary box retrieval.

The image side is a detector-style network: a backbone's feature map (B,C,H,W) (read before its pooling
by :class:`~fmlab.multimodal.dense.DenseImageEncoder`), ``R`` boxes per image (random boxes of several
scales and aspects plus the whole image, :func:`sample_boxes`), RoI-Align region features
(``torchvision.ops.roi_align``, averaged over the bins) projected to the text width. The image–caption
score aggregates the region–text cosines ``s_r = cos(region_r, text)`` over the image's regions,

    max:      S = max_r s_r
    softmax:  S = Σ_r softmax_r(s_r / β) · s_r        (β → 0: max; β → ∞: mean)
    mean:     S = mean_r s_r

and a symmetric InfoNCE over the batch trains both towers (:func:`info_nce`). The baseline
(``region=False``) is image-level CLIP with the same backbone and head: one region, the whole
image, i.e. global average pooling of the map (:func:`region_features` of the whole-image box is
exactly that with ``sampling_ratio = H / output_size``).

Open-vocabulary box retrieval (:mod:`fmlab.multimodal.region_eval`): every candidate box (the canvas's
true boxes plus random ones, ``candidate_boxes``) is scored by ``cos(region feature, class query)``, and
the ranking by :func:`fmlab.metrics.detection.box_retrieval_ap`. "Novel" classes (``split_classes``) are never a
*detection label*; pre-training uses captions only, and canvas captions name every object, so novel
means novel for the detection labels (as in issue 21), not unseen in text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align

from fmlab.errors import DataError
from fmlab.multimodal.dense import DenseImageEncoder
from fmlab.multimodal.region_text import CaptionEncoder, canvas_region_batch, caption_tokens
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

AGGREGATES = ("max", "softmax", "mean")
__all__ = ["AGGREGATES", "CaptionEncoder", "RegionEncoder", "RegionTextObjective", "canvas_region_batch",
           "caption_tokens", "info_nce", "region_features", "region_text_scores", "sample_boxes"]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return positive_int("size", int(h)), positive_int("size", int(w))


def sample_boxes(batch: int, size: int | Sequence[int], num_boxes: int, generator: torch.Generator | None = None,
                 scales: Sequence[float] = (0.25, 0.5, 0.75), aspects: Sequence[float] = (0.5, 1.0, 2.0),
                 whole_image: bool = True) -> torch.Tensor:
    """Random training boxes: box 0 the whole image (if asked), the others of random scale/aspect/position.

    A box of scale ``s`` and aspect ``a`` (width/height) has side ``s·sqrt(H·W)`` reshaped to
    ``w = side·sqrt(a)``, ``h = side/sqrt(a)`` (clipped to the image) and lies uniformly inside the image.

    Args:
        batch: number of images B.
        size: image size S or (H, W) in pixels.
        num_boxes: boxes per image R (>= 1), the whole-image box included.
        generator: the torch.Generator all draws come from (same state, same boxes); None draws from the
            global torch RNG (which the engine re-seeds every step, so training stays resume-exact).
        scales: relative sides to draw from, each in (0, 1].
        aspects: width/height ratios to draw from (> 0).
        whole_image: make box 0 the whole image.

    Returns:
        float32 (B, R, 4) xyxy boxes in pixel edges.

    Examples:
        >>> b = sample_boxes(2, 32, 4, torch.Generator().manual_seed(0))
        >>> tuple(b.shape), b[0, 0].tolist(), bool((b[..., 2:] <= 32).all() and (b[..., :2] >= 0).all())
        ((2, 4, 4), [0.0, 0.0, 32.0, 32.0], True)
    """
    h, w = _size2(size)
    batch, num_boxes = non_negative_int("batch", batch), positive_int("num_boxes", num_boxes)
    for s in scales:
        finite_float("scales", s, low=0.0, high=1.0, low_open=True)
    for a in aspects:
        finite_float("aspects", a, low=0.0, low_open=True)
    check(len(scales) > 0 and len(aspects) > 0, "scales", scales, "scales and aspects must not be empty")
    n = (batch, num_boxes)
    sc = torch.tensor(scales, dtype=torch.float32)[torch.randint(len(scales), n, generator=generator)]
    asp = torch.tensor(aspects, dtype=torch.float32)[torch.randint(len(aspects), n, generator=generator)]
    side = sc * math.sqrt(h * w)
    bw, bh = (side * asp.sqrt()).clamp(1.0, w), (side / asp.sqrt()).clamp(1.0, h)
    x0 = torch.rand(n, generator=generator) * (w - bw)
    y0 = torch.rand(n, generator=generator) * (h - bh)
    boxes = torch.stack([x0, y0, x0 + bw, y0 + bh], dim=-1)
    if whole_image:
        boxes[:, 0] = torch.tensor([0.0, 0.0, float(w), float(h)])
    return boxes


def region_features(fmap: torch.Tensor, boxes: torch.Tensor, image_size: int | Sequence[int],
                    output_size: int = 2, sampling_ratio: int = -1) -> torch.Tensor:
    """RoI-Align features of boxes, averaged over the ``output_size²`` bins.

    With ``aligned=True`` a pixel-edge box maps to the feature map by ``spatial_scale = H_map / H_img``;
    for the whole-image box and ``sampling_ratio = H_map / output_size`` the sample points are exactly
    the map's cell centres, so the result *equals* global average pooling (``-1``, adaptive sampling,
    approximates it).

    Args:
        fmap: (B, C, H, W) feature map.
        boxes: (B, R, 4) xyxy boxes in image pixels.
        image_size: the image's size S or (H, W) the boxes refer to.
        output_size: RoI-Align bins per side.
        sampling_ratio: sample points per bin side (-1: adaptive, as torchvision).

    Returns:
        (B, R, C) region features.

    Examples:
        >>> m = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> region_features(m, torch.tensor([[[0.0, 0.0, 32.0, 32.0]]]), 32, 2, 1).item() == m.mean().item()
        True
    """
    if fmap.ndim != 4 or boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != fmap.shape[0]:
        raise DataError(f"boxes: shape {tuple(boxes.shape)} must be (B,R,4) for a map {tuple(fmap.shape)}")
    h, _ = _size2(image_size)
    output_size = positive_int("output_size", output_size)
    b, r = boxes.shape[:2]
    pooled = roi_align(fmap, list(boxes.to(fmap.dtype).unbind(0)), output_size,
                       spatial_scale=fmap.shape[-2] / h, sampling_ratio=int(sampling_ratio), aligned=True)
    return pooled.mean(dim=(2, 3)).reshape(b, r, -1)


class RegionEncoder(nn.Module):
    """Detector-style image tower: feature map → RoI-Align per box → linear projection to the text width.

    Args:
        backbone: a ResNet-style Backbone (``trunk.forward_map``), read as in DenseCLIP.
        width: the text width D.
        output_size: RoI-Align bins per side.
        sampling_ratio: RoI-Align sample points per bin side (-1 adaptive).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> enc = RegionEncoder(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 8)
        >>> images = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
        >>> tuple(enc(images, sample_boxes(2, 32, 3, torch.Generator())).shape), tuple(enc.global_embed(images).shape)
        ((2, 3, 8), (2, 8))
    """

    def __init__(self, backbone: nn.Module, width: int, output_size: int = 2, sampling_ratio: int = -1) -> None:
        super().__init__()
        self.dense = DenseImageEncoder(backbone, None)
        self.width = positive_int("width", width)
        self.output_size = positive_int("output_size", output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.head = nn.Linear(self.dense.channels, self.width)

    @staticmethod
    def image_size(images: torch.Tensor) -> tuple[int, int]:
        """(H, W) of uint8 (B,H,W[,C]) or float NCHW images, the frame boxes are given in."""
        return tuple(images.shape[1:3]) if images.dtype == torch.uint8 else tuple(images.shape[-2:])

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Region embeddings.

        Args:
            images: uint8 (B,H,W[,C]) or preprocessed float (B,C,H,W).
            boxes: (B, R, 4) xyxy in image pixels.

        Returns:
            (B, R, D) region embeddings (not normalised).
        """
        fmap = self.dense.feature_map(images)
        feats = region_features(fmap, boxes, self.image_size(images), self.output_size, self.sampling_ratio)
        return self.head(feats)

    def global_embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image-level embedding: the head on the global average of the map (B, D) (the CLIP baseline)."""
        return self.head(self.dense.feature_map(images).mean(dim=(2, 3)))


def region_text_scores(regions: torch.Tensor, text: torch.Tensor, aggregate: str = "softmax",
                       beta: float = 0.1) -> torch.Tensor:
    """Image–text scores aggregated from region–text cosines.

    Args:
        regions: (B, R, D) region embeddings.
        text: (T, D) text embeddings.
        aggregate: ``"max"``, ``"softmax"`` (softmax-weighted mean with temperature ``beta``) or ``"mean"``.
        beta: the softmax temperature over regions.

    Returns:
        (B, T) scores in [-1, 1]; with one region every aggregate is the plain cosine (image-level CLIP).

    Examples:
        >>> r, t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[1.0, 0.0]])
        >>> [region_text_scores(r, t, a).item() for a in ("max", "mean")]
        [1.0, 0.5]
    """
    check(aggregate in AGGREGATES, "aggregate", aggregate, f"must be one of {AGGREGATES}")
    if regions.ndim != 3 or text.ndim != 2 or regions.shape[-1] != text.shape[-1]:
        raise DataError(f"regions: shape {tuple(regions.shape)} must be (B,R,D) with text (T,D) "
                        f"{tuple(text.shape)}")
    sims = torch.einsum("brd,td->btr", F.normalize(regions, dim=-1), F.normalize(text, dim=-1))
    if aggregate == "max":
        return sims.amax(dim=-1)
    if aggregate == "mean":
        return sims.mean(dim=-1)
    beta = finite_float("beta", beta, low=0.0, low_open=True)
    return (torch.softmax(sims / beta, dim=-1) * sims).sum(dim=-1)


def info_nce(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of a (B, B) image–caption score matrix (pairs on the diagonal).

    ``(CE(scores/τ, diag) + CE(scoresᵀ/τ, diag)) / 2`` — CLIP's loss on any score, here an aggregate.

    Args:
        scores: (B, B) scores, rows images, columns captions.
        tau: temperature (> 0).

    Returns:
        Scalar loss.

    Examples:
        >>> round(info_nce(torch.zeros(2, 2), 1.0).item(), 4)  # log 2
        0.6931
    """
    tau = finite_float("tau", tau, low=0.0, low_open=True)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise DataError(f"scores: shape {tuple(scores.shape)} must be square (B,B)")
    target = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(scores / tau, target) + F.cross_entropy(scores.t() / tau, target))


class RegionTextObjective(nn.Module):
    """Region-text (DITO) or image-level (CLIP baseline) contrastive pre-training for the engine.

    ``loss, logs = objective({"images": ..., "tokens": ...})``. Boxes are redrawn every call from the
    *global* torch RNG, which the engine re-seeds at every step, so a resumed run draws the same boxes
    as an uninterrupted one. Both variants train the same encoder and head, so box retrieval reads
    regions of either model the same way (RoI-Align of the candidate boxes); only pre-training differs.

    Optional box supervision (``box_weight > 0``, the detector stage of DITO folded into one run): the
    batch's ``boxes`` (B,K,4) with ``box_labels`` (B,K) (a row of ``class_tokens``, -1 = no label) are
    RoI-pooled with ``num_boxes`` random boxes and classified against a learnable background embedding and
    the text embeddings of ``class_tokens`` (cross-entropy at ``tau``, :meth:`box_loss`); only the classes in
    ``class_tokens`` (the base classes) can be detection labels.

    Args:
        encoder: the :class:`RegionEncoder`.
        text_encoder: maps ``batch["tokens"]`` to (B, D) caption embeddings (e.g. :class:`CaptionEncoder`).
        region: True for region-text; False for the image-level CLIP baseline (global pooling).
        num_boxes: boxes per image R (whole image included).
        aggregate: how region–text cosines become the image score (:data:`AGGREGATES`).
        beta: softmax temperature over regions.
        tau: InfoNCE temperature.
        scales: relative box sides to draw from.
        aspects: box aspect ratios to draw from.
        class_tokens: (C, L) token ids of the box-label classes' prompts (None: no box supervision).
        box_weight: weight of the box-classification loss.
        whole_image: make the first sampled box the whole image.

    Examples:
        >>> from fmlab.models import create_backbone
        >>> enc = RegionEncoder(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 8)
        >>> obj = RegionTextObjective(enc, CaptionEncoder(10, 8), num_boxes=3)
        >>> batch = {"images": torch.zeros(2, 32, 32, 3, dtype=torch.uint8), "tokens": torch.tensor([[2, 3], [4, 0]])}
        >>> loss, logs = obj(batch); sorted(logs)
        ['acc_i2t', 'loss_nce']
    """

    def __init__(self, encoder: RegionEncoder, text_encoder: nn.Module, region: bool = True, num_boxes: int = 16,
                 aggregate: str = "softmax", beta: float = 0.1, tau: float = 0.07,
                 scales: Sequence[float] = (0.25, 0.5, 0.75), aspects: Sequence[float] = (0.5, 1.0, 2.0),
                 class_tokens: torch.Tensor | None = None, box_weight: float = 0.0, whole_image: bool = True) -> None:
        super().__init__()
        check(aggregate in AGGREGATES, "aggregate", aggregate, f"must be one of {AGGREGATES}")
        self.encoder, self.text_encoder, self.region, self.aggregate = encoder, text_encoder, bool(region), aggregate
        self.num_boxes = positive_int("num_boxes", num_boxes)
        self.beta = finite_float("beta", beta, low=0.0, low_open=True)
        self.tau = finite_float("tau", tau, low=0.0, low_open=True)
        self.box_weight = finite_float("box_weight", box_weight, low=0.0)
        check(self.box_weight == 0 or class_tokens is not None, "box_weight", box_weight,
              "box supervision needs class_tokens (the base classes' prompts)")
        self.scales, self.aspects, self.whole_image = tuple(scales), tuple(aspects), bool(whole_image)
        self.register_buffer("class_tokens", None if class_tokens is None else torch.as_tensor(class_tokens).long(),
                             persistent=False)
        self.background = nn.Parameter(torch.randn(encoder.width) * 0.02) if self.box_weight > 0 else None

    def image_regions(self, images: torch.Tensor) -> torch.Tensor:
        """(B, R, D) region embeddings of sampled boxes, or (B, 1, D) the global embedding for the baseline."""
        if not self.region:
            return self.encoder.global_embed(images)[:, None]
        boxes = sample_boxes(images.shape[0], self.encoder.image_size(images), self.num_boxes, None,
                             self.scales, self.aspects, self.whole_image).to(images.device)
        return self.encoder(images, boxes)

    def box_loss(self, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Box classification over [background, label classes] (ViLD-style learnable background embedding).

        The labelled boxes plus ``num_boxes`` random boxes per image (global RNG); a random box takes the class
        of a labelled box it overlaps with IoU >= 0.5, else it is background. Boxes without a label (novel
        objects, padding) are neither positives nor used to call anything background: a novel object's box
        can be drawn as background, as in real open-vocabulary detection.
        """
        from torchvision.ops import box_iou

        size = self.encoder.image_size(images)
        rand = sample_boxes(images.shape[0], size, self.num_boxes, None, self.scales, self.aspects, False)
        rand = rand.to(boxes.device)
        rand_labels = torch.full(rand.shape[:2], -1, dtype=torch.long, device=boxes.device)
        for b in range(len(boxes)):
            keep = labels[b] >= 0
            if keep.any():
                best, arg = box_iou(rand[b], boxes[b][keep].float()).max(dim=1)
                rand_labels[b] = torch.where(best >= 0.5, labels[b][keep][arg].long(), rand_labels[b])
        all_boxes = torch.cat([torch.where((labels >= 0)[..., None], boxes.float(), rand[:, :1]), rand], dim=1)
        targets = torch.cat([torch.where(labels >= 0, labels.long(), -2), rand_labels], dim=1) + 1
        keep = targets >= 0  # 0 background, c + 1 class c, -1 ignored
        regions = F.normalize(self.encoder(images, all_boxes)[keep], dim=-1)
        classes = F.normalize(torch.cat([self.background[None], self.text_encoder(self.class_tokens)]), dim=-1)
        return F.cross_entropy(regions @ classes.t() / self.tau, targets[keep])

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss and logs (``loss_nce``, ``acc_i2t`` = top-1 image→caption accuracy in the batch; ``loss_box``).

        Args:
            batch: ``images`` (B,H,W[,C]) uint8 or float NCHW, ``tokens`` (B, L) int64 captions; with box
                supervision also ``boxes`` (B,K,4) and ``box_labels`` (B,K).

        Returns:
            (scalar loss, dict of 0-d tensors).
        """
        need = ("images", "tokens") + (("boxes", "box_labels") if self.box_weight > 0 else ())
        for key in need:
            if key not in batch:
                raise DataError(f"batch: no {key!r} (has {sorted(batch)}); region-text needs {', '.join(need)}")
        scores = region_text_scores(self.image_regions(batch["images"]), self.text_encoder(batch["tokens"]),
                                    self.aggregate, self.beta)
        loss = info_nce(scores, self.tau)
        acc = (scores.argmax(1) == torch.arange(len(scores), device=scores.device)).float().mean()
        logs = {"loss_nce": loss.detach(), "acc_i2t": acc}
        if self.box_weight > 0:
            box = self.box_loss(batch["images"], batch["boxes"], batch["box_labels"])
            loss = loss + self.box_weight * box
            logs["loss_box"] = box.detach()
        return loss, logs
