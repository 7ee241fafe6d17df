"""A CycleGAN-style translator as an engine objective (manual optimisation, two optimisers).

Per step, on an unpaired batch ``{"a", "b"}`` (float (B, C, H, W) in [-1, 1]):

1. generators (D frozen): L_G = adv(D_b(G(a))) + adv(D_a(F(b))) + λ_cyc·cycle + λ_id·λ_cyc·identity
   + λ_edge·edge, one step of the ``g`` optimiser over G and F together;
2. discriminators on the detached fakes: L_D = d_loss(D_b(b), D_b(G(a))) + d_loss(D_a(a), D_a(F(b))),
   one step of the ``d`` optimiser.

λ_id is relative to λ_cyc, as in the CycleGAN code (``lambda_identity: 0.5``). The 50-image
history buffer of the paper is not used: every random draw stays a function of (seed, step), so
``train to 10 + resume to 20`` equals ``train to 20``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError
from fmlab.gan.losses import get_loss
from fmlab.translate.edges import create_edges
from fmlab.translate.losses import CycleLoss, EdgeConsistencyLoss, IdentityLoss
from fmlab.utils.validation import check


@dataclass
class TranslateLossConfig:
    """Weights of the translator's terms (section ``loss`` of a translate config)."""

    adv: str = "ls"                # a fmlab.gan.losses name; LSGAN is CycleGAN's default
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5   # relative to lambda_cycle (0 turns the term off)
    lambda_edge: float = 0.0       # edge consistency (ParGANDA); 0 turns it off
    edge: str = "sobel"            # fmlab.translate.EDGES name

    def validate(self, prefix: str = "loss") -> None:
        from fmlab.gan.losses import loss_names
        from fmlab.translate.edges import EDGES

        check(self.adv in loss_names(), f"{prefix}.adv", self.adv,
              f"must be one of {', '.join(loss_names())}")
        check(self.edge in EDGES, f"{prefix}.edge", self.edge, f"must be one of {', '.join(EDGES)}")
        for k in ("lambda_cycle", "lambda_identity", "lambda_edge"):
            check(getattr(self, k) >= 0, f"{prefix}.{k}", getattr(self, k), "must be >= 0")
        check(not (self.lambda_edge > 0 and self.edge == "none"), f"{prefix}.edge", self.edge,
              "is 'none' while loss.lambda_edge > 0; choose an extractor or set lambda_edge 0")


class CycleGANObjective(nn.Module):
    """G (A→B), F (B→A), D_a, D_b and the losses; :meth:`training_step` is one CycleGAN step.

    Args:
        g_ab: generator A→B (what :func:`fmlab.translate.load_translator` returns).
        g_ba: generator B→A.
        d_a: discriminator of domain A.
        d_b: discriminator of domain B.
        cfg: the loss weights.
    """

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module, d_a: nn.Module, d_b: nn.Module,
                 cfg: TranslateLossConfig) -> None:
        super().__init__()
        self.G = nn.ModuleDict({"ab": g_ab, "ba": g_ba})
        self.D = nn.ModuleDict({"a": d_a, "b": d_b})
        self.cfg = cfg
        self.adv = get_loss(cfg.adv)
        self.cycle = CycleLoss()
        self.identity = IdentityLoss()
        edges = create_edges(cfg.edge) if cfg.lambda_edge > 0 else None
        self.edge = EdgeConsistencyLoss(edges) if edges is not None else None

    def forward(self, batch: Any) -> Any:
        raise TypeError("CycleGANObjective is trained through training_step (two optimisers)")

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """``{"g": both generators, "d": both discriminators}`` from the ``g``/``d`` configs."""
        missing = [k for k in ("g", "d") if k not in optim]
        if missing:
            raise ConfigError(f"a translator needs optim configs 'g' and 'd'; missing {missing}")
        return {"g": build_optimizer(self.G, optim["g"]), "d": build_optimizer(self.D, optim["d"])}

    def generator_loss(self, a: torch.Tensor, b: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
        """L_G and its terms, plus the fakes (G(a), F(b)) for the discriminator update."""
        g_ab, g_ba, c = self.G["ab"], self.G["ba"], self.cfg
        fake_b, fake_a = g_ab(a), g_ba(b)
        adv = (self.adv.g_loss(self.D["b"](fake_b).flatten())
               + self.adv.g_loss(self.D["a"](fake_a).flatten()))
        cyc = self.cycle(a, b, g_ab, g_ba, fake_b=fake_b, fake_a=fake_a)
        loss = adv + c.lambda_cycle * cyc
        logs = {"g_adv": float(adv.detach()), "cycle": float(cyc.detach())}
        if c.lambda_identity > 0:
            idt = self.identity(a, b, g_ab, g_ba)
            loss = loss + c.lambda_identity * c.lambda_cycle * idt
            logs["identity"] = float(idt.detach())
        if self.edge is not None:
            edge = self.edge(a, fake_b, b, fake_a)
            loss = loss + c.lambda_edge * edge
            logs["edge"] = float(edge.detach())
        logs["g_loss"] = float(loss.detach())
        return loss, logs, fake_b, fake_a

    def discriminator_loss(self, a: torch.Tensor, b: torch.Tensor, fake_b: torch.Tensor,
                           fake_a: torch.Tensor) -> torch.Tensor:
        """L_D of both discriminators on real images and detached fakes."""
        d_a, d_b = self.D["a"], self.D["b"]
        return (self.adv.d_loss(d_b(b).flatten(), d_b(fake_b.detach()).flatten())
                + self.adv.d_loss(d_a(a).flatten(), d_a(fake_a.detach()).flatten()))

    def training_step(self, batch: dict[str, torch.Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """One generator update (discriminators frozen), then one discriminator update."""
        a, b = batch["a"], batch["b"]
        self.D.requires_grad_(False)
        opt_g, opt_d = optimizers["g"], optimizers["d"]
        opt_g.zero_grad(set_to_none=True)
        loss_g, logs, fake_b, fake_a = self.generator_loss(a, b)
        loss_g.backward()
        opt_g.step()
        self.D.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_d = self.discriminator_loss(a, b, fake_b, fake_a)
        loss_d.backward()
        opt_d.step()
        logs["d_loss"] = float(loss_d.detach())
        return logs
