"""Data, model files and sample files of ``fmlab diffusion``.

A run exports ``model.safetensors`` (the UNet's tensors) and ``model.json`` (everything needed to
rebuild it: layer kind, width, KIND components, classes, schedule), so ``fmlab diffusion sample``
and later transfers need no config. Samples go to a PNG grid and, optionally, to the npz that
``fmlab gan eval --fake-images`` reads (uint8 ``images`` N×28×28 and ``labels`` as the ORIGINAL
class ids of the data split, so ``ifid``/``class_recall`` compare with the right real digits).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fmlab.diffusion.sample import sample
from fmlab.diffusion.schedule import NoiseSchedule
from fmlab.diffusion.unet import LayerFactory, UNet
from fmlab.engine import checkpoint as ckpt
from fmlab.errors import ConfigError, DataError
from fmlab.experiments.diffusion_config import DiffusionDataConfig
from fmlab.experiments.gan_data import GANTrainData
from fmlab.gan.grid import check_grid_size, tile, to_uint8
from fmlab.utils.io import atomic_write, write_json

MODEL_FILE, MODEL_JSON = "model.safetensors", "model.json"


def load_class_data(cfg: DiffusionDataConfig) -> GANTrainData:
    """The images of ``cfg.classes`` (relabelled 0..K−1 in that order) as an engine source.

    Args:
        cfg: the ``data`` section.

    Returns:
        A :class:`GANTrainData` that yields float (B, 1, 28, 28) in [-1, 1] and labels.
    """
    from fmlab.data import open_source

    split = open_source(cfg.source, cfg.data_root).split(cfg.split)
    if split.labels is None:
        raise DataError(f"{cfg.source}:{cfg.split} has no labels (data.classes needs them)")
    labels = np.asarray(split.labels, dtype=np.int64)
    missing = [c for c in cfg.classes if not (labels == c).any()]
    if missing:
        raise ConfigError(f"data.classes: {cfg.source}:{cfg.split} has no images of class(es) "
                          f"{missing}")
    idx = np.flatnonzero(np.isin(labels, cfg.classes))
    if cfg.limit:
        idx = idx[:cfg.limit]
    remap = {c: i for i, c in enumerate(cfg.classes)}
    names = split.class_names or [str(c) for c in range(int(labels.max()) + 1)]
    return GANTrainData(images=np.asarray(split.get_batch(idx)),
                        labels=np.array([remap[int(v)] for v in labels[idx]], dtype=np.int64),
                        indices=idx, class_names=[str(names[c]) for c in cfg.classes],
                        content_hash=split.content_hash, origin=f"{cfg.source}:{cfg.split}",
                        channels=1, img_size=28)


def build_unet(meta: dict[str, Any]) -> UNet:
    """The UNet described by a ``model.json`` dict (weights untouched)."""
    f = LayerFactory(meta["layers"], meta["learngenes"], meta["tailors"], len(meta["classes"]))
    return UNet(f, ch=meta["ch"])


def save_model(net: UNet, run_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``model.json`` (atomically) into ``run_dir``."""
    path = ckpt.save_weights(net, run_dir / MODEL_FILE)
    write_json(run_dir / MODEL_JSON, meta)
    return path


def load_model(path: str | os.PathLike) -> tuple[UNet, dict[str, Any]]:
    """A run directory (or its ``model.json``) → the UNet in eval mode and its description.

    Raises:
        DataError: a missing or malformed file, or weights that do not fit the description.
    """
    p = Path(path)
    run = p.parent if p.suffix == ".json" else p
    meta_path = run / MODEL_JSON
    if not meta_path.is_file():
        raise DataError(f"{run}: no {MODEL_JSON} (not a finished diffusion run)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        net = build_unet(meta)
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path}: malformed model description ({e})") from None
    from safetensors.torch import load_file

    try:
        state = load_file(str(run / MODEL_FILE))
        net.load_state_dict(state)
    except (OSError, RuntimeError) as e:
        raise DataError(f"{run / MODEL_FILE}: cannot load ({e})") from None
    return net.eval(), meta


def parse_labels(text: str | None, n: int, num_classes: int) -> torch.Tensor:
    """``--labels 3`` / ``0,1,2`` cycled to n; default 0..K−1 repeated (model-internal classes).

    Examples:
        >>> parse_labels(None, 5, 2).tolist(), parse_labels("1", 3, 2).tolist()
        ([0, 1, 0, 1, 0], [1, 1, 1])
    """
    if text is None:
        return torch.arange(n) % num_classes
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--labels: {text!r} is not a comma list of integers") from None
    bad = [v for v in vals if not 0 <= v < num_classes]
    if not vals or bad:
        raise ConfigError(f"--labels: {text!r}: classes must lie in 0..{num_classes - 1}")
    return torch.tensor(vals * (n // len(vals) + 1))[:n]


def write_samples(net: UNet, meta: dict[str, Any], n: int, png: str | os.PathLike | None,
                  npz: str | os.PathLike | None = None, labels: torch.Tensor | None = None,
                  *, sampler: str = "ddim", steps: int = 20, guidance: float = 0.0,
                  seed: int = 0, batch_size: int = 250) -> np.ndarray:
    """Sample ``n`` images (one class per grid column), write the PNG grid and/or the npz.

    Returns:
        The uint8 images (n, 28, 28).
    """
    k = len(meta["classes"])
    check_grid_size(n, (1, 28, 28), k, key="--n")
    labels = parse_labels(None, n, k) if labels is None else labels
    sch = NoiseSchedule(meta["schedule"], meta["steps"])
    out = [to_uint8(sample(net, sch, labels[i:i + batch_size], sampler=sampler, steps=steps,
                           guidance=guidance, seed=seed + i))
           for i in range(0, n, batch_size)]
    images = np.concatenate(out)                      # (n, 28, 28, 1)
    if png is not None:
        grid = tile(images, k)
        with atomic_write(png, "wb") as f:
            Image.fromarray(grid[..., 0]).save(f, format="PNG")
    if npz is not None:
        orig = np.asarray(meta["classes"], dtype=np.int64)[labels.numpy()]
        buf = io.BytesIO()
        np.savez(buf, images=images[..., 0], labels=orig)
        with atomic_write(npz, "wb") as f:
            f.write(buf.getvalue())
    return images[..., 0]
