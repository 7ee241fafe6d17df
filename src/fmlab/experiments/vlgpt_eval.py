"""Evaluation of a ``fmlab vlgpt train`` run: both directions of the one model, and a sample sheet.

* image → text: caption perplexity of the test captions GIVEN their images (teacher forced, per word,
  EOS included) against the unigram baseline (the training captions' word frequencies under the same
  vocabulary, add-one smoothed); for labelled sources also the rate at which the greedy caption names
  the right class (and no other).
* text → image: each test caption is drawn (one image per distinct caption: generation is
  deterministic), and the drawing is scored twice against chance 1/C:
  ``t2i_embed_class_acc``: the generated image EMBEDDINGS' nearest class mean among the real test
  images' embeddings (same tokenizer); ``t2i_classifier_acc``: a held-out classifier (e.g. the MNIST
  LeNet-5, never seen by VL-GPT or its tokenizer) on the decoded pixels. For image-text sources
  (no classes) ``t2i_r1``: the generated embedding's nearest real test image is its own, vs 1/N.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.errors import DataError
from fmlab.experiments.vlgpt import VLGPTBundle, build_source, load_vlgpt
from fmlab.experiments.vlgpt_config import VLGPTDataConfig

__all__ = ["caption_perplexity", "draw_rows", "run_vlgpt_eval", "sample_sheet", "test_pairs"]


def test_pairs(bundle: VLGPTBundle, data: str | None, split: str, limit: int,
               data_root: str | None = None) -> dict[str, Any]:
    """The first ``limit`` images of a split with one caption each (templates drawn with seed 0).

    Returns:
        ``images`` uint8, ``captions`` list, ``labels`` (class index, or None for image-text
        sources), ``class_names`` (or None).
    """
    cfg = VLGPTDataConfig(**bundle.info["data"])
    if data:
        cfg.source = data
    if data_root:
        cfg.data_root = data_root
    src = build_source(cfg, split=split, limit=limit)
    if len(src) == 0:
        raise DataError(f"--split: {split} of {cfg.source} has no images")
    torch.manual_seed(0)
    b = src.get_batch(np.arange(len(src)))
    labelled = hasattr(src.source, "templates")
    return {"images": b["images"], "captions": [src.captions[i] for i in b["caption_ids"].tolist()],
            "labels": b["labels"] if labelled else None,
            "class_names": list(src.class_names) if labelled else None}


@torch.no_grad()
def caption_perplexity(bundle: VLGPTBundle, z: torch.Tensor, captions: list[str], batch_size: int = 256) -> float:
    """``exp`` of the mean per-token NLL (words + EOS) of ``captions`` given image embeddings ``z``."""
    ids = bundle.vocab.encode_batch(captions)
    nll, n = 0.0, 0
    for i in range(0, len(ids), batch_size):
        s, c = bundle.model.caption_nll(z[i:i + batch_size], ids[i:i + batch_size])
        nll, n = nll + float(s.sum()), n + int(c.sum())
    return math.exp(nll / n)


def _named_class(caption: str, class_words: list[set[str]]) -> int:
    """The one class whose name's words all appear in ``caption`` (-1: none or several)."""
    from fmlab.multimodal.vlgpt_text import words

    ws = set(words(caption))
    hits = [c for c, cw in enumerate(class_words) if cw and cw <= ws]
    return hits[0] if len(hits) == 1 else -1


def _nearest_class_acc(query: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor,
                       labels: torch.Tensor, n_classes: int) -> float:
    """Accuracy of nearest class mean (cosine) of ``query`` rows among the class means of ``keys``."""
    means = torch.stack([keys[key_labels == c].mean(0) if bool((key_labels == c).any())
                         else torch.full_like(keys[0], float("nan")) for c in range(n_classes)])
    sim = F.normalize(query, dim=1) @ F.normalize(means, dim=1).T
    return float((sim.nan_to_num(-2).argmax(1) == labels).float().mean())


