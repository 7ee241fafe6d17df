"""Text-image consistency of a caption generator (``fmlab gan eval`` / ``gan train``'s evals).

The generator draws one image per *held-out* caption — the captions of the first ``n`` images of
the reference split (MNIST test), written with the training binner's thresholds — and we check
what each image shows against what its caption asked for:

- ``class_acc``: the held-out LeNet-5's argmax equals the caption's digit
  (:func:`fmlab.metrics.text_image.attribute_agreement` with the class as the attribute);
- ``thickness_agree`` / ``slant_agree``: the generated digit's measured thickness / slant bin
  (pixels, :func:`fmlab.data.attributes.digit_attributes` at 28 px, training terciles) equals
  the caption's (chance ≈ 1/3 each);
- FID-LeNet (and IS, KID, PRDC) of the same images against the reference split;
- with ``--image-text REF``: CLIP-score and R-precision under that image-text model, of the
  generated and of the real images (:mod:`fmlab.experiments.textgan_imtext`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.data.attributes import AttributeBinner, digit_attributes
from fmlab.errors import DataError
from fmlab.experiments.gan_eval import evaluate_fakes
from fmlab.experiments.textgan_data import CHECKED_ATTRIBUTES, CaptionSet, caption_images
from fmlab.gan.caption_cond import CaptionGenerator
from fmlab.gan.caption_io import generate_from_embeddings
from fmlab.metrics.text_image import attribute_agreement

CAPTION_METRICS = ("class_acc", *(f"{a}_agree" for a in CHECKED_ATTRIBUTES))


def eval_captions(ref: Any, n: int, binner: AttributeBinner, seed: int = 0,
                  encoder: str = "text:minilm") -> CaptionSet:
    """Captions of the first ``n`` images of the reference split (training thresholds)."""
    if ref.labels is None:
        raise DataError("caption evaluation needs a labelled reference split (e.g. mnist:test)")
    n = min(int(n), len(ref))
    images = np.asarray(ref.get_batch(np.arange(n)))
    if images.ndim == 4:
        images = images[..., 0]
    return caption_images(images, np.asarray(ref.labels)[:n], binner, seed, encoder)


def to_side(images: np.ndarray, side: int = 28) -> np.ndarray:
    """uint8 (N, H, W) grey images resized (bilinear, antialiased) to side×side."""
    if images.shape[1:3] == (side, side):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def consistency(images: np.ndarray, caps: CaptionSet, binner: AttributeBinner,
                class_probs: np.ndarray) -> dict[str, float]:
    """``class_acc`` and ``<attribute>_agree`` of generated grey images against their captions."""
    if len(images) != len(caps.labels) or len(class_probs) != len(images):
        raise DataError(f"consistency: {len(images)} images, {len(caps.labels)} captions, "
                        f"{len(class_probs)} class predictions")
    out = {"class_acc": attribute_agreement(np.asarray(class_probs).argmax(1), caps.labels)}
    got = binner.bins({k: v for k, v in digit_attributes(to_side(images)).items()
                       if k in binner.edges})
    for a in CHECKED_ATTRIBUTES:
        out[f"{a}_agree"] = attribute_agreement(got[a], caps.bins[a])
    return out


def evaluate_caption_generator(G: CaptionGenerator, caps: CaptionSet, binner: AttributeBinner,
                               ref: Any, extractor: Any, metrics: list[str], seed: int = 0,
                               batch_size: int = 500, image_text: Any = None) -> dict[str, Any]:
    """Distribution metrics plus consistency of one image per caption of ``caps``.

    Args:
        G: the caption generator.
        caps: the evaluation captions (:func:`eval_captions`).
        binner: the training binner.
        ref: the reference split.
        extractor: the metric extractor (``lenet5_mnist``: its classifier judges the class).
        metrics: the distribution metrics (fid, kid, is, prdc).
        seed: the latents' and metrics' seed.
        batch_size: generation batch size.
        image_text: an image-text model: adds ``clip_score``/``r_precision`` of the generated
            images and ``*_real`` of the reference images the captions describe
            (:func:`fmlab.experiments.textgan_imtext.image_text_results`).

    Returns:
        ``{"fid": .., "is": {...}, "class_acc": .., "thickness_agree": .., ..., "protocol"}``.
    """
    if extractor.num_classes is None:
        raise DataError(f"caption consistency needs an extractor with a classifier; "
                        f"{extractor.name!r} has none")
    images = generate_from_embeddings(G, caps.emb, seed, batch_size)
    if images.ndim != 3:
        raise DataError("caption consistency measures grey digits; the generator makes colour")
    res = evaluate_fakes(images, None, ref, extractor, list(metrics), seed=seed)
    _, probs = extractor.extract(images, probs=True)
    res.update(consistency(images, caps, binner, probs))
    res["protocol"]["captions"] = {"n": len(caps.captions), "class_judge": extractor.name,
                                   "attributes": list(CHECKED_ATTRIBUTES)}
    if image_text is not None:
        from fmlab.experiments.textgan_imtext import image_text_results

        reals = np.asarray(ref.get_batch(np.arange(len(caps.labels))))
        scores, res["protocol"]["image_text"] = image_text_results(
            image_text, images, reals, caps.captions, caps.labels, seed, batch_size)
        res.update(scores)
    return res


def run_caption_eval(req: Any) -> Any:
    """``fmlab gan eval`` for a caption generator (dispatched by :func:`run_gan_eval`).

    Captions are those of the first ``req.n`` (default 2,000) reference images, written with the
    binner saved in ``generator.json``; the requested distribution metrics plus consistency are
    computed on one image per caption.

    Args:
        req: a :class:`fmlab.experiments.gan_eval.GANEvalRequest` with ``generator`` set.

    Returns:
        A :class:`fmlab.experiments.gan_eval.GANEvalResult`.
    """
    import time

    from fmlab.experiments.gan_eval import (
        GANEvalResult,
        make_extractor,
        metric_protocol_of,
        metric_records,
        open_reference,
    )
    from fmlab.experiments.textgan_data import binner_from_edges
    from fmlab.gan.caption_io import load_caption_generator

    wanted = req.validate()
    bad = [m for m in wanted if m not in ("fid", "kid", "is", "prdc")]
    if bad:
        raise DataError(f"--metrics: {bad} need class labels; a caption generator is scored with "
                        "fid, kid, is, prdc plus class_acc / thickness_agree / slant_agree")
    t0 = time.perf_counter()
    judge = None
    if req.image_text is not None:  # a bad --image-text fails before anything is generated
        from fmlab.multimodal.io import load_image_text_model

        judge = load_image_text_model(req.image_text, key="--image-text")
    G, info = load_caption_generator(req.generator)
    cap = info["caption"]
    ref = open_reference(req.ref, req.data_root)
    caps = eval_captions(ref, req.n or 2000, binner_from_edges(cap["binner"]),
                         int(cap.get("template_seed", 0)), cap["encoder"])
    ext = make_extractor(req.features, req.features_weights, req.data_root, req.batch_size)
    res = evaluate_caption_generator(G, caps, binner_from_edges(cap["binner"]), ref, ext, wanted,
                                     req.seed, req.batch_size, judge)
    if judge is not None:
        res["protocol"]["image_text"]["ref"] = str(req.image_text)
    res["protocol"]["generator"] = {k: info.get(k) for k in ("arch", "kwargs", "weights_sha256",
                                                             "ema", "step")}
    seconds = round(time.perf_counter() - t0, 2)
    run_id = None
    if req.db is not None:
        from fmlab.results import ResultsStore

        records = metric_records(res, method=f"caption:{info['arch']}", seed=req.seed,
                                 extra={"seconds": seconds}, seconds=seconds)
        run_id = ResultsStore(req.db).record("gan", metric_protocol_of(res, req.ref), records)
    return GANEvalResult(metrics=res, method=f"caption:{info['arch']}", n_fakes=len(caps.labels),
                         run_id=run_id, seconds=seconds)
