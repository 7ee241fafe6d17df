"""GenDA end to end (``fmlab gan adapt``): adapt a style generator to ONE target image.

Load the source ``style`` generator and its discriminator (run directory or ``--discriminator``),
build the adapted generator (:func:`fmlab.gan.genda.to_genda`: identity adaptor, exact w̄) and
the attribute classifier on the source D's backbone, train with the shared stage trainer
(:func:`fmlab.gan.unlearn.train_stage`: non-saturating loss, R1, DiffAugment on the repeated
target and on the samples, truncated latents in training mode), then measure at ψ = 1:

- likeness / diversity (:func:`fmlab.gan.genda.likeness_diversity`) in ``lenet5_mnist``
  features, for the source and the adapted generator on the same latents;
- precision / recall (PRDC, k = 5) of the samples against the *domain-mapped source samples*
  T(G_source(z)) with T = ``target_domain`` (``invert``/``bold``; ``none``: T = identity) — the
  adapted generator a perfect one-shot method would give, so recall says how much of the
  source's variety survived in the target domain.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.genda import (
    METHODS,
    AttributeClassifier,
    domain_map,
    likeness_diversity,
    set_trainable,
    to_genda,
)
from fmlab.gan.unlearn.train import StageConfig, train_stage
from fmlab.utils.io import jsonable


def _default_stage() -> StageConfig:
    # lr_g is the full fine-tune's rate; the adaptor uses GenDAConfig.lr_adaptor
    return StageConfig(steps=300, batch_size=16, lr_g=2e-4, lr_d=2e-4, r1_lambda=0.1,
                       ema_decay=0.0, diffaug="translation,cutout")


@dataclass
class GenDAConfig:
    generator: str
    target: str
    out: Path
    method: str = "adaptor"          # adaptor (GenDA) | full (fine-tune every G and D weight)
    discriminator: str | None = None
    arch: str | None = None
    arch_kwargs: dict | None = None
    target_domain: str = "none"      # T for the recall reference: none | invert | bold
    train_psi: float = 0.7           # truncation while training (ψ = 1 at test)
    lr_adaptor: float = 2e-3         # Adam rate of the adaptor (a, b)
    stage: StageConfig = field(default_factory=_default_stage)
    n_eval: int = 2000
    n_w_avg: int = 10000
    eval_seed: int = 12345           # the same latents score every generator
    seed: int = 0
    features: str = "lenet5_mnist"
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r}: must be one of {', '.join(METHODS)}")
        domain_map(self.target_domain)
        if not 0.0 < float(self.train_psi) <= 1.0:
            raise ConfigError(f"train_psi must lie in (0, 1], got {self.train_psi}")
        if not float(self.lr_adaptor) > 0:
            raise ConfigError(f"lr_adaptor must be > 0, got {self.lr_adaptor}")
        for k in ("n_eval", "n_w_avg"):
            if int(getattr(self, k)) < 10:
                raise ConfigError(f"{k} must be >= 10, got {getattr(self, k)}")


def read_target(path: str | Path) -> np.ndarray:
    """The target file as a uint8 (H, W) or (H, W, 3) array; read before anything is loaded, so a
    bad ``--target`` is a DataError naming it (no traceback from PIL)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"--target {p}: no such file")
    try:
        with Image.open(p) as im:
            arr = np.array(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"--target {p}: not a readable image ({e})") from None
    return arr


