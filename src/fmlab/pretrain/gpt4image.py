"""GPT4Image (papers.md 39): cross-entropy plus an alignment of image features to the text
embeddings of descriptions of the images.

    L = CE(h(f(x)), y) + λ · L_align(g(f(x)), t)

``f`` is the encoder, ``h`` a linear classifier, ``g`` a linear projection to the text width and
``t`` the frozen text embedding of a description of the image. The paper has a multimodal LLM
describe every training image; offline, fmlab draws each image's description from its class's
pool of descriptions (a JSON file ``{class name: [description, ...]}``; one ships for CIFAR-10,
hand-written, ``fmlab/assets/descriptions/cifar10.json``), embedded once by a frozen text encoder
(MiniLM by default). ``descriptions_file: templates`` uses the bare prompt "a photo of a {class}."
instead: the paper's "richer descriptions help more" ablation.

``L_align`` is ``contrastive`` (symmetric InfoNCE over the batch at temperature τ; images that
drew the same description of the same class are all positives, so duplicates are not negatives)
or ``cosine`` (mean 1 − cos). The text branch is dropped at export: only ``f`` transfers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["GPT4Image", "description_bank", "load_descriptions"]

TEMPLATE = "a photo of a {}."


def load_descriptions(path: str | Path) -> dict[str, list[str]]:
    """``{class name: [description, ...]}`` from a JSON file (keys starting with ``_`` are notes).

    Raises:
        ConfigError: not JSON, not a mapping of names to non-empty lists of strings.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"objective.descriptions_file: cannot read {p}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object {{class name: [descriptions]}}")
    out = {}
    for k, v in data.items():
        if str(k).startswith("_"):
            continue
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
            raise ConfigError(f"{p}: class {k!r} needs a non-empty list of description strings")
        out[str(k)] = list(v)
    return out


def description_bank(descriptions: Mapping[str, Sequence[str]] | None, class_names: Sequence[str],
                     encode: Any) -> tuple[Tensor, Tensor]:
    """Embed every class's descriptions: ``(bank (K, M, D) L2-normalised, counts (K,))``.

    ``descriptions`` None gives one templated prompt per class. Classes with fewer than M
    descriptions are padded (the padding is never drawn: ``counts`` bounds the draw).
    """
    if descriptions is None:
        pools = [[TEMPLATE.format(c)] for c in class_names]
    else:
        missing = [c for c in class_names if c not in descriptions]
        if missing:
            raise ConfigError(f"objective.descriptions_file: no descriptions for classes {missing}")
        pools = [list(descriptions[c]) for c in class_names]
    m = max(len(p) for p in pools)
    with torch.no_grad():
        emb = [F.normalize(torch.as_tensor(encode(p)).float(), dim=-1) for p in pools]
    bank = torch.zeros(len(pools), m, emb[0].shape[1])
    for k, e in enumerate(emb):
        bank[k, : len(e)] = e
    return bank, torch.tensor([len(p) for p in pools])


