"""fmlab.attack — adversarial attacks on frozen pre-trained encoders.

:mod:`fmlab.attack.advencoder`: AdvEncoder, a downstream-agnostic universal perturbation (ℓ∞ or
patch) produced by a generator trained against the encoder alone (``fmlab attack universal``;
``fmlab attack eval`` measures what it does to downstream linear probes and kNN).
"""

from fmlab.attack.advencoder import (
    AdvEncoderLoss,
    PerturbationGenerator,
    advencoder_nce,
    apply_delta,
    gaussian_blur,
    hfc_loss,
    parse_eps,
    paste_patches,
    patch_side,
)

__all__ = ["AdvEncoderLoss", "PerturbationGenerator", "advencoder_nce", "apply_delta",
           "gaussian_blur", "hfc_loss", "parse_eps", "paste_patches", "patch_side"]
