"""The typed config of ``fmlab gan train``: one YAML file per experiment, ``--set`` overrides.

It nests the engine's own sections (``trainer``, ``optim_g``/``optim_d`` as :class:`OptimConfig`,
``schedule``) and the GAN step's :class:`~fmlab.gan.GANStepConfig` (section ``gan``), so every
key is loaded, type-converted and rejected-when-unknown by :func:`fmlab.engine.load_config`;
this module only adds the GAN-specific sections and the cross-field checks.

A GAN trains with two optimisers and no gradient accumulation, so ``trainer.accumulate``,
``trainer.bf16`` and ``trainer.grad_clip`` must keep their neutral values (they are refused, not
silently ignored). The learning-rate schedule defaults to ``constant`` (the GAN convention); a
cosine schedule depends on ``trainer.max_steps``, so resuming with a larger ``max_steps`` then
changes the remaining learning rates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.errors import ConfigError
from fmlab.gan.conditioning import conditional_kinds
from fmlab.gan.losses import get_loss
from fmlab.gan.step import GANStepConfig
from fmlab.utils.validation import check

# Metric names accepted in ``eval.metrics`` / ``--metrics``: fmlab.metrics.METRICS plus the
# per-class recall of a conditional generator under the extractor's classifier.
EVAL_METRICS = ("fid", "kid", "is", "prdc", "ifid", "iprdc", "class_recall")
CONDITIONING_TYPES = ("class", "caption")
# gan.* keys a caption-conditioned run does not implement (refused there, not ignored)
CLASS_ONLY_KEYS = ("r1_lambda", "cr_lambda", "bcr_fake_lambda", "lecam_lambda", "adaptivemix",
                   "diffaug")


@dataclass
class GANDataConfig:
    """Where the training images come from and how they reach the nets."""

    source: str = "mnist"        # fmlab.data.open_source spec: mnist, cifar10, npz:PATH, ...
    split: str = "train"
    data_root: str | None = None  # default: $FMLAB_DATA
    limit: int = 0               # keep the first M images of the split (0: all)
    fraction: float = 1.0        # then keep this fraction, class-balanced and seeded
    fraction_seed: int = 0
    channels: int = 1            # grey (1) or RGB (3); converted by fmlab.gan.to_gan_input
    img_size: int = 32           # images are resized (bilinear, antialiased) to this size
    conditional: bool = False    # feed class labels to G and D
    conditioning: str = "class"  # class: labels when `conditional` (the lab's default);
                                 # caption: templated captions embedded by `caption.encoder`

    def validate(self, prefix: str = "data") -> None:
        check(self.conditioning in CONDITIONING_TYPES, f"{prefix}.conditioning", self.conditioning,
              f"is unknown; choose from {', '.join(CONDITIONING_TYPES)}")
        check(not (self.conditioning == "caption" and self.conditional), f"{prefix}.conditional",
              self.conditional, "must be false with data.conditioning: caption (captions, not "
              "class labels, condition G and D)")
        check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")
        check(0.0 < self.fraction <= 1.0, f"{prefix}.fraction", self.fraction,
               "must lie in (0, 1]")
        check(self.channels in (1, 3), f"{prefix}.channels", self.channels, "must be 1 or 3")
        check(self.img_size >= 4, f"{prefix}.img_size", self.img_size, "must be >= 4")


@dataclass
class GANModelConfig:
    """Registry names of G and D (fmlab.gan.GENERATORS / DISCRIMINATORS) and their options.

    ``z_dim``, ``ch``, the image shape and the number of classes are passed to a factory only
    when it takes them; ``g_kwargs`` / ``d_kwargs`` add the rest (e.g. ``hidden`` for ``mlp``).
    """

    generator: str = "dcgan"
    discriminator: str = "dcgan"
    z_dim: int = 128
    ch: int = 32
    cond: str = "proj"           # D head when data.conditional: a registered conditioning
                                 # (fmlab.gan.CONDITIONINGS: proj, ac, acmod, adc, ...)
    d_sn: bool = True            # spectral norm in D
    g_kwargs: dict[str, Any] = field(default_factory=dict)
    d_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str = "model") -> None:
        check(self.z_dim >= 1, f"{prefix}.z_dim", self.z_dim, "must be >= 1")
        check(self.ch >= 1, f"{prefix}.ch", self.ch, "must be >= 1")
        kinds = conditional_kinds()
        check(self.cond in kinds, f"{prefix}.cond", self.cond, f"must be one of {', '.join(kinds)}")


@dataclass
class GANEMAConfig:
    """The generator EMA that grids, metrics and the exported generator use."""

    enabled: bool = True
    decay: float = 0.999
    start_step: int = 0          # plain copy of G for the first start_step updates

    def validate(self, prefix: str = "ema") -> None:
        check(0.0 <= self.decay < 1.0, f"{prefix}.decay", self.decay, "must lie in [0, 1)")
        check(self.start_step >= 0, f"{prefix}.start_step", self.start_step, "must be >= 0")


@dataclass
class GANSampleConfig:
    """PNG sample grids written to ``RUN_DIR/samples/step_XXXXXX.png``."""

    every: int = 500             # steps between grids (0: only the final grid)
    n: int = 100
    seed: int = 0                # fixed z, so grids of different steps are comparable

    def validate(self, prefix: str = "samples") -> None:
        check(self.every >= 0, f"{prefix}.every", self.every, "must be >= 0")
        check(self.n >= 1, f"{prefix}.n", self.n, "must be >= 1")


@dataclass
class GANEvalConfig:
    """Generative metrics of the (EMA) generator against a reference split."""

    every: int = 0               # steps between evaluations (0: none during training)
    final: bool = True           # evaluate once more at the end of the run
    n: int = 10000               # generated samples per evaluation
    ref: str = "mnist:test"      # SOURCE:SPLIT
    ref_n: int = 0               # first ref_n reference images (0: the whole split)
    features: str = "lenet5_mnist"
    features_weights: str | None = None  # default: the known file under the data root
    metrics: list[str] = field(default_factory=lambda: ["fid", "kid", "is", "prdc"])
    seed: int = 0
    batch_size: int = 500
    use_ema: bool = True

    def validate(self, prefix: str = "eval") -> None:
        check(self.every >= 0, f"{prefix}.every", self.every, "must be >= 0")
        check(self.n >= 2, f"{prefix}.n", self.n, "must be >= 2")
        check(self.ref_n >= 0, f"{prefix}.ref_n", self.ref_n, "must be >= 0")
        check(self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, "must be >= 1")
        bad = [m for m in self.metrics if m not in EVAL_METRICS]
        check(not bad and bool(self.metrics), f"{prefix}.metrics", self.metrics,
               f"must be a non-empty list of {', '.join(EVAL_METRICS)}")


# caption.encoder: a text encoder of fmlab.models.text, or clip:<run folder> (an image-text run)
TEXT_ENCODER_PREFIXES = ("text:minilm", "text:all-MiniLM-L6-v2", "open_clip:", "text:open_clip:")


@dataclass
class GANCaptionConfig:
    """Captions of a ``data.conditioning: caption`` run (issue 23; fmlab.experiments.textgan_data).

    Each training image gets one templated caption naming its class and its measured thickness,
    slant and brightness (terciles fitted on the training split); captions are embedded once by
    the frozen ``encoder`` and cached under ``$FMLAB_CACHE`` by content hash.
    """

    encoder: str = "text:minilm"  # or clip:<run folder> (fmlab clip train: joint-space text embedding)
    c_dim: int = 128             # GAN-CLS's compressed condition vector
    template_seed: int = 0       # which template each image's caption uses
    # GALIP's image tower for gan.clip_lambda: the pre-trained MNIST VAE encoder, plus a ridge
    # map from its features to the caption space fitted on `align_n` training captions
    align_n: int = 20000
    align_ridge: float = 1.0

    def validate(self, prefix: str = "caption") -> None:
        check(self.c_dim >= 1, f"{prefix}.c_dim", self.c_dim, "must be >= 1")
        check(self.align_n >= 10, f"{prefix}.align_n", self.align_n, "must be >= 10")
        check(self.align_ridge > 0, f"{prefix}.align_ridge", self.align_ridge, "must be > 0")
        if self.encoder.startswith("clip:"):  # an image-text run's text tower: refuse a bad folder now
            from fmlab.experiments.textgan_data import clip_run_folder

            clip_run_folder(self.encoder)
        elif not self.encoder.startswith(TEXT_ENCODER_PREFIXES):
            raise ConfigError(f"{prefix}.encoder: {self.encoder!r} is not text:minilm, "
                              "open_clip:<arch>[:<tag>] or clip:<run folder of fmlab clip train>")


def _default_schedule() -> ScheduleConfig:
    return ScheduleConfig(name="constant")


def _gan_adam() -> OptimConfig:
    # DCGAN/StudioGAN defaults: Adam, lr 2e-4, betas (0.5, 0.999); AdamW with decay 0 is Adam.
    return OptimConfig(name="adamw", lr=2e-4, betas=(0.5, 0.999))


@dataclass
class GANConfig:
    """One GAN experiment (see ``configs/gan/*.yaml``)."""

    name: str = "gan"
    data: GANDataConfig = field(default_factory=GANDataConfig)
    model: GANModelConfig = field(default_factory=GANModelConfig)
    gan: GANStepConfig = field(default_factory=GANStepConfig)
    ema: GANEMAConfig = field(default_factory=GANEMAConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=64,
                                                                         log_every=100))
    optim_g: OptimConfig = field(default_factory=_gan_adam)
    optim_d: OptimConfig = field(default_factory=_gan_adam)
    schedule: ScheduleConfig = field(default_factory=_default_schedule)
    samples: GANSampleConfig = field(default_factory=GANSampleConfig)
    eval: GANEvalConfig = field(default_factory=GANEvalConfig)
    caption: GANCaptionConfig = field(default_factory=GANCaptionConfig)
    cpu_minutes: float = 0.0     # stop once training steps used this much process CPU (0: off)

    def validate(self) -> None:
        t = self.trainer
        check(t.accumulate == 1, "trainer.accumulate", t.accumulate,
               "must be 1: a GAN step is one D and one G update on one batch")
        check(t.grad_clip == 0, "trainer.grad_clip", t.grad_clip,
               "is not supported by the GAN loop (use gan.r1_lambda or gan.gp_lambda)")
        check(self.cpu_minutes >= 0, "cpu_minutes", self.cpu_minutes, "must be >= 0")
        # GANStepConfig checks itself on construction only; --set bypasses that, so re-check.
        try:
            GANStepConfig(**vars(self.gan))
        except ConfigError as e:
            raise ConfigError(f"gan: {e}") from None
        except Exception as e:  # an unknown loss name (registry lookup)
            raise ConfigError(f"gan.loss: {e}") from None
        needs_gp = get_loss(self.gan.loss).gp_lambda
        check(not (needs_gp and not self.gan.gp_lambda), "gan.gp_lambda", self.gan.gp_lambda,
              f"is 0 with gan.loss={self.gan.loss}; set gan.gp_lambda={needs_gp:g}")
        self._check_conditioning()
        if {"ifid", "iprdc", "class_recall"} & set(self.eval.metrics):
            check(self.data.conditional, "eval.metrics", self.eval.metrics,
                   "ask for ifid/iprdc/class_recall, which need a conditional generator "
                   "(data.conditional: true)")


    def _check_conditioning(self) -> None:
        """Refuse the gan.* keys the chosen conditioning does not read (not silently ignored)."""
        g, default = self.gan, GANStepConfig()
        if self.data.conditioning == "caption":
            for k in CLASS_ONLY_KEYS:
                check(getattr(g, k) == getattr(default, k), f"gan.{k}", getattr(g, k),
                      "is not implemented for data.conditioning: caption")
            check(g.loss in ("vanilla", "hinge"), "gan.loss", g.loss,
                  "must be vanilla or hinge with data.conditioning: caption (matching-aware loss)")
            check(not g.gp_lambda, "gan.gp_lambda", g.gp_lambda,
                  "is not implemented for captions; use gan.magp_lambda (matching-aware GP)")
            return
        for k in GANStepConfig.CAPTION_KEYS:
            check(getattr(g, k) == getattr(default, k), f"gan.{k}", getattr(g, k),
                  "is only read with data.conditioning: caption")


def load_gan_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
                    ) -> GANConfig:
    """Read a GAN experiment YAML (or the defaults) with ``--set`` overrides, validated."""
    return load_config(path, GANConfig, overrides)
