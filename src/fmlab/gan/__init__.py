"""GAN building blocks in StudioGAN's taxonomy: architecture × loss × conditioning × regulariser ×
differentiable augmentation, each a small module, composed by :func:`gan_step`.

Architectures, losses and conditioning heads register where they are defined
(``@register_generator`` / ``@register_discriminator``, ``@register_loss``,
``@register_conditioning``), so a new one is one file; configs and the CLI resolve names through
:data:`GENERATORS`, :data:`DISCRIMINATORS`, :data:`GAN_LOSSES` and :data:`CONDITIONINGS`.
"""

from fmlab.gan.adaptivemix import AdaptiveMixOutput, adaptive_mix
from fmlab.gan.conditioning import (
    CONDITIONINGS,
    ConditionalBatchNorm2d,
    ConditionHead,
    Conditioning,
    LinearConditionalBatchNorm2d,
    adc_labels,
    cond_d_loss,
    cond_g_loss,
    register_conditioning,
)
from fmlab.gan.diffaugment import diff_augment
from fmlab.gan.ema import EMA
from fmlab.gan.grid import sample_grid
from fmlab.gan.losses import GAN_LOSSES, AdversarialLoss, get_loss, loss_names, register_loss
from fmlab.gan.nets import (
    DISCRIMINATORS,
    GENERATORS,
    Discriminator,
    DOutput,
    Generator,
    create_discriminator,
    create_generator,
    load_weights,
    register_discriminator,
    register_generator,
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
    "CONDITIONINGS", "DISCRIMINATORS", "EMA", "GAN_LOSSES", "GENERATORS", "AdaptiveMixOutput",
    "AdversarialLoss", "ConditionHead", "ConditionalBatchNorm2d", "Conditioning", "DOutput",
    "Discriminator", "GANState",
    "GANStepConfig", "Generator", "LeCamEMA", "LinearConditionalBatchNorm2d", "adaptive_mix",
    "adc_labels", "cond_d_loss", "cond_g_loss", "consistency_loss", "cr_augment",
    "create_discriminator", "create_generator", "d_step", "diff_augment", "g_step", "gan_step",
    "get_loss", "gradient_penalty", "lecam_loss", "load_weights", "r1_penalty", "sample_grid",
    "loss_names", "register_conditioning", "register_discriminator", "register_generator",
    "register_loss", "to_gan_input",
]
