"""Captioned MNIST for ``data.conditioning: caption``: templated captions, embedded once, cached.

Each training image gets one caption from :func:`fmlab.data.attributes.template_captions`: its
class word and the words of its measured thickness, slant and brightness, binned by terciles
fitted on the *training* images only (:class:`~fmlab.data.attributes.AttributeBinner`; test and
evaluation captions reuse the training thresholds). Templated captions repeat (10 digits × 27
attribute words × 4 templates ≈ 1,000 distinct sentences), so only the distinct ones go through
the frozen text encoder, and their embeddings are cached under ``$FMLAB_CACHE/textgan/`` keyed by
a hash of (encoder, its weights file's sha256, the sorted captions): the first run embeds,
later runs read. ``caption.encoder: clip:<run folder>`` embeds them with an ``fmlab clip train``
run's text tower + projection instead (its joint-space text embedding; T2I-SupCon part (a)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fmlab.data.attributes import AttributeBinner, digit_attributes, template_captions
from fmlab.errors import ConfigError, DataError
from fmlab.experiments.gan_data import GANTrainData
from fmlab.utils.io import atomic_path, cache_dir, sha256_json

#: the attributes a caption names and the ones evaluation measures again on the fakes
CAPTION_ATTRIBUTES = ("thickness", "slant", "brightness")
CHECKED_ATTRIBUTES = ("thickness", "slant")


CLIP_PREFIX = "clip:"


def clip_run_folder(name: str) -> str:
    """The run folder of a ``clip:<run folder>`` encoder name (a ``fmlab clip train`` output).

    Raises:
        fmlab.errors.ConfigError: an empty folder or one without ``clip_model.json`` (names
            ``caption.encoder``).
    """
    from pathlib import Path

    from fmlab.multimodal.io import SPEC_FILE

    folder = name[len(CLIP_PREFIX):]
    if not folder or not (Path(folder).expanduser() / SPEC_FILE).is_file():
        raise ConfigError(f"caption.encoder: {name!r} — clip:<run folder> needs a folder written by "
                          f"`fmlab clip train` (with {SPEC_FILE}); text:minilm is the other choice")
    return folder


def _encoder_id(name: str) -> str:
    """The encoder's name plus its weights' sha256 (MiniLM), for the cache key; for
    ``clip:<run>`` the model description and weights hash only (a copied run folder hits the
    same cache, a retrained one misses)."""
    if name in ("text:minilm", "text:all-MiniLM-L6-v2"):
        from fmlab.models.text import minilm_model_dir
        from fmlab.utils.io import sha256_file

        st = minilm_model_dir() / "model.safetensors"
        return f"{name}@{sha256_file(st) if st.is_file() else 'unknown'}"
    if name.startswith(CLIP_PREFIX):
        import json
        from pathlib import Path

        from fmlab.multimodal.io import SPEC_FILE, WEIGHTS_FILE
        from fmlab.utils.io import sha256_file

        folder = Path(clip_run_folder(name)).expanduser()
        try:
            meta = json.loads((folder / SPEC_FILE).read_text())
            weights = folder / str(meta.get("weights", WEIGHTS_FILE))
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
            raise ConfigError(f"caption.encoder: {name!r}: {SPEC_FILE} is unreadable ({e})") from None
        if not weights.is_file():
            raise ConfigError(f"caption.encoder: {name!r} has no weights file {weights}")
        return f"clip@{sha256_json(meta.get('spec'))}@{sha256_file(weights)}"
    return name


def _text_encode_fn(encoder: str) -> Callable[[list[str]], torch.Tensor]:
    """``texts -> (N, E)`` for ``encoder``: a text encoder's pooled output, or for
    ``clip:<run>`` that image-text model's joint-space text embedding (``encode_text``)."""
    if encoder.startswith(CLIP_PREFIX):
        from fmlab.multimodal.io import load_image_text_model

        model = load_image_text_model(clip_run_folder(encoder), key="caption.encoder")
        return model.encode_text
    from fmlab.models.text import create_text_encoder

    return create_text_encoder(encoder).encode


def embed_captions(captions: list[str], encoder: str = "text:minilm", batch_size: int = 256,
                   cache: bool = True) -> np.ndarray:
    """(N, E) float32 embeddings of ``captions``; distinct sentences embedded once, cached.

    Args:
        captions: the sentences (repeats are cheap).
        encoder: a :func:`fmlab.models.text.create_text_encoder` name, or ``clip:<run folder>``
            (the text tower + projection of an ``fmlab clip train`` run: joint-space embeddings).
        batch_size: sentences per encoder pass.
        cache: read/write ``$FMLAB_CACHE/textgan/captions-<hash>.npz``.

    Returns:
        One row per caption, in order.
    """
    if not captions:
        raise DataError("no captions to embed")
    uniq = sorted(set(captions))
    key = sha256_json({"encoder": _encoder_id(encoder), "captions": uniq})
    path = cache_dir() / "textgan" / f"captions-{key[:24]}.npz"
    emb = None
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if list(z["captions"]) == uniq:
                emb = z["emb"]
    if emb is None:
        encode = _text_encode_fn(encoder)
        with torch.no_grad():
            emb = torch.cat([encode(uniq[i:i + batch_size]).float()
                             for i in range(0, len(uniq), batch_size)]).numpy()
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, captions=np.array(uniq), emb=emb)
    row = {c: i for i, c in enumerate(uniq)}
    return np.ascontiguousarray(emb[[row[c] for c in captions]], dtype=np.float32)


