"""Per-layer attention NMI of a ViT encoder (UNIP's diagnostic, papers.md 34) behind
``fmlab inspect attention-nmi``: which layers attend locally, globally or in between.

Each block's attention maps on ``n`` images of a split are scored with
:func:`fmlab.metrics.attention.attention_nmi`; the table holds, per layer, the mean over images
and heads, the spread over heads, and each head's mean. Prefix tokens (``[CLS]``) are part of the
maps, as in the ViT itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmlab.errors import ConfigError

__all__ = ["layer_nmi", "load_vit_encoder", "plot_layer_nmi", "write_layer_nmi"]


def load_vit_encoder(ref: str | Path) -> Any:
    """A ViT ``Backbone`` from a pre-training run folder (``encoder.safetensors`` + ``encoder.json``)
    or a bare registry name (a random init, seed 0).

    Raises:
        ConfigError: the run has no export, or its encoder is not a ViT.
    """
    import json

    from fmlab.models import create_backbone
    from fmlab.models.vit import VisionTransformer

    path = Path(ref)
    if path.is_dir():
        meta = path / "encoder.json"
        if not meta.is_file():
            raise ConfigError(f"--encoder {ref}: no encoder.json (not an fmlab pretrain run folder)")
        rec = json.loads(meta.read_text())
        bb = create_backbone(rec["architecture"], weights=path / "encoder.safetensors", **rec.get("kwargs", {}))
    else:
        bb = create_backbone(str(ref), seed=0)
    if not isinstance(bb.trunk, VisionTransformer):
        raise ConfigError(f"--encoder {ref}: attention NMI needs a ViT encoder, got {type(bb.trunk).__name__}")
    return bb


def layer_nmi(bb: Any, images: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """Per-layer NMI of ``bb``'s attention on uint8 ``images``.

    Returns:
        ``{"layers": [{"layer", "nmi_mean", "nmi_head_std", "per_head"}], "n_images": N}``.
    """
    import torch

    from fmlab.metrics.attention import attention_nmi
    from fmlab.models.vit import attention_maps

    if len(images) == 0:
        raise ConfigError("attention NMI needs at least one image")
    bb.eval()
    sums: list[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        x = bb.preprocess(torch.as_tensor(images[start:start + batch_size]))
        with torch.no_grad():
            per_layer = [attention_nmi(a).sum(0) for a in attention_maps(bb.trunk, x)]  # (heads,)
        sums = per_layer if not sums else [s + p for s, p in zip(sums, per_layer)]
    layers = []
    for i, s in enumerate(sums):
        heads = (s / len(images)).tolist()
        layers.append({"layer": i, "nmi_mean": float(np.mean(heads)), "nmi_head_std": float(np.std(heads)),
                       "per_head": heads})
    return {"layers": layers, "n_images": int(len(images))}


def plot_layer_nmi(table: dict[str, Any], path: Path, title: str) -> Path:
    """NMI against depth, heads as dots and their mean as a line (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for row in table["layers"]:
        ax.scatter([row["layer"] + 1] * len(row["per_head"]), row["per_head"], s=12, color="tab:gray")
    ax.plot([r["layer"] + 1 for r in table["layers"]], [r["nmi_mean"] for r in table["layers"]],
            "o-", color="tab:blue", label="mean over heads")
    ax.set_xticks([r["layer"] + 1 for r in table["layers"]])
    ax.set_xlabel("layer")
    ax.set_ylabel("attention NMI (1 local, 0 global)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_layer_nmi(encoder: str, source: str, split: str, n: int, out: Path,
                    data_root: str | None = None) -> dict[str, Any]:
    """Compute the table and write ``attention_nmi.json`` and ``attention_nmi.png`` into ``out``."""
    from fmlab.data import open_source
    from fmlab.utils.io import write_json

    bb = load_vit_encoder(encoder)
    sp = open_source(source, data_root).split(split)
    images = sp.decode(np.arange(min(n, len(sp))))
    table = layer_nmi(bb, images) | {"encoder": str(encoder), "data": f"{source}:{split}"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "attention_nmi.json", table)
    plot_layer_nmi(table, out / "attention_nmi.png", f"{encoder} on {source}:{split} ({table['n_images']} images)")
    return table
