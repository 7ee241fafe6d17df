"""Generator / discriminator registries: ``create_generator(name, **kw)``, ``create_discriminator``.

A new architecture is one module whose classes carry ``@register_generator("name")`` /
``@register_discriminator("name")`` (see :mod:`fmlab.gan.nets.base`); this package imports the
shipped modules so their decorators run. ``weights=PATH`` loads a state dict strictly:
safetensors, or a torch file read with ``weights_only=True`` (never a full unpickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fmlab.errors import ConfigError, ModelError
from fmlab.gan.nets.base import (
    DISCRIMINATORS,
    GENERATORS,
    Discriminator,
    DOutput,
    Generator,
    check_sizes,
    register_discriminator,
    register_generator,
)

# the shipped architectures: importing them runs their @register_* decorators
from fmlab.gan.nets.biggan import BigGANDiscriminator, BigGANGenerator
from fmlab.gan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from fmlab.gan.nets.layers import has_spectral_norm
from fmlab.gan.nets.mlp import MLPDiscriminator, MLPGenerator
from fmlab.gan.nets.sngan import SNGANDiscriminator, SNGANGenerator
from fmlab.gan.nets.style import GenDAGenerator, StyleGenerator
from fmlab.gan.nets.vae_tower import TowerDiscriminator
from fmlab.registry import Registry


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
    """Build a registered generator by name (``mlp``, ``dcgan``, ``sngan``, ``biggan``, ``style``, ...).

    Args:
        name: a name registered with ``@register_generator``; unknown names raise an error
            that lists the known ones.
        weights: optional state-dict file (safetensors or a ``weights_only`` torch file),
            loaded with ``strict=True``.
        **kw: the architecture's constructor arguments (``z_dim``, ``ch``, ``channels``,
            ``img_size``, ``num_classes``, ...); sizes are checked and a bad one is a
            ConfigError naming it.

    Returns:
        The generator (in training mode, on the CPU).

    Examples:
        >>> import torch
        >>> G = create_generator("dcgan", z_dim=8, ch=4, channels=1, img_size=16)
        >>> G(G.sample_z(2, torch.Generator().manual_seed(0))).shape
        torch.Size([2, 1, 16, 16])
        >>> create_generator("mlp", z_dim=-1)
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: MLPGenerator z_dim: -1 must be an integer >= 1
    """
    return _build(GENERATORS, name, weights, kw)  # type: ignore[return-value]


def create_discriminator(name: str, weights: str | os.PathLike | None = None,
                         **kw) -> Discriminator:
    """Build a registered discriminator by name (``mlp``, ``dcgan``, ``sngan``, ``biggan``, ``style``, ...).

    Args:
        name: a name registered with ``@register_discriminator``.
        weights: optional state-dict file, loaded with ``strict=True``.
        **kw: constructor arguments (``ch``, ``channels``, ``img_size``, ``num_classes``,
            ``cond`` — a registered conditioning such as ``proj``/``ac``/``adc`` —, ``sn``).

    Returns:
        The discriminator; ``D(x, y)`` returns a :class:`DOutput`.

    Examples:
        >>> import torch
        >>> D = create_discriminator("dcgan", ch=4, channels=1, img_size=16, num_classes=3,
        ...                          cond="adc")
        >>> out = D(torch.zeros(2, 1, 16, 16), torch.tensor([0, 2]))
        >>> out.logits.shape, out.cls_logits.shape
        (torch.Size([2]), torch.Size([2, 6]))
    """
    return _build(DISCRIMINATORS, name, weights, kw)  # type: ignore[return-value]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a bare state dict safely: safetensors, or ``torch.load(weights_only=True)`` on CPU.

    A torch file holding pickled code is refused with one line naming the file
    (:func:`fmlab.utils.io.load_torch_file`), not with torch's advice to unpickle it.

    Args:
        path: a ``.safetensors`` file or a ``torch.save`` state dict.

    Returns:
        The state dict (name → tensor).
    """
    from fmlab.utils.io import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any decoding failure is the file's fault
            raise ModelError(f"cannot read weights file {path}: {e}") from None
    else:
        sd = load_torch_file(path, "weights")
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
    "GenDAGenerator",
    "Generator",
    "MLPDiscriminator",
    "MLPGenerator",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "StyleGenerator",
    "TowerDiscriminator",
    "check_sizes",
    "create_discriminator",
    "create_generator",
    "has_spectral_norm",
    "load_state_dict_file",
    "load_weights",
    "register_discriminator",
    "register_generator",
]
