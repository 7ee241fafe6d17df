"""Diversion (KIND's transfer) and its baselines, as the nets a transfer run trains.

All three start from the integrated run's architecture (its ``model.json``) with a fresh class
embedding for the new classes:

- ``learngene``: the same KIND UNet; every learngene factor, bias and norm copied from the source
  and FROZEN; new tailors (random unit u, v; σ = ``tailor_scale`` · the layer's smallest learngene
  σ) and the class embedding train.
- ``lora``: the dense equivalent of the source's learngenes (W = U_c Σ_c V_c, the null-class
  weight: the knowledge shared by every class) plus LoRA on every linear/conv
  (:func:`fmlab.peft.apply`), the class embedding trained in full; rank chosen so the trainable
  count matches ``learngene``'s (both are recorded).
- ``scratch``: the KIND UNet at random init, every parameter trained.
- ``scratch_matched``: a dense UNet at random init whose width is chosen so that its parameter
  count (all trained) is the closest to ``learngene``'s trainable count: from-scratch training
  at matched trainable parameters, the comparison KIND's claim is about.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import fmlab.peft as fp
from fmlab.diffusion.kind import KindConv2d, KindLinear, kind_layers
from fmlab.diffusion.unet import LayerFactory, UNet
from fmlab.engine.data import mix_seed
from fmlab.errors import ConfigError
from fmlab.experiments.diffusion_config import DiffusionConfig
from fmlab.experiments.diffusion_io import load_model

TAILOR_KEYS = ("u_t", "s_t", "v_t", "gate")


def _factory(meta: dict[str, Any], layers: str, k: int) -> LayerFactory:
    return LayerFactory(layers, meta["learngenes"], meta["tailors"], k)


def learngene_net(src: UNet, meta: dict[str, Any], k: int, tailor_scale: float,
                  seed: int) -> UNet:
    """The diverted KIND UNet for ``k`` new classes: frozen learngenes, fresh trainable tailors.

    Args:
        src: the integrated KIND UNet.
        meta: its ``model.json``.
        k: number of new classes.
        tailor_scale: new tailors' σ relative to the layer's smallest learngene σ.
        seed: seed of the new tailors' directions.

    Returns:
        The net, with only tailors (``u_t``, ``s_t``, ``v_t``) and ``class_emb`` trainable.
    """
    if meta["layers"] != "kind":
        raise ConfigError(f"transfer.method learngene: the source run has {meta['layers']!r} "
                          "layers; it needs a KIND run (model.layers: kind)")
    net = UNet(_factory(meta, "kind", k), ch=meta["ch"])
    shared = {n: v for n, v in src.state_dict().items()
              if n.rpartition(".")[2] not in TAILOR_KEYS and not n.startswith("class_emb.")}
    res = net.load_state_dict(shared, strict=False)
    if res.unexpected_keys:
        raise ConfigError(f"learngene transfer: unexpected source tensors {res.unexpected_keys[:3]}")
    gen = torch.Generator().manual_seed(mix_seed(seed, -2))
    for layer in kind_layers(net):
        layer.reset_tailors(tailor_scale, gen)
    for p in net.parameters():
        p.requires_grad_(False)
    for layer in kind_layers(net):
        for p in (layer.u_t, layer.s_t, layer.v_t):
            p.requires_grad_(True)
    net.class_emb.weight.requires_grad_(True)
    return net


@torch.no_grad()
def dense_equivalent(src: UNet, meta: dict[str, Any], k: int) -> UNet:
    """A dense UNet (``k`` classes, fresh class embedding) whose linears/convs hold the source's
    learngene-only weights and whose norms are the source's."""
    net = UNet(_factory(meta, "dense", k), ch=meta["ch"])
    null = len(meta["classes"])
    for name, m in src.named_modules():
        if isinstance(m, (KindLinear, KindConv2d)):
            tgt = net.get_submodule(name)
            tgt.weight.copy_(m.dense_weight(null).to(tgt.weight.dtype).reshape(tgt.weight.shape))
            if m.bias is not None:
                tgt.bias.copy_(m.bias)
        elif isinstance(m, nn.GroupNorm):
            net.get_submodule(name).load_state_dict(m.state_dict())
    return net


