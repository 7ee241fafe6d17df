"""Generator / discriminator registries: ``create_generator(name, **kw)``, ``create_discriminator``.

A new architecture is one module plus one ``GENERATORS.add`` / ``DISCRIMINATORS.add`` line.
``weights=PATH`` loads a state dict strictly: safetensors, or a torch file read with
``weights_only=True`` (never a full unpickle).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from fmlab.errors import ConfigError, ModelError
from fmlab.gan.nets.base import Discriminator, DOutput, Generator
from fmlab.gan.nets.biggan import BigGANDiscriminator, BigGANGenerator
from fmlab.gan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from fmlab.gan.nets.layers import has_spectral_norm
from fmlab.gan.nets.mlp import MLPDiscriminator, MLPGenerator
from fmlab.gan.nets.sngan import SNGANDiscriminator, SNGANGenerator
from fmlab.registry import Registry

GENERATORS: Registry[Callable[..., Generator]] = Registry("generator")
DISCRIMINATORS: Registry[Callable[..., Discriminator]] = Registry("discriminator")

GENERATORS.add("mlp", MLPGenerator)
GENERATORS.add("dcgan", DCGANGenerator)
GENERATORS.add("sngan", SNGANGenerator)
GENERATORS.add("biggan", BigGANGenerator)
DISCRIMINATORS.add("mlp", MLPDiscriminator)
DISCRIMINATORS.add("dcgan", DCGANDiscriminator)
DISCRIMINATORS.add("sngan", SNGANDiscriminator)
DISCRIMINATORS.add("biggan", BigGANDiscriminator)


def _build(registry: Registry, name: str, weights: str | os.PathLike | None,
           kw: dict) -> nn.Module:
    factory = registry.get(name)
    try:
        net = factory(**kw)
    except TypeError as e:  # an unknown or mistyped keyword
        raise ConfigError(f"{registry.kind} {name!r}: {e}") from None
    if weights is not None:
        load_weights(net, weights)
    return net


def create_generator(name: str, weights: str | os.PathLike | None = None, **kw) -> Generator:
    """Build a registered generator (``mlp``, ``dcgan``, ``sngan``, ``biggan``)."""
    return _build(GENERATORS, name, weights, kw)  # type: ignore[return-value]


def create_discriminator(name: str, weights: str | os.PathLike | None = None,
                         **kw) -> Discriminator:
    """Build a registered discriminator (``mlp``, ``dcgan``, ``sngan``, ``biggan``)."""
    return _build(DISCRIMINATORS, name, weights, kw)  # type: ignore[return-value]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a bare state dict safely: safetensors, or ``torch.load(weights_only=True)`` on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the file's fault
        raise ModelError(f"cannot read weights file {path}: {e}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"weights file {path} is not a bare state_dict of tensors")
    return sd


def load_weights(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load ``path`` into ``net`` with ``strict=True``; mismatches name the file and the keys."""
    sd = load_state_dict_file(path)
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if bad_shape:
            k = bad_shape[0]
            parts.append(f"shape mismatch at {k!r}: file {tuple(sd[k].shape)} vs "
                         f"model {tuple(own[k].shape)}")
        raise ModelError(f"weights file {path} does not fit {type(net).__name__}: "
                         + "; ".join(parts))
    net.load_state_dict(sd, strict=True)
    return net


__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "BigGANDiscriminator",
    "BigGANGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DOutput",
    "Discriminator",
    "Generator",
    "MLPDiscriminator",
    "MLPGenerator",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "create_discriminator",
    "create_generator",
    "has_spectral_norm",
    "load_state_dict_file",
    "load_weights",
]