@dataclass
class CaptionSet:
    """Captions of some images: the sentences, their classes, attribute bins and embeddings."""

    captions: list[str]
    labels: np.ndarray               # (N,) int64 class of each caption
    bins: dict[str, np.ndarray]      # attribute → (N,) bin 0/1/2 the caption names
    emb: np.ndarray                  # (N, E) float32


def fit_binner(images: np.ndarray) -> AttributeBinner:
    """Tercile thresholds of thickness/slant/brightness on (training) digit images."""
    attrs = digit_attributes(images)
    return AttributeBinner().fit({k: attrs[k] for k in CAPTION_ATTRIBUTES})


def caption_images(images: np.ndarray, labels: np.ndarray, binner: AttributeBinner, seed: int,
                   encoder: str = "text:minilm") -> CaptionSet:
    """Measure, bin, caption and embed (N, H, W) uint8 digit images.

    Args:
        images: the digits (ink bright on dark).
        labels: their classes.
        binner: thresholds fitted on training images.
        seed: the template choice's seed.
        encoder: the text encoder.

    Returns:
        The :class:`CaptionSet`.
    """
    attrs = digit_attributes(images)
    attrs = {k: attrs[k] for k in CAPTION_ATTRIBUTES}
    captions = template_captions(labels, binner.words(attrs), seed)
    return CaptionSet(captions, np.asarray(labels, dtype=np.int64), binner.bins(attrs),
                      embed_captions(captions, encoder))


@dataclass
class CaptionTrainData:
    """The training images (a :class:`GANTrainData`) with one caption each, as an engine source.

    ``get_batch`` returns ``{"images", "labels", "emb"}``; the fingerprint covers the image
    selection and the captions, so a resume with other captions is refused.
    """

    base: GANTrainData
    captions: CaptionSet
    binner: AttributeBinner
    encoder: str

    def __len__(self) -> int:
        return len(self.base)

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        batch = self.base.get_batch(indices)
        idx = np.asarray(indices, dtype=np.int64)
        batch["emb"] = torch.from_numpy(self.captions.emb[idx])
        batch["labels"] = torch.from_numpy(self.captions.labels[idx])
        return batch

    selection_keys = "data.limit / data.fraction / caption.*"

    @property
    def fingerprint(self) -> str:
        return sha256_json({"images": self.base.selection_sha256,
                            "captions": self.captions.captions, "encoder": self.encoder})

    @property
    def class_names(self) -> list[str] | None:
        return self.base.class_names

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def e_dim(self) -> int:
        return int(self.captions.emb.shape[1])

    def info(self) -> dict[str, Any]:
        return {**self.base.info(), "captions": {
            "encoder": self.encoder, "e_dim": self.e_dim,
            "distinct": len(set(self.captions.captions)), "examples": self.captions.captions[:5],
            "binner": {k: list(v) for k, v in self.binner.edges.items()}}}


def load_caption_data(data_cfg: Any, caption_cfg: Any) -> CaptionTrainData:
    """The training split of ``data_cfg`` with captions per ``caption_cfg`` (binner fitted here).

    Args:
        data_cfg: the run's ``data`` section (grey digits with labels).
        caption_cfg: the run's ``caption`` section.

    Returns:
        The captioned training source.
    """
    from fmlab.experiments.gan_data import load_train_data

    if data_cfg.channels != 1:
        raise DataError(f"data.conditioning: caption describes grey digits; data.channels must be "
                        f"1, got {data_cfg.channels}")
    base = load_train_data(data_cfg)
    if base.labels is None or base.images is None:
        raise DataError(f"data.conditioning: caption needs labelled in-memory images; "
                        f"{base.origin} has none")
    raw = base.images[..., 0] if base.images.ndim == 4 else base.images
    binner = fit_binner(raw)
    caps = caption_images(raw, base.labels, binner, caption_cfg.template_seed, caption_cfg.encoder)
    return CaptionTrainData(base, caps, binner, caption_cfg.encoder)


def binner_from_edges(edges: dict[str, Any]) -> AttributeBinner:
    """Rebuild the training binner saved in ``generator.json``."""
    try:
        return AttributeBinner({k: (float(v[0]), float(v[1])) for k, v in edges.items()})
    except (TypeError, ValueError, IndexError, KeyError):
        raise DataError(f"caption binner edges {edges!r} are malformed") from None

