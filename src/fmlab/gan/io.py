"""Generators in and out: export and reload a generator, draw images, read fake-image files.

A trained generator is ``generator.safetensors`` plus ``generator.json`` holding the registry
name and the exact keyword arguments, so it is rebuilt with ``create_generator(arch, **kwargs)``
and loaded strictly — no pickles and no code in the file (the peft/open_clip convention).
A foreign checkpoint (the shipped MLP ``G--300.ckpt``) has no JSON; the caller names its
architecture (``arch="mlp"``) and it is read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.gan.nets import create_generator
from fmlab.gan.nets.base import Generator
from fmlab.utils.io import sha256_file, write_json

GENERATOR_WEIGHTS = "generator.safetensors"
GENERATOR_JSON = "generator.json"
RUN_JSON = "run.json"


# ------------------------------------------------------------------------------ export / load


def export_generator(G: torch.nn.Module, spec: dict[str, Any], run_dir: str | os.PathLike,
                     **meta: Any) -> Path:
    """Write ``generator.safetensors`` + ``generator.json`` (arch, kwargs, sha256, ``meta``).

    Args:
        G: the generator to save (its state dict, no code).
        spec: ``{"arch": registry name, "kwargs": constructor arguments}``.
        run_dir: the folder to write both files into.
        **meta: more facts for the JSON (``step``, ``ema``, ...).

    Returns:
        The path of the weights file.

    Examples:
        >>> import tempfile
        >>> from fmlab.gan.nets import create_generator
        >>> spec = {"arch": "mlp", "kwargs": {"z_dim": 4, "hidden": 8, "img_shape": [1, 4, 4]}}
        >>> d = tempfile.mkdtemp()
        >>> export_generator(create_generator(spec["arch"], **spec["kwargs"]), spec, d).name
        'generator.safetensors'
        >>> G, info = load_generator(d)
        >>> info["arch"], G.z_dim, G.training
        ('mlp', 4, False)
    """
    from fmlab.engine.checkpoint import save_weights

    run_dir = Path(run_dir)
    path = save_weights(G, run_dir / GENERATOR_WEIGHTS,
                        metadata={"arch": spec["arch"], "writer": "fmlab.gan"})
    write_json(run_dir / GENERATOR_JSON, {
        "arch": spec["arch"], "kwargs": spec["kwargs"], "weights": path.name,
        "weights_sha256": sha256_file(path), **meta,
    })
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read generator description ({e})") from None
    if not isinstance(info, dict) or "arch" not in info or "kwargs" not in info:
        raise ModelError(f"{path}: not a generator description (needs 'arch' and 'kwargs')")
    return info


def _from_checkpoint(run_dir: Path) -> tuple[Generator, dict[str, Any]]:
    """The EMA (else raw) generator of a run's latest checkpoint, described by ``run.json``."""
    from safetensors.torch import load_file

    from fmlab.engine.checkpoint import latest_checkpoint

    ref = latest_checkpoint(run_dir)
    if ref is None or not (run_dir / RUN_JSON).is_file():
        raise ModelError(f"{run_dir}: no {GENERATOR_JSON} and no checkpoint to sample from")
    info = json.loads((run_dir / RUN_JSON).read_text())["generator"]
    G = create_generator(info["arch"], **info["kwargs"])
    sd = load_file(str(ref.weights))
    prefix = "G_ema.module." if any(k.startswith("G_ema.module.") for k in sd) else "G."
    G.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    return G, {**info, "weights": str(ref.weights), "step": ref.step,
               "ema": prefix.startswith("G_ema")}