def lora_count(net: UNet, r: int) -> int:
    """Trainable scalars of LoRA rank ``r`` on every Linear/Conv2d of ``net`` plus ``class_emb``:
    Linear r·(in + out); Conv2d r·(in·k·k + out) (peft: A = k×k conv to r, B = 1×1 conv)."""
    total = net.class_emb.weight.numel()
    for m in net.modules():
        if isinstance(m, nn.Linear):
            total += r * (m.in_features + m.out_features)
        elif isinstance(m, nn.Conv2d):
            total += r * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels)
    return total


def matched_lora_rank(net: UNet, target: int, max_r: int = 512) -> int:
    """The LoRA rank whose :func:`lora_count` is closest to ``target`` (ties: the smaller)."""
    return min(range(1, max_r + 1), key=lambda r: (abs(lora_count(net, r) - target), r))


def matched_scratch_width(k: int, target: int, max_ch: int = 256) -> int:
    """The (even: the sinusoidal time embedding has ``ch`` dimensions, cos and sin halves) width
    of a dense UNet for ``k`` classes whose parameter count is closest to ``target`` (ties: the
    smaller width)."""
    def count(ch: int) -> int:
        return sum(p.numel() for p in UNet(LayerFactory("dense", 1, 1, k), ch=ch).parameters())

    best, best_gap = 2, None
    for ch in range(2, max_ch + 1, 2):
        gap = count(ch) - target
        if best_gap is None or abs(gap) < abs(best_gap):
            best, best_gap = ch, gap
        if gap > 0:  # counts grow with ch: past the target nothing gets closer
            break
    return best


def build_transfer_net(cfg: DiffusionConfig, k: int) -> tuple[UNet, dict[str, Any]]:
    """The net ``cfg.transfer.method`` trains on ``k`` new classes, and what to record about it.

    Returns:
        ``(net, info)``; ``info`` holds the method, the source, the trainable count, the
        learngene reference count and, for LoRA, the rank.
    """
    t, seed = cfg.transfer, cfg.trainer.seed
    src, meta = load_model(t.source)
    lg = learngene_net(src, meta, k, t.tailor_scale, seed) if meta["layers"] == "kind" else None
    lg_count = fp.trainable_parameters(lg) if lg is not None else None
    info: dict[str, Any] = {"method": t.method, "source": str(t.source),
                            "learngene_trainable": lg_count, "source_classes": meta["classes"]}
    if t.method == "learngene":
        # a dense source makes learngene_net raise the error that names its layers
        net = lg if lg is not None else learngene_net(src, meta, k, t.tailor_scale, seed)
    elif t.method == "lora":
        net = dense_equivalent(src, meta, k)
        if not t.lora_r and lg_count is None:
            raise ConfigError("transfer.lora_r: 0 matches the learngene count, which needs a KIND "
                              "source run; give a rank")
        r = t.lora_r or matched_lora_rank(net, lg_count)
        fp.apply(net, "lora", None, head="class_emb", r=r, alpha=r, seed=seed)
        info["lora_r"] = r
    elif t.method == "scratch_matched":
        if lg_count is None:
            raise ConfigError("transfer.method scratch_matched: matching learngene's trainable count "
                              "needs a KIND source run (model.layers: kind)")
        ch = matched_scratch_width(k, lg_count)
        net = UNet(_factory(meta, "dense", k), ch=ch)
        meta = {**meta, "layers": "dense", "ch": ch}
    else:  # scratch
        net = UNet(_factory(meta, meta["layers"], k), ch=meta["ch"])
    info["trainable"] = fp.trainable_parameters(net)
    info["total"] = sum(p.numel() for p in net.parameters())
    return net, {**info, "arch": {k2: meta[k2] for k2 in ("layers", "ch", "learngenes", "tailors",
                                                           "schedule", "steps")}}
