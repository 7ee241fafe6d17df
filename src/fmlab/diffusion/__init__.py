"""Tiny class-conditional diffusion (DDPM) with KIND learngenes (issue 24, paper 43).

    from fmlab.diffusion import NoiseSchedule, UNet, LayerFactory, DiffusionObjective, sample
    net = UNet(LayerFactory("kind", learngenes=8, tailors=2, num_classes=5), ch=32)

Pieces: :mod:`~fmlab.diffusion.schedule` (β, ᾱ, q_sample, posterior), :mod:`~fmlab.diffusion.kind`
(factorised layers with learngenes and class-gated tailors), :mod:`~fmlab.diffusion.unet` (the
28×28 UNet, dense or KIND by a switch), :mod:`~fmlab.diffusion.objective` (ε-prediction MSE, an
engine objective) and :mod:`~fmlab.diffusion.sample` (DDPM / DDIM, classifier-free guidance).
Runs: :mod:`fmlab.experiments.diffusion` and ``fmlab diffusion``.
"""

from fmlab.diffusion.kind import KindConv2d, KindLinear, gate_table, kind_layers, set_labels
from fmlab.diffusion.objective import DiffusionObjective
from fmlab.diffusion.sample import sample
from fmlab.diffusion.schedule import NoiseSchedule, make_betas
from fmlab.diffusion.unet import LayerFactory, UNet

__all__ = ["DiffusionObjective", "KindConv2d", "KindLinear", "LayerFactory", "NoiseSchedule",
           "UNet", "gate_table", "kind_layers", "make_betas", "sample", "set_labels"]