def load_generator(path: str | os.PathLike, arch: str | None = None,
                   arch_kwargs: dict[str, Any] | None = None) -> tuple[Generator, dict[str, Any]]:
    """A generator in eval mode and its description, from any of:

    - a run directory (``generator.json`` there, else its latest checkpoint);
    - ``generator.safetensors`` or ``generator.json`` (the other file beside it);
    - any state-dict file with ``arch`` (and optional ``arch_kwargs``), e.g. ``G--300.ckpt``
      with ``arch="mlp"``.

    Args:
        path: the run directory or file.
        arch: the registry name of a bare state dict (must be None for a run directory).
        arch_kwargs: the architecture's constructor arguments for a bare state dict.

    Returns:
        The generator and its description (``arch``, ``kwargs``, ``weights``, and for exports
        ``weights_sha256``; for checkpoints ``step`` and ``ema``). See :func:`export_generator`
        for an example.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"generator not found: {p}")
    if arch is not None:
        if p.is_dir():
            raise ConfigError(f"--arch takes a weights file, but {p} is a directory")
        G = create_generator(arch, weights=p, **(arch_kwargs or {}))
        info = {"arch": arch, "kwargs": arch_kwargs or {}, "weights": str(p),
                "weights_sha256": sha256_file(p)}
    elif p.is_dir():
        if (p / GENERATOR_JSON).is_file():
            return load_generator(p / GENERATOR_JSON)
        G, info = _from_checkpoint(p)
    else:
        js = p if p.suffix == ".json" else p.with_suffix(".json")
        if not js.is_file():
            raise ConfigError(f"{p}: no {js.name} beside it to say which architecture it is; "
                              "pass --arch NAME (e.g. --arch mlp for the MLP G--300.ckpt)")
        info = _read_json(js)
        weights = js.parent / info.get("weights", GENERATOR_WEIGHTS)
        G = create_generator(info["arch"], weights=weights, **info["kwargs"])
        info = {**info, "weights": str(weights)}
    G.eval()
    return G, info


# ------------------------------------------------------------------------------------ images


def parse_labels(text: str | None, n: int, num_classes: int) -> np.ndarray | None:
    """``--labels 3`` or ``--labels 0,1,2`` → (n,) labels, cycling the list; None passes through.

    Args:
        text: the comma list, or None.
        n: the number of labels wanted.
        num_classes: the generator's classes (0: unconditional, labels refused).

    Returns:
        The (n,) int64 labels, or None.

    Examples:
        >>> parse_labels("0,2", 5, num_classes=3).tolist()
        [0, 2, 0, 2, 0]
    """
    if text is None:
        return None
    if num_classes <= 0:
        raise ConfigError("--labels: the generator is unconditional")
    try:
        vals = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--labels: {text!r} is not a comma-separated list of integers") from None
    if not vals or min(vals) < 0 or max(vals) >= num_classes:
        raise ConfigError(f"--labels: {text!r} must name classes in 0..{num_classes - 1}")
    return np.resize(np.asarray(vals, dtype=np.int64), n)


def balanced_labels(n: int, num_classes: int) -> np.ndarray | None:
    """0, 1, …, K−1 repeated: every class gets n/K samples (intra-FID, class recall).

    Args:
        n: the number of labels.
        num_classes: K (0: unconditional).

    Returns:
        The (n,) int64 labels, or None for an unconditional generator.

    Examples:
        >>> balanced_labels(5, 2).tolist()
        [0, 1, 0, 1, 0]
    """
    return None if num_classes <= 0 else np.arange(n, dtype=np.int64) % num_classes


@torch.no_grad()
def generate_images(G: Generator, n: int, seed: int = 0, labels: np.ndarray | None = None,
                    batch_size: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` samples as uint8 (N, H, W) for grey or (N, H, W, 3), and their labels.

    z comes from a CPU ``torch.Generator`` seeded with ``seed``, batch by batch; a conditional G
    without ``labels`` gets :func:`balanced_labels`. Quantised like every fmlab metric input
    (:func:`fmlab.metrics.to_uint8`: round, clip). G runs in eval mode and is restored after.
    The output is allocated once, after checking it fits :func:`fmlab.gan.grid.sample_budget`.

    Args:
        G: the generator.
        n: number of samples (>= 1).
        seed: seed of the latents.
        labels: (n,) class labels for a conditional G (default: balanced).
        batch_size: samples per generator pass (>= 1).

    Returns:
        The uint8 images and the labels used (None for an unconditional G).

    Examples:
        >>> from fmlab.gan.nets import create_generator
        >>> G = create_generator("dcgan", z_dim=8, ch=4, channels=1, img_size=16, num_classes=3)
        >>> images, labels = generate_images(G, 5, seed=0, batch_size=2)
        >>> images.shape, images.dtype, labels.tolist()
        ((5, 16, 16), dtype('uint8'), [0, 1, 2, 0, 1])
        >>> again, _ = generate_images(G, 5, seed=0, batch_size=2)
        >>> bool((again == images).all())  # the same seed gives the same images
        True
    """
    from fmlab.gan.grid import check_sample_bytes
    from fmlab.metrics import to_uint8

    if n < 1:
        raise ConfigError(f"number of samples must be >= 1, got {n}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    c, h, w = G.img_shape
    check_sample_bytes("n", n, G.img_shape, n * c * h * w)
    if labels is None:
        labels = balanced_labels(n, G.num_classes)
    elif G.num_classes <= 0:
        raise ConfigError("labels given but the generator is unconditional")
    gen = torch.Generator().manual_seed(int(seed))
    was_training = G.training
    G.eval()
    images = np.empty((n, h, w, c), dtype=np.uint8)
    try:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            y = None if labels is None else torch.as_tensor(labels[start:start + b]).to(
                G._device())
            x = G(G.sample_z(b, gen), y)
            images[start:start + b] = to_uint8(x.permute(0, 2, 3, 1))
    finally:
        G.train(was_training)
    if c == 1:
        images = images[..., 0]
    return images, labels


def load_fake_npz(path: str | os.PathLike, n: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """``images`` (uint8 N×H×W or N×H×W×C, C ∈ {1, 3}) and optional ``labels`` from an npz.

    Every problem (missing file or key, dtype, shape, label count, negative labels) is a
    DataError naming the file.

    Args:
        path: the npz file.
        n: keep the first n samples (an error when the file holds fewer); None keeps all.

    Returns:
        The images and the int64 labels (None when the file has none).

    Examples:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "fakes.npz")
        >>> np.savez(p, images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 0, 1]))
        >>> images, labels = load_fake_npz(p, n=3)
        >>> images.shape, labels.tolist()
        ((3, 8, 8), [0, 1, 0])
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"fake images file not found: {p}")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{p}: not a readable .npz file ({e})") from None
    with z:
        if "images" not in z.files:
            raise DataError(f"{p}: missing key 'images' (keys: {', '.join(sorted(z.files))})")
        try:
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else None
        except ValueError as e:
            raise DataError(f"{p}: cannot read without pickle ({e})") from None
    if images.dtype != np.uint8:
        raise DataError(f"{p}: 'images' must be uint8, got {images.dtype}")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(f"{p}: 'images' must be N×H×W or N×H×W×C with C in 1/3, got shape "
                        f"{images.shape}")
    if labels is not None:
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{p}: 'labels' must be a 1-D integer array, got {labels.dtype} "
                            f"{labels.shape}")
        if len(labels) != len(images):
            raise DataError(f"{p}: 'labels' has {len(labels)} rows, 'images' {len(images)}")
        if len(labels) and labels.min() < 0:
            raise DataError(f"{p}: 'labels' must be >= 0, got {int(labels.min())}")
        labels = labels.astype(np.int64)
    if n is not None:
        if len(images) < n:
            raise DataError(f"{p}: holds {len(images)} images, fewer than the {n} asked for (--n)")
        images = images[:n]
        labels = None if labels is None else labels[:n]
    if len(images) < 2:
        raise DataError(f"{p}: needs at least 2 images, got {len(images)}")
    return images, labels
