"""GAN building blocks in StudioGAN's taxonomy: architecture × loss × conditioning × regulariser ×
differentiable augmentation, each a small module, composed by :func:`gan_step`."""

from fmlab.gan.adaptivemix import AdaptiveMixOutput, adaptive_mix
from fmlab.gan.conditioning import (
    ConditionalBatchNorm2d,
    ConditionHead,
    LinearConditionalBatchNorm2d,
    adc_labels,
    cond_d_loss,
    cond_g_loss,
)
from fmlab.gan.diffaugment import diff_augment
from fmlab.gan.ema import EMA
from fmlab.gan.grid import sample_grid
from fmlab.gan.losses import GAN_LOSSES, AdversarialLoss, get_loss
from fmlab.gan.nets import (
    DISCRIMINATORS,
    GENERATORS,
    Discriminator,
    DOutput,
    Generator,
    create_discriminator,
    create_generator,
    load_weights,
)
from fmlab.gan.prep import to_gan_input
from fmlab.gan.regularizers import (
    LeCamEMA,
    consistency_loss,
    cr_augment,
    gradient_penalty,
    lecam_loss,
    r1_penalty,
)
from fmlab.gan.step import GANState, GANStepConfig, d_step, g_step, gan_step

__all__ = [
    "DISCRIMINATORS", "EMA", "GAN_LOSSES", "GENERATORS", "AdaptiveMixOutput", "AdversarialLoss",
    "ConditionHead", "ConditionalBatchNorm2d", "DOutput", "Discriminator", "GANState",
    "GANStepConfig", "Generator", "LeCamEMA", "LinearConditionalBatchNorm2d", "adaptive_mix",
    "adc_labels", "cond_d_loss", "cond_g_loss", "consistency_loss", "cr_augment",
    "create_discriminator", "create_generator", "d_step", "diff_augment", "g_step", "gan_step",
    "get_loss", "gradient_penalty", "lecam_loss", "load_weights", "r1_penalty", "sample_grid",
    "to_gan_input",
]