def target_tensor(image: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """The target as G's float (1, C, size, size) input in [-1, 1]."""
    from fmlab.gan.prep import to_gan_input

    return to_gan_input(image[None], channels=channels, size=size)


def _features(extractor, images: np.ndarray) -> np.ndarray:
    return np.asarray(extractor(images), dtype=np.float64)


def evaluate(G, target_u8: np.ndarray, src_u8: np.ndarray, extractor, ref_feats: np.ndarray,
             n: int, seed: int) -> dict[str, Any]:
    """Likeness, diversity, precision and recall of G's ψ = 1 samples (see module docstring),
    and their mean grey level ``intensity`` in [0, 1] — a class-blind domain cue (inversion
    moves it from ≈0.1 to ≈0.9, bold strokes raise it) that LeNet features, trained on digit
    classes, barely register."""
    from fmlab.gan.io import generate_images
    from fmlab.metrics import prdc

    images, _ = generate_images(G, n, seed)
    feats = _features(extractor, images)
    out = likeness_diversity(feats, _features(extractor, target_u8[None])[0])
    pr = prdc(ref_feats, feats, k=5)
    out.update(precision=pr["precision"], recall=pr["recall"],
               intensity=float(images.mean() / 255.0))
    return out


def adapt(cfg: GenDAConfig, G, D, spec: dict[str, Any], target: torch.Tensor):
    """Build, freeze and train the adapted G; returns (G adapted, G at init, logs, counts)."""
    import copy

    A = to_genda(G, spec.get("kwargs") or {}, cfg.train_psi, cfg.n_w_avg, cfg.seed)
    init = copy.deepcopy(A)
    head = AttributeClassifier(D)
    counts = set_trainable(A, head, cfg.method)
    stage = cfg.stage
    if cfg.method == "adaptor":
        stage = dataclasses.replace(stage, lr_g=cfg.lr_adaptor)
    torch.manual_seed(cfg.seed)  # the head's initial weights
    head.psi.reset_parameters()
    logs = train_stage(A, head, target, stage, seed=cfg.seed)
    return A, init, logs, counts


def run_genda(cfg: GenDAConfig) -> dict[str, Any]:
    """Adapt, measure, write OUT/generator.safetensors(+.json), grids and report.json."""
    from fmlab.experiments.gan_eval import make_extractor
    from fmlab.experiments.unlearn import load_nets
    from fmlab.gan import sample_grid
    from fmlab.gan.diffaugment import diff_augment
    from fmlab.gan.grid import tile, to_uint8
    from fmlab.gan.io import export_generator, generate_images
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    image = read_target(cfg.target)
    G, D, info = load_nets(cfg)  # type: ignore[arg-type]  # duck-typed: the same four fields
    target = target_tensor(image, G.img_shape[0], G.img_shape[1])
    extractor = make_extractor(cfg.features, None, cfg.data_root)
    A, init, logs, counts = adapt(cfg, G, D, info, target)

    target_u8 = to_uint8(target)[0][..., 0] if G.img_shape[0] == 1 else to_uint8(target)[0]
    src_u8, _ = generate_images(init, cfg.n_eval, cfg.eval_seed)
    mapped = domain_map(cfg.target_domain)
    ref_u8 = mapped(src_u8) if mapped else src_u8
    ref_feats = _features(extractor, ref_u8)
    metrics = {name: evaluate(g, target_u8, src_u8, extractor, ref_feats, cfg.n_eval,
                              cfg.eval_seed) for name, g in (("source", init), ("adapted", A))}

    out = Path(cfg.out)
    spec = {"arch": "style_genda", "kwargs": {**(info.get("kwargs") or {}),
                                              "train_psi": cfg.train_psi}}
    spec["kwargs"].pop("w_avg_beta", None)
    export_generator(A, spec, out, writer="fmlab.experiments.genda", method=cfg.method,
                     source_generator=str(cfg.generator), target=str(cfg.target))
    sample_grid(init, 64, out / "samples_source.png", seed=cfg.seed, nrow=8)
    sample_grid(A, 64, out / "samples_adapted.png", seed=cfg.seed, nrow=8)
    views = diff_augment(target.repeat(16, 1, 1, 1), cfg.stage.diffaug,
                         torch.Generator().manual_seed(cfg.seed)) if cfg.stage.diffaug else target
    _write_png(tile(to_uint8(views), 8), out / "target_views.png")
    report = {
        "config": jsonable(asdict(cfg)),
        "generator": {k: info.get(k) for k in ("arch", "kwargs", "weights", "weights_sha256")},
        "trainable": counts, "metrics": metrics, "logs": logs,
        "reference_intensity": {"target": float(target_u8.mean() / 255.0),
                                "mapped_source": float(ref_u8.mean() / 255.0)},
        "protocol": {"features": extractor.protocol, "psi_test": 1.0, "n": cfg.n_eval,
                     "z_seed": cfg.eval_seed, "recall_reference": f"{cfg.target_domain}"
                     "(source samples), same z", "prdc_k": 5},
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
    }
    write_json(out / "report.json", report)
    return report


def _write_png(grid: np.ndarray, path: Path) -> None:
    from PIL import Image

    from fmlab.utils.io import atomic_write

    with atomic_write(path, "wb") as f:
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(f, format="PNG")
