"""``fmlab gan train`` with ``data.conditioning: caption``: GAN-CLS / T2I-SupCon / GALIP runs.

The same composition as :class:`~fmlab.experiments.gan.GANTrainer` (engine Trainer, CPU budget,
hooks, exact resume), with a captioned data source (:mod:`~fmlab.experiments.textgan_data`),
caption-wrapped nets, :class:`~fmlab.gan.text_objective.TextGANObjective`, and hooks whose grids
are caption sheets and whose evaluations add text-image consistency
(:mod:`~fmlab.experiments.textgan_eval`). The exported generator carries the training binner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fmlab.engine.callbacks import CPUBudget
from fmlab.engine.config import config_to_dict
from fmlab.engine.data import mix_seed
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError
from fmlab.experiments.gan import RUN_DB, GANTrainer
from fmlab.experiments.gan_config import GANConfig
from fmlab.experiments.gan_hooks import GANRunHooks
from fmlab.experiments.gan_io import net_specs
from fmlab.experiments.textgan_data import CaptionSet, CaptionTrainData, load_caption_data
from fmlab.experiments.textgan_eval import eval_captions, evaluate_caption_generator
from fmlab.gan import EMA, create_discriminator, create_generator
from fmlab.gan.caption_cond import CaptionDiscriminator, CaptionGenerator
from fmlab.gan.caption_io import caption_sheet, export_caption_generator, generate_from_embeddings
from fmlab.gan.galip import AlignedImageEncoder, fit_ridge_map
from fmlab.gan.nets.vae_tower import VAEEncoderTower
from fmlab.gan.text_objective import TextGANObjective

__all__ = ["TextGANTrainer", "build_caption_nets", "fit_image_encoder"]

SHEET_CLASSES = 10  # the caption sheet shows one held-out caption per digit


def build_caption_nets(cfg: GANConfig, e_dim: int
                       ) -> tuple[CaptionGenerator, CaptionDiscriminator, dict, dict]:
    """Unconditional registry nets (G's z_dim grown by c_dim) wrapped for captions."""
    g_spec, d_spec = net_specs(cfg, 0)
    if "z_dim" not in g_spec["kwargs"]:
        raise ConfigError(f"model.generator: {g_spec['arch']!r} takes no z_dim; a caption "
                          "generator feeds [z; c(e)] through it")
    c_dim = cfg.caption.c_dim
    g_spec["kwargs"]["z_dim"] = int(g_spec["kwargs"]["z_dim"]) + c_dim
    G = CaptionGenerator(create_generator(g_spec["arch"], **g_spec["kwargs"]), e_dim, c_dim)
    D = CaptionDiscriminator(create_discriminator(d_spec["arch"], **d_spec["kwargs"]), e_dim,
                             c_dim)
    return G, D, g_spec, d_spec


def fit_image_encoder(data: CaptionTrainData, n: int, ridge: float) -> AlignedImageEncoder:
    """GALIP's image side: the pre-trained VAE tower + a ridge map to the caption space, fitted
    on the first ``n`` training images and their own captions, then frozen."""
    tower = VAEEncoderTower().load_pretrained()
    idx = torch.arange(min(n, len(data))).numpy()
    feats = []
    with torch.no_grad():
        for i in range(0, len(idx), 2000):
            feats.append(tower.features(data.get_batch(idx[i:i + 2000])["images"]))
    emb = torch.from_numpy(data.captions.emb[idx])
    return AlignedImageEncoder(tower, fit_ridge_map(torch.cat(feats), emb, ridge))


class TextGANRunHooks(GANRunHooks):
    """:class:`GANRunHooks` for a caption generator: caption sheets, consistency metrics, and a
    ``generator.json`` with the caption block."""

    def eval_context(self) -> tuple[Any, Any]:
        ref, ext = super().eval_context()
        if not hasattr(self, "_caps"):
            self._caps: CaptionSet = eval_captions(ref, self.cfg.eval.n, self.data.binner,
                                                   self.cfg.caption.template_seed,
                                                   self.cfg.caption.encoder)
        return ref, ext

    def sheet_captions(self) -> tuple[list[str], Any]:
        """One held-out caption per class (the first of each), for the run's sheets."""
        self.eval_context()
        caps = self._caps
        first = [int((caps.labels == k).argmax()) for k in range(SHEET_CLASSES)
                 if (caps.labels == k).any()]
        return [caps.captions[i] for i in first], caps.emb[first]

    def write_grid(self, trainer: Any) -> None:
        self.last_grid = trainer.step
        if not trainer.is_main:
            return
        texts, emb = self.sheet_captions()
        k = max(1, self.cfg.samples.n // max(1, len(texts)))
        images = generate_from_embeddings(self.G_eval, emb.repeat(k, axis=0), self.cfg.samples.seed)
        caption_sheet(images, texts, k, self.run_dir / "samples" / f"step_{trainer.step:06d}.png")

    def evaluate(self, step: int) -> dict[str, Any]:
        import time

        e = self.cfg.eval
        ref, ext = self.eval_context()
        t0 = time.perf_counter()
        metrics = [m for m in e.metrics if m in ("fid", "kid", "is", "prdc")]
        res = evaluate_caption_generator(self.G_eval, self._caps, self.data.binner, ref, ext,
                                         metrics or ["fid"], e.seed, e.batch_size)
        res["protocol"]["generator"] = {**self.g_spec, "step": step, "run_dir": str(self.run_dir)}
        return self.store_eval(res, step, t0)

    def export(self, step: int) -> Path:
        G = self.G_eval
        c = self.cfg.caption
        return export_caption_generator(
            G, self.g_spec, run_dir=self.run_dir,
            caption={"encoder": c.encoder, "template_seed": c.template_seed,
                     "binner": {k: list(v) for k, v in self.data.binner.edges.items()}},
            ema=G is not self.objective.G, step=step, z_dim=int(G.z_dim),
            img_shape=list(G.img_shape), config=config_to_dict(self.cfg))


class TextGANTrainer(GANTrainer):
    """:class:`GANTrainer` for ``data.conditioning: caption`` (same ``fit``)."""

    def __init__(self, cfg: GANConfig, run_dir: str | os.PathLike,
                 data: CaptionTrainData | None = None,
                 db: str | os.PathLike | None = RUN_DB) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data = data if data is not None else load_caption_data(cfg.data, cfg.caption)
        t = cfg.trainer
        if len(self.data) < max(2, t.batch_size):
            raise ConfigError(f"trainer.batch_size: {t.batch_size} is larger than the "
                              f"{len(self.data)} training images (or below 2)")
        self.num_classes = 0
        torch.default_generator.manual_seed(mix_seed(t.seed, -1))
        G, D, g_spec, d_spec = build_caption_nets(cfg, self.data.e_dim)
        ema = EMA(G, cfg.ema.decay, cfg.ema.start_step) if cfg.ema.enabled else None
        enc = (fit_image_encoder(self.data, cfg.caption.align_n, cfg.caption.align_ridge)
               if cfg.gan.clip_lambda > 0 else None)
        self.objective = TextGANObjective(G, D, cfg.gan, ema, enc)
        self.budget = CPUBudget(cfg.cpu_minutes)
        db_path = self.run_dir / "fmlab.db" if db == RUN_DB else (Path(db) if db else None)
        self.hooks = TextGANRunHooks(cfg, self.objective, self.data, self.run_dir,
                                     (g_spec, d_spec), self.budget, db_path)
        self.trainer = Trainer(self.objective, self.data, t, {"g": cfg.optim_g, "d": cfg.optim_d},
                               cfg.schedule, run_dir=self.run_dir,
                               callbacks=[self.budget, self.hooks], config=cfg)