def _generate_unique(bundle: VLGPTBundle, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and uint8 images of ``captions``, drawing each distinct caption once."""
    uniq = sorted(set(captions))
    z, img = bundle.generate(uniq)
    where = torch.tensor([uniq.index(c) for c in captions])
    return z[where], img[where]


@torch.no_grad()
def run_vlgpt_eval(model_ref: str | Path, data: str | None = None, split: str = "test", limit: int = 500,
                   classifier: str | None = None, classifier_weights: str | None = None,
                   data_root: str | None = None, bundle: VLGPTBundle | None = None) -> dict[str, Any]:
    """Perplexity vs the unigram baseline, caption class accuracy, text → image scores (see module doc)."""
    from fmlab.multimodal.vlgpt_text import unigram_perplexity

    bundle = bundle or load_vlgpt(model_ref)
    pairs = test_pairs(bundle, data, split, limit, data_root)
    z = bundle.tokenizer(pairs["images"])
    out: dict[str, Any] = {"n_pairs": len(z)}
    out["caption_perplexity"] = caption_perplexity(bundle, z, pairs["captions"])
    train_ids = bundle.vocab.encode_batch(bundle.info["train_captions"])
    out["unigram_perplexity"] = unigram_perplexity(train_ids, bundle.vocab.encode_batch(pairs["captions"]),
                                                   bundle.vocab.size)
    gen_caps = bundle.caption(pairs["images"])
    gz, gimg = _generate_unique(bundle, pairs["captions"])
    out["t2i_embedding_mse"] = float(F.mse_loss(gz, z))
    if pairs["labels"] is not None:
        from fmlab.multimodal.vlgpt_text import words

        labels, n_cls = pairs["labels"], len(pairs["class_names"])
        cw = [set(words(n)) for n in pairs["class_names"]]
        out["caption_class_acc"] = float(np.mean([_named_class(c, cw) == int(y) for c, y in zip(gen_caps, labels)]))
        out["t2i_embed_class_acc"] = _nearest_class_acc(gz.flatten(1), z.flatten(1), labels, labels, n_cls)
        out["chance_class"] = 1.0 / n_cls
        if classifier:
            from fmlab.models import create_backbone

            weights = os.path.expandvars(classifier_weights) if classifier_weights else None
            clf = create_backbone(classifier, weights, seed=0).eval()
            out["t2i_classifier_acc"] = float((clf(gimg).argmax(1) == labels).float().mean())
            out["real_classifier_acc"] = float((clf(pairs["images"]).argmax(1) == labels).float().mean())
            recon = bundle.detokenizer.to_uint8(z)  # the tokenizer's own ceiling: real image -> K embeddings -> pixels
            out["recon_classifier_acc"] = float((clf(recon).argmax(1) == labels).float().mean())
    else:
        sim = F.normalize(gz.flatten(1), dim=1) @ F.normalize(z.flatten(1), dim=1).T
        out["t2i_r1"] = float((sim.argmax(1) == torch.arange(len(z))).float().mean())
        out["chance_r1"] = 1.0 / len(z)
    out["examples"] = list(zip(pairs["captions"][:8], gen_caps[:8]))
    return out


def sample_sheet(bundle: VLGPTBundle, path: str | Path, data: str | None = None, split: str = "test",
                 n: int = 10, title: str | None = None) -> Path:
    """PNG: row 1 captions → drawn images; rows 2–3 test images and the model's captions under them.

    For labelled sources the prompts are one caption per class (the first template); otherwise the
    first ``n`` test captions.
    """
    pairs = test_pairs(bundle, data, split, max(n, 200))
    if pairs["class_names"] is not None:
        tmpl = bundle.info["data"]["templates"][0]
        prompts = [tmpl.format(c) for c in pairs["class_names"]][:n]
    else:
        prompts = pairs["captions"][:n]
    _, drawn = bundle.generate(prompts)
    real = pairs["images"][:n]
    return draw_rows([(drawn, prompts, "caption\n→ image"), (real, bundle.caption(real), "image\n→ caption")],
                     path, title)


def draw_rows(rows: list[tuple[torch.Tensor, list[str], str]], path: str | Path, title: str | None = None) -> Path:
    """PNG of rows of uint8 images, each image with its text under (or above) it; written atomically.

    Args:
        rows: ``(images (N, H, W[, C]), texts, row label)`` per row.
        path: the PNG file.
        title: the figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    cols = max(len(r[0]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 2.1 * len(rows) + 0.2), squeeze=False)
    for i, (imgs, texts, label) in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j].numpy(), cmap="gray" if imgs.ndim == 3 else None, vmin=0, vmax=255)
                ax.set_title("\n".join(_wrap(texts[j])), fontsize=7, y=-0.32 if i % 2 else 1.0)
        if label:
            axes[i, 0].text(-0.3, 0.5, label, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _wrap(text: str, width: int = 16) -> list[str]:
    lines, cur = [], ""
    for w in text.split():
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])
