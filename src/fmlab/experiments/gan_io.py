"""Build G and D from a GAN config (the library's generator I/O is :mod:`fmlab.gan.io`)."""

from __future__ import annotations

import inspect
from typing import Any

from fmlab.errors import ConfigError
from fmlab.experiments.gan_config import GANConfig
from fmlab.gan import DISCRIMINATORS, GENERATORS, create_discriminator, create_generator
from fmlab.gan.nets.base import Discriminator, Generator

# ------------------------------------------------------------------------------------- build


def _params(factory: Any) -> set[str]:
    return set(inspect.signature(factory).parameters)


def _merge(base: dict[str, Any], extra: dict[str, Any], key: str) -> dict[str, Any]:
    clash = sorted(set(base) & set(extra))
    if clash:
        raise ConfigError(f"model.{key}: {clash} are set from other config keys (model.z_dim, "
                          f"model.ch, data.channels/img_size, data.conditional, model.cond)")
    return {**base, **extra}


def net_specs(cfg: GANConfig, num_classes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({"arch", "kwargs"} for G, same for D)`` from the config and the data's class count.

    Common options are passed only to factories that take them, so one config layout fits the
    MLP (``img_shape``) and the convolutional nets (``channels`` + ``img_size``) alike — and a
    newly registered architecture, whatever subset of them it takes.

    Args:
        cfg: the GAN config.
        num_classes: the data's class count (0: unconditional).

    Returns:
        The generator's and the discriminator's ``{"arch", "kwargs"}``.
    """
    m, d = cfg.model, cfg.data
    shape = {"channels": d.channels, "img_size": d.img_size,
             "img_shape": [d.channels, d.img_size, d.img_size]}
    specs = []
    for role, name, registry, extra in (("g_kwargs", m.generator, GENERATORS, m.g_kwargs),
                                        ("d_kwargs", m.discriminator, DISCRIMINATORS,
                                         m.d_kwargs)):
        params = _params(registry.get(name))
        common: dict[str, Any] = {"ch": m.ch, "num_classes": num_classes, **shape}
        if role == "g_kwargs":
            common["z_dim"] = m.z_dim
        else:
            common["sn"] = m.d_sn
            if num_classes > 0:
                common["cond"] = m.cond
        if "img_shape" in params:
            common.pop("channels")
            common.pop("img_size")
        else:
            common.pop("img_shape")
        kw = {k: v for k, v in common.items() if k in params}
        if num_classes > 0 and "num_classes" not in params:
            raise ConfigError(f"model: {name!r} cannot be conditional (no num_classes option)")
        specs.append({"arch": name, "kwargs": _merge(kw, dict(extra), role)})
    return specs[0], specs[1]


def build_nets(cfg: GANConfig, num_classes: int
               ) -> tuple[Generator, Discriminator, dict[str, Any], dict[str, Any]]:
    """G and D built from the config's registry names (:func:`net_specs`).

    Args:
        cfg: the GAN config.
        num_classes: the data's class count (0: unconditional).

    Returns:
        G, D and their specs (recorded in ``run.json`` and ``generator.json``).
    """
    g_spec, d_spec = net_specs(cfg, num_classes)
    G = create_generator(g_spec["arch"], **g_spec["kwargs"])
    D = create_discriminator(d_spec["arch"], **d_spec["kwargs"])
    return G, D, g_spec, d_spec
