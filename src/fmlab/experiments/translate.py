"""``fmlab translate train | apply``: a CycleGAN-style translator trained by the engine's Trainer.

This module composes: it loads both domains (:func:`fmlab.translate.data.load_domain`), builds
G, F, D_a, D_b from the ``model`` section, wraps them in
:class:`~fmlab.translate.objective.CycleGANObjective` and hands that to
:class:`fmlab.engine.Trainer` (loop, seeding, both optimisers and their schedules, checkpoints,
resume, CPU budget). After the fit it exports the pair (:func:`fmlab.translate.io.export_translator`)
and writes ``samples.png``: rows of A, G(A), F(G(A)), then B, F(B), G(F(B)).

Run directory::

    config.yaml  metrics.jsonl  checkpoints/  samples.png
    translator.safetensors  translator_ba.safetensors  translator.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.callbacks import CPUBudget
from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.engine.data import mix_seed
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError
from fmlab.translate.data import UnpairedSource, load_domain, read_x_npz
from fmlab.translate.io import export_translator, load_translator, translate_images
from fmlab.translate.nets import PatchDiscriminator, ResnetGenerator
from fmlab.translate.objective import CycleGANObjective, TranslateLossConfig
from fmlab.utils.validation import check


@dataclass
class TranslateDataConfig:
    """The two domains: any ``open_source`` spec (with a split) or a plain ``.npz`` with ``x``."""

    a: str = "fontdigits?n_train=5000"
    a_split: str = "train"
    a_limit: int = 0              # first M images of A (0: all)
    b: str = "mnist"
    b_split: str = "train"
    b_limit: int = 5000
    data_root: str | None = None  # default: $FMLAB_DATA
    channels: int = 1             # both domains are converted to this (grey <-> RGB)
    img_size: int = 28            # and resized to this side

    def validate(self, prefix: str = "data") -> None:
        check(self.channels in (1, 3), f"{prefix}.channels", self.channels, "must be 1 or 3")
        check(8 <= self.img_size <= 256, f"{prefix}.img_size", self.img_size, "must lie in [8, 256]")
        check(self.a_limit >= 0, f"{prefix}.a_limit", self.a_limit, "must be >= 0")
        check(self.b_limit >= 0, f"{prefix}.b_limit", self.b_limit, "must be >= 0")


@dataclass
class TranslateModelConfig:
    """Generator and discriminator sizes (:mod:`fmlab.translate.nets`)."""

    ngf: int = 16
    n_blocks: int = 3
    n_down: int = 2
    ndf: int = 16
    d_layers: int = 2

    def validate(self, prefix: str = "model") -> None:
        for k in ("ngf", "ndf", "d_layers"):
            check(getattr(self, k) >= 1, f"{prefix}.{k}", getattr(self, k), "must be >= 1")
        check(self.n_blocks >= 0, f"{prefix}.n_blocks", self.n_blocks, "must be >= 0")
        check(0 <= self.n_down <= 4, f"{prefix}.n_down", self.n_down, "must lie in [0, 4]")


def _adam() -> OptimConfig:
    return OptimConfig(name="adamw", lr=2e-4, betas=(0.5, 0.999), weight_decay=0.0)


@dataclass
class TranslateConfig:
    """One translator experiment (see ``configs/translate/*.yaml``)."""

    name: str = "translate"
    data: TranslateDataConfig = field(default_factory=TranslateDataConfig)
    model: TranslateModelConfig = field(default_factory=TranslateModelConfig)
    loss: TranslateLossConfig = field(default_factory=TranslateLossConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        batch_size=16, log_every=50, max_steps=1000))
    optim_g: OptimConfig = field(default_factory=_adam)
    optim_d: OptimConfig = field(default_factory=_adam)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="constant"))
    cpu_minutes: float = 0.0      # stop once training steps used this much process CPU (0: off)

    def validate(self) -> None:
        t = self.trainer
        check(t.accumulate == 1, "trainer.accumulate", t.accumulate,
              "must be 1: a translator step is one G and one D update on one batch")
        check(t.grad_clip == 0, "trainer.grad_clip", t.grad_clip,
              "is not supported by the two-optimiser loop")
        check(self.cpu_minutes >= 0, "cpu_minutes", self.cpu_minutes, "must be >= 0")


def load_translate_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
                          ) -> TranslateConfig:
    """Read a translate experiment YAML (or the defaults) with ``--set`` overrides, validated."""
    return load_config(path, TranslateConfig, overrides)


@dataclass
class TranslateRunResult:
    """What :func:`train_translator` returns (``fmlab translate train`` prints it)."""

    run_dir: Path
    step: int
    max_steps: int
    resumed_from: int | None
    train_cpu_s: float
    stopped_by_budget: bool
    last_logs: dict[str, float]


def build_objective(cfg: TranslateConfig) -> tuple[CycleGANObjective, dict]:
    """The objective (initial weights a function of ``trainer.seed``) and the generator spec."""
    m, c = cfg.model, cfg.data.channels
    kwargs = {"in_channels": c, "out_channels": c, "ngf": m.ngf, "n_blocks": m.n_blocks,
              "n_down": m.n_down}
    torch.default_generator.manual_seed(mix_seed(cfg.trainer.seed, -1))
    obj = CycleGANObjective(ResnetGenerator(**kwargs), ResnetGenerator(**kwargs),
                            PatchDiscriminator(c, m.ndf, m.d_layers),
                            PatchDiscriminator(c, m.ndf, m.d_layers), cfg.loss)
    return obj, {"kwargs": kwargs, "img_size": cfg.data.img_size, "channels": c}


def load_unpaired(cfg: TranslateConfig) -> UnpairedSource:
    """Both domains in memory as the engine's training source."""
    d = cfg.data
    a, _ = load_domain(d.a, d.a_split, d.a_limit, d.data_root)
    b, _ = load_domain(d.b, d.b_split, d.b_limit, d.data_root)
    if len(a) < cfg.trainer.batch_size:
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} is larger than domain A "
                          f"({len(a)} images)")
    return UnpairedSource(a, b, d.channels, d.img_size)


def write_samples(obj: CycleGANObjective, src: UnpairedSource, path: Path, n: int = 12) -> None:
    """PNG rows: A, G(A), F(G(A)), B, F(B), G(F(B)) for the first ``n`` images of each domain."""
    from PIL import Image

    from fmlab.gan.grid import tile, to_uint8
    from fmlab.utils.io import atomic_write

    n = min(n, len(src.a), len(src.b))
    batch = UnpairedSource(src.a[:n], src.b[:n], src.channels, src.img_size)
    a = batch.get_batch(np.arange(n))["a"]
    b = UnpairedSource(src.b[:n], src.b[:n], src.channels, src.img_size).get_batch(np.arange(n))["a"]
    g_ab, g_ba = obj.G["ab"].eval(), obj.G["ba"].eval()
    with torch.no_grad():
        fb, fa = g_ab(a), g_ba(b)
        rows = [a, fb, g_ba(fb), b, fa, g_ab(fa)]
    grid = tile(np.concatenate([to_uint8(r) for r in rows]), n)
    with atomic_write(path, "wb") as f:
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(f, format="PNG")


def train_translator(cfg: TranslateConfig, run_dir: str | os.PathLike, resume: bool = False
                     ) -> TranslateRunResult:
    """Train the translator of ``cfg`` into ``run_dir`` and export it (see the module docstring).

    Args:
        cfg: the experiment.
        run_dir: the run directory.
        resume: continue the run in ``run_dir`` from its latest checkpoint.
    """
    run_dir = Path(run_dir)
    if not resume and ckpt.latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue "
                          "it, or choose a new --out")
    src = load_unpaired(cfg)
    obj, spec = build_objective(cfg)
    budget = CPUBudget(cfg.cpu_minutes)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(obj, src, cfg.trainer, {"g": cfg.optim_g, "d": cfg.optim_d}, cfg.schedule,
                      run_dir=run_dir, callbacks=[budget], config=cfg)
    res = trainer.fit(resume=run_dir if resume else None)
    if trainer.is_main:
        export_translator(obj.G["ab"], obj.G["ba"], spec, run_dir, step=res.step,
                          a=cfg.data.a, b=cfg.data.b, name=cfg.name)
        write_samples(obj, src, run_dir / "samples.png")
    last = res.history[-1]["logs"] if res.history else {}
    return TranslateRunResult(run_dir, res.step, res.max_steps, res.resumed_from, budget.used_s,
                              res.stopped_early, dict(last))


def apply_translator(model: str | os.PathLike, input_npz: str | os.PathLike,
                     output_npz: str | os.PathLike, direction: str = "ab",
                     batch_size: int = 256) -> int:
    """Translate the ``x`` images of ``input_npz`` into ``output_npz`` (other arrays copied).

    Returns:
        The number of images written.
    """
    from fmlab.utils.io import atomic_path

    arrays = read_x_npz(input_npz)
    g = load_translator(model, direction)
    x = arrays["x"]
    t = torch.from_numpy(x if x.ndim == 4 else x[..., None]).permute(0, 3, 1, 2).float() / 255.0
    y = translate_images(g, t, batch_size)
    out = (y * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    arrays["x"] = out if x.ndim == 4 else out[..., 0]
    with atomic_path(output_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return len(x)
