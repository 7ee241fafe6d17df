"""Translators in and out: export a trained pair, reload a direction, translate image tensors.

A run directory holds ``translator.safetensors`` (A→B), ``translator_ba.safetensors`` (B→A) and
``translator.json`` with the constructor arguments of :class:`~fmlab.translate.nets.ResnetGenerator`,
the training image side and channels, and both files' sha256 — no pickles, strict loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import DataError, ModelError
from fmlab.translate.nets import ResnetGenerator
from fmlab.utils.io import sha256_file, write_json
from fmlab.utils.validation import positive_int

TRANSLATOR_JSON = "translator.json"
WEIGHTS = {"ab": "translator.safetensors", "ba": "translator_ba.safetensors"}


def export_translator(g_ab: nn.Module, g_ba: nn.Module, spec: dict[str, Any],
                      run_dir: str | os.PathLike, **meta: Any) -> Path:
    """Write both generators and ``translator.json`` (``spec`` + sha256s + ``meta``) into ``run_dir``.

    Args:
        g_ab: generator A→B.
        g_ba: generator B→A.
        spec: ``{"kwargs": ResnetGenerator arguments, "img_size": int, "channels": int}``.
        run_dir: the folder.
        **meta: more facts for the JSON (``step``, data specs ...).

    Returns:
        The path of the JSON file.
    """
    from fmlab.engine.checkpoint import save_weights

    run_dir = Path(run_dir)
    shas = {}
    for key, g in (("ab", g_ab), ("ba", g_ba)):
        path = save_weights(g, run_dir / WEIGHTS[key], metadata={"writer": "fmlab.translate"})
        shas[key] = sha256_file(path)
    write_json(run_dir / TRANSLATOR_JSON, {"arch": "resnet", **spec, "weights": dict(WEIGHTS),
                                           "weights_sha256": shas, **meta})
    return run_dir / TRANSLATOR_JSON


def read_translator_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The description of an exported translator (``translator.json``) of ``run_dir``."""
    p = Path(run_dir).expanduser()
    js = p if p.suffix == ".json" else p / TRANSLATOR_JSON
    if not js.is_file():
        raise ModelError(f"{p}: no {TRANSLATOR_JSON}; train one with `fmlab translate train`")
    try:
        info = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{js}: cannot read translator description ({e})") from None
    if not isinstance(info, dict) or not {"kwargs", "img_size", "weights"} <= set(info):
        raise ModelError(f"{js}: not a translator description (needs kwargs, img_size, weights)")
    return info


def load_translator(run_dir: str | os.PathLike, direction: str = "ab") -> nn.Module:
    """The A→B (or, with ``direction="ba"``, B→A) generator of a run, in eval mode.

    The module carries ``img_size`` and ``channels`` (what it was trained on) as attributes, which
    :func:`translate_images` uses.

    Raises:
        ModelError: no export, a weights file missing or not matching the description.
    """
    from safetensors.torch import load_file

    if direction not in WEIGHTS:
        raise ModelError(f"direction must be one of {', '.join(WEIGHTS)}, got {direction!r}")
    info = read_translator_json(run_dir)
    base = Path(run_dir).expanduser()
    base = base.parent if base.suffix == ".json" else base
    weights = base / info["weights"][direction]
    if not weights.is_file():
        raise ModelError(f"{weights}: translator weights missing")
    g = ResnetGenerator(**info["kwargs"])
    try:
        g.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as e:
        raise ModelError(f"{weights}: does not fit {TRANSLATOR_JSON} ({str(e)[:200]})") from None
    g.img_size, g.channels = int(info["img_size"]), int(info["kwargs"].get("in_channels", 1))
    return g.eval()


@torch.no_grad()
def translate_images(translator: nn.Module, images: torch.Tensor, batch_size: int = 256
                     ) -> torch.Tensor:
    """Translate float images (N, C, H, W) in [0, 1]; returns the same shape and range.

    Images are resized to the translator's training side (``translator.img_size``) and back, so
    28 px MNIST-like inputs work with a translator trained at 32 px; the channel count must match.

    Examples:
        >>> from fmlab.translate.nets import ResnetGenerator
        >>> g = ResnetGenerator(1, ngf=4, n_blocks=1).eval()
        >>> translate_images(g, torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 1, 28, 28])
    """
    positive_int("batch_size", batch_size)
    if images.dim() != 4 or not images.is_floating_point():
        raise DataError(f"translate_images takes float (N, C, H, W) in [0, 1], got "
                        f"{images.dtype} {tuple(images.shape)}")
    want_c = getattr(translator, "channels", None) or getattr(translator, "in_channels", None)
    if want_c is not None and images.shape[1] != want_c:
        raise DataError(f"the translator takes {want_c}-channel images, got {images.shape[1]}")
    size = getattr(translator, "img_size", None)
    h, w = images.shape[-2:]
    dev = next(translator.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size].to(dev, torch.float32) * 2.0 - 1.0
        if size and (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        y = translator(x)
        if size and (h, w) != (size, size):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True)
        out.append(((y.clamp(-1, 1) + 1.0) / 2.0).to(images.device, images.dtype))
    if not out:
        return images.clone()
    return torch.cat(out)
