"""Class semantic vectors: MiniLM sentence embeddings of class descriptions (or of class names).

ZSL papers condition on hand-annotated attributes (CUB's 312); offline we have none, so a class
is described in words and embedded by the frozen all-MiniLM-L6-v2 encoder: each description is
embedded and L2-normalised, a class's vector is the normalised mean of its descriptions'.
``descriptions: auto`` uses the file shipped for a named source
(``fmlab/assets/descriptions/<source>.json``: hand-written, CIFAR-10 and EuroSAT) and falls back
to the prompt "a photo of a {class}." when there is none; ``templates`` forces the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F


def shipped_descriptions(source: str) -> Path | None:
    """The descriptions file shipped for the named source ``source``, or None."""
    if ":" in source:  # npz:, folder: ... are not named datasets
        return None
    path = Path(str(files("fmlab") / "assets" / "descriptions" / f"{source}.json"))
    return path if path.is_file() else None


def resolve_descriptions(spec: str, source: str) -> tuple[dict[str, list[str]] | None, str]:
    """``(descriptions or None for the prompt, what was used)`` for ``semantics.descriptions``.

    Args:
        spec: ``auto``, ``templates`` or the path of a ``{class: [descriptions]}`` JSON file.
        source: the source spec (``auto`` looks for its shipped file).
    """
    from fmlab.pretrain.gpt4image import load_descriptions

    if spec == "templates":
        return None, "templates"
    path = shipped_descriptions(source) if spec == "auto" else Path(spec)
    if path is None:
        return None, "templates"
    return load_descriptions(path), str(path.name if spec == "auto" else path)


def class_semantics(class_names: Sequence[str], descriptions: dict[str, list[str]] | None,
                    text_encoder: str = "text:minilm") -> torch.Tensor:
    """(K, S) unit semantic vectors, one per class in ``class_names`` order.

    Raises:
        ConfigError: a class has no descriptions in ``descriptions``.
    """
    from fmlab.models.text import create_text_encoder
    from fmlab.pretrain.gpt4image import description_bank

    enc = create_text_encoder(text_encoder)
    bank, counts = description_bank(descriptions, class_names, enc.encode)
    mean = bank.sum(1) / counts[:, None].float()  # padding rows are zero
    return F.normalize(mean, dim=1)


def center_semantics(semantics: torch.Tensor, seen: Sequence[int]) -> torch.Tensor:
    """Subtract the seen classes' mean vector and re-normalise: (K, S) unit rows.

    Sentence embeddings of descriptions of one domain share a large common direction (MiniLM
    cosines between CIFAR-10 class vectors are mostly 0.2-0.5), so the part that tells classes
    apart is a small difference on top of it; centring makes it the whole vector, for G's
    conditioning and for the ridge targets alike. Only seen classes set the mean.

    Examples:
        >>> s = center_semantics(torch.tensor([[1.0, 1.0], [1.0, -1.0], [3.0, 0.0]]), [0, 1])
        >>> [round(v, 4) for v in s[0].tolist()], [round(v, 4) for v in s[2].tolist()]
        ([0.0, 1.0], [1.0, 0.0])
    """
    sem = F.normalize(semantics.float(), dim=1)
    return F.normalize(sem - sem[list(seen)].mean(0), dim=1)