@register_objective("gpt4image")
class GPT4Image(Objective):
    """CE + λ·alignment of projected features to description embeddings (see module doc).

    Args:
        encoder: the feature extractor that transfers.
        num_classes: classes of the labels.
        descriptions: ``{class name: [description, ...]}`` (None: one templated prompt per class),
            embedded once by ``text_encoder``; or an already embedded ``(bank (K, M, D), counts
            (K,))`` pair as from :func:`description_bank`.
        feature_dim: the encoder's feature size when it cannot be read from it.
        align_weight: λ (0 gives plain cross-entropy).
        align: ``contrastive`` or ``cosine``.
        temperature: τ of the contrastive alignment.
        label_smoothing: of the cross-entropy.
        class_names: the dataset's class names (orders the description pools).
        text_encoder: the frozen text encoder (``fmlab.models.create_text_encoder`` name).

    Examples:
        >>> bank = (F.normalize(torch.randn(3, 2, 8), dim=-1), torch.tensor([2, 1, 2]))
        >>> obj = GPT4Image(nn.Flatten(), 3, bank, feature_dim=12)  # pre-embedded descriptions
        >>> loss, logs = obj({"images": torch.randn(4, 3, 2, 2), "labels": torch.tensor([0, 1, 2, 0])})
        >>> sorted(logs)
        ['acc', 'align', 'ce']
    """

    needs = ("num_classes", "labels", "class_names", "descriptions")
    # "cifar10" = the shipped CIFAR-10 file, "templates" = "a photo of a {class}.", else a path
    config_fields = (("descriptions_file", str, "cifar10"),)

    def __init__(self, encoder: nn.Module, num_classes: int,
                 descriptions: Mapping[str, Sequence[str]] | tuple[Tensor, Tensor] | None,
                 feature_dim: int | None = None, align_weight: float = 1.0,
                 align: Literal["contrastive", "cosine"] = "contrastive", temperature: float = 0.07,
                 label_smoothing: float = 0.0, class_names: Sequence[str] | None = None,
                 text_encoder: str = "text:minilm") -> None:
        super().__init__()
        if align not in ("contrastive", "cosine"):
            raise ConfigError(f"align: {align!r} is not one of 'contrastive', 'cosine'")
        if temperature <= 0 or align_weight < 0:
            raise ConfigError(f"temperature must be > 0 and align_weight >= 0, got "
                              f"{temperature}, {align_weight}")
        self._set_encoder(encoder, feature_dim)
        if isinstance(descriptions, tuple):
            bank, counts = descriptions
        else:
            from fmlab.models.text import create_text_encoder

            names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
            bank, counts = description_bank(descriptions, names, create_text_encoder(text_encoder).encode)
        if bank.shape[0] != num_classes or counts.shape != (num_classes,):
            raise ConfigError(f"descriptions: {bank.shape[0]} classes of descriptions for {num_classes} classes")
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.proj = nn.Linear(self.feature_dim, bank.shape[-1])
        self.register_buffer("bank", bank.float(), persistent=False)
        self.register_buffer("counts", counts.long(), persistent=False)
        self.align, self.align_weight, self.temperature = align, float(align_weight), float(temperature)
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def provide(cls, need: str, section: Any) -> Any:
        """``descriptions``: the pools named by ``objective.descriptions_file`` (None: templates)."""
        if section.descriptions_file == "templates":
            return None
        if section.descriptions_file == "cifar10":
            from importlib.resources import files

            return load_descriptions(Path(str(files("fmlab") / "assets" / "descriptions" / "cifar10.json")))
        return load_descriptions(section.descriptions_file)

    def draw_texts(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One description per image from its class's pool (global RNG, which the engine seeds):
        ``(embeddings (B, D), ids (B,))`` with ids equal only for the same class and description."""
        counts = self.counts[labels]
        j = (torch.rand(labels.shape, device=labels.device) * counts).long().clamp_max(counts - 1)
        return self.bank[labels, j], labels * self.bank.shape[1] + j

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", "gpt4image")
        labels = require(batch, "labels", "gpt4image").long()
        if labels.min() < 0 or labels.max() >= self.bank.shape[0]:
            raise DataError(f"gpt4image: labels must lie in [0, {self.bank.shape[0]})")
        f = self.encoder(images)
        logits = self.head(f)
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        text, ids = self.draw_texts(labels)
        z = F.normalize(self.proj(f).float(), dim=-1)
        if self.align == "cosine":
            align = (1 - (z * text).sum(-1)).mean()
        else:
            from fmlab.multimodal.losses import multi_positive_loss

            align = multi_positive_loss(z, text, 1.0 / self.temperature, ids)
        acc = (logits.argmax(1) == labels).float().mean()
        return ce + self.align_weight * align, {"ce": ce.detach(), "align": align.detach(), "acc": acc}

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                          channels: int | None = None):
        """The supervised recipe: pad-4 crop + flip (RRC + flip when ``padding=None``)."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
