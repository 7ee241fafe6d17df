"""The conditional WGAN-GP over features, trained by the engine's manual-optimisation hook.

One engine step = ``n_critic`` critic updates (each on its own chunk of the step's batch of
``n_critic × B`` real seen-class features, λ_GP·GP from :func:`fmlab.gan.regularizers.gradient_penalty`)
then one generator update:

    L_D = E[D(G(z,a),a)] − E[D(x,a)] + λ_GP·GP
    L_G = −E[D(G(z,a),a)] + β·CE(f_cls(G(z,a)), y) [+ p₂·L₂ + p₁·L₁ soul terms]

f_cls is a softmax classifier fitted on the real seen features beforehand and frozen (f-CLSWGAN's
classification term). With a :class:`~fmlab.zsl.soul.SoulSampleLoss` this is LisGAN; without it,
f-CLSWGAN. ``a`` is looked up from the ``semantics`` buffer by the batch's labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError
from fmlab.gan.regularizers import gradient_penalty
from fmlab.utils.validation import check
from fmlab.zsl.nets import FeatureCritic, FeatureGenerator
from fmlab.zsl.soul import SoulSampleLoss


@dataclass
class FeatureGANConfig:
    """The GAN step's weights (section ``gan`` of ``configs/zsl/*.yaml``); defaults are LisGAN's."""

    z_dim: int = 64
    hidden: int = 256
    n_critic: int = 5          # critic updates per generator update
    gp_lambda: float = 10.0    # λ_GP
    cls_weight: float = 0.01   # β of the frozen classifier's CE on fakes
    soul_k: int = 3            # soul samples (k-means centres) per seen class
    soul_weight: float = 0.01  # p₂, per-sample distance to the nearest soul sample
    proto_weight: float = 0.01  # p₁, per-class fake prototype to the nearest soul sample
    proto_n: int = 20          # fakes per class for the prototype term (loss_syn_num)

    def validate(self, prefix: str = "gan") -> None:
        for key in ("z_dim", "hidden", "n_critic", "soul_k", "proto_n"):
            check(getattr(self, key) >= 1, f"{prefix}.{key}", getattr(self, key), "must be >= 1")
        for key in ("gp_lambda", "cls_weight", "soul_weight", "proto_weight"):
            check(getattr(self, key) >= 0, f"{prefix}.{key}", getattr(self, key), "must be >= 0")


class FeatureGANObjective(nn.Module):
    """G, D, the frozen seen-class classifier and (LisGAN) the soul-sample loss.

    Args:
        G: the feature generator.
        D: the feature critic.
        semantics: (C, S) semantic vectors of the seen classes (row = the batch's label).
        cls_weight, cls_bias: the frozen softmax classifier over the seen classes, (C, D), (C,).
        cfg: the step's weights.
        soul: the soul-sample loss (None: f-CLSWGAN).
    """

    def __init__(self, G: FeatureGenerator, D: FeatureCritic, semantics: torch.Tensor,
                 cls_weight: torch.Tensor, cls_bias: torch.Tensor, cfg: FeatureGANConfig,
                 soul: SoulSampleLoss | None = None) -> None:
        super().__init__()
        self.G, self.D, self.soul, self.cfg = G, D, soul, cfg
        self.register_buffer("semantics", semantics.float())
        self.register_buffer("cls_weight", cls_weight.float())
        self.register_buffer("cls_bias", cls_bias.float())

    def forward(self, batch: object) -> object:
        raise TypeError("FeatureGANObjective is trained through training_step (two optimisers)")

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """``{"g": Adam over G, "d": Adam over D}`` from the ``g``/``d`` optim configs."""
        missing = [k for k in ("g", "d") if k not in optim]
        if missing:
            raise ConfigError(f"a feature GAN needs optim configs 'g' and 'd'; missing {missing}")
        return {"g": build_optimizer(self.G, optim["g"]), "d": build_optimizer(self.D, optim["d"])}

    def _fake(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.G.z_dim, generator=generator).to(self.semantics.device)
        return self.G(z, self.semantics[labels])

    def _critic_update(self, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                       generator: torch.Generator) -> dict[str, float]:
        a = self.semantics[y]
        with torch.no_grad():
            fake = self._fake(y, generator)
        real_s, fake_s = self.D(x, a).logits.mean(), self.D(fake, a).logits.mean()
        gp = gradient_penalty(self.D, x, fake, a, generator=generator)
        loss = fake_s - real_s + self.cfg.gp_lambda * gp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"d_loss": float(loss.detach()), "wasserstein": float((real_s - fake_s).detach()),
                "gp": float(gp.detach())}

    def _generator_update(self, y: torch.Tensor, opt: torch.optim.Optimizer,
                          generator: torch.Generator) -> dict[str, float]:
        for p in self.D.parameters():
            p.requires_grad_(False)
        fake = self._fake(y, generator)
        adv = -self.D(fake, self.semantics[y]).logits.mean()
        ce = F.cross_entropy(fake @ self.cls_weight.T + self.cls_bias, y)
        loss = adv + self.cfg.cls_weight * ce
        logs = {"g_adv": float(adv.detach()), "g_cls": float(ce.detach())}
        if self.soul is not None:
            protos = torch.arange(len(self.semantics), device=y.device).repeat_interleave(self.cfg.proto_n)
            soul_loss, soul_logs = self.soul(torch.cat([fake, self._fake(protos, generator)]),
                                             torch.cat([y, protos]))
            loss = loss + soul_loss
            logs.update(soul_logs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for p in self.D.parameters():
            p.requires_grad_(True)
        logs["g_loss"] = float(loss.detach())
        return logs

    def training_step(self, batch: dict[str, torch.Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """``n_critic`` critic updates on the batch's chunks, then one generator update.

        Args:
            batch: ``{"images": (n_critic·B, D) real features, "labels": (n_critic·B,)}``.
            optimizers: ``{"g", "d"}`` from :meth:`configure_optimizers`.
            step: the 0-based step index.
            generator: the step's seeded CPU generator (z and the GP's α).

        Returns:
            The step's terms (the critic's averaged over its updates).
        """
        xs = batch["images"].float().chunk(self.cfg.n_critic)
        ys = batch["labels"].chunk(self.cfg.n_critic)
        d_logs = [self._critic_update(x, y, optimizers["d"], generator) for x, y in zip(xs, ys)]
        logs = {k: sum(d[k] for d in d_logs) / len(d_logs) for k in d_logs[0]}
        logs.update(self._generator_update(ys[-1], optimizers["g"], generator))
        return logs

    @torch.no_grad()
    def generate(self, semantics: torch.Tensor, n_per_class: int, seed: int) -> torch.Tensor:
        """``n_per_class`` features for each row of ``semantics`` (C', S): ``(C'·n, D)``, class-major."""
        g = torch.Generator().manual_seed(seed)
        a = semantics.float().repeat_interleave(n_per_class, dim=0)
        z = torch.randn(len(a), self.G.z_dim, generator=g)
        return self.G.eval()(z, a)
