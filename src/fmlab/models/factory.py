"""``create_backbone(name, weights=None, **kwargs)``: one entry point, names resolved by a registry.

Built-in names: ``resnet{20,32,44,56}_cifar``, ``resnet_cifar`` (any depth/width), ``lenet5_mnist``,
``vit_tiny_cifar``; prefixed families: ``timm:<model>``, ``open_clip:<arch>[:<pretrained tag>]`` and
``text:<name>`` (text encoders, see :mod:`fmlab.models.text`). Weights always come from local files;
``open_clip`` pretrained tags need the network and fail with a clear error when offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from fmlab.errors import ModelError
from fmlab.models.backbone import Backbone, load_into_backbone, load_weights_file
from fmlab.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from fmlab.registry import Registry
from fmlab.utils.io import sha256_file

BackboneFactory = Callable[..., Backbone]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")


def create_backbone(name: str, weights: str | Path | None = None, seed: int | None = None,
                    **kwargs) -> nn.Module:
    """Build a backbone by registry name, optionally loading local ``weights``.

    Without weights the network is a random initialisation, and *which* one depends on the
    random state. ``seed`` makes it reproducible across processes: the model is built under a
    forked RNG seeded with ``seed`` (the caller's global RNG is left untouched) and the seed is
    kept as ``backbone.init_seed``, which :meth:`fmlab.results.Protocol.of` records with every
    result. ``seed=None`` keeps the historical behaviour (the global RNG draws the init), which
    pre-training relies on: ``trainer.seed`` seeds the global RNG before the model is built.

    Args:
        name: a registry name (``resnet20_cifar``, ``lenet5_mnist``, ...; see
            :func:`list_backbones`), ``timm:<model>``, ``open_clip:<arch>[:<tag>]`` or
            ``text:<name>``.
        weights: a local weights file (safetensors or a torch state dict, loaded with
            ``weights_only=True``); ``encoder.json`` beside it supplies recorded architecture
            options.
        seed: seed of the random initialisation (None: draw from the global RNG).
        **kwargs: architecture options of the registry entry (``depth``, ``width``, ...).

    Returns:
        A :class:`Backbone` for image models, a text encoder for ``text:`` names.

    Raises:
        fmlab.errors.ModelError: unknown name, missing or unusable weights file.

    Examples:
        >>> import torch
        >>> bb = create_backbone("resnet20_cifar", seed=0)
        >>> x = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
        >>> tuple(bb.encode(x).shape), tuple(bb(x).shape), bb.init_seed
        ((2, 64), (2, 10), 0)
        >>> again = create_backbone("resnet20_cifar", seed=0)
        >>> all(torch.equal(a, b) for a, b in zip(bb.state_dict().values(), again.state_dict().values()))
        True
    """
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.is_file():
            raise ModelError(f"weights file not found: {weights}")
        kwargs = {**_recorded_kwargs(name, weights), **kwargs}
    if seed is None:
        return _build(name, weights, **kwargs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelError(f"seed: {seed!r} must be an integer >= 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(name, weights, seed=seed, **kwargs)
    model.init_seed = seed
    return model


def _build(name: str, weights: Path | None, seed: int | None = None, **kwargs) -> nn.Module:
    if name.startswith("timm:"):
        return _timm_backbone(name[5:], weights, **kwargs)
    if name.startswith("open_clip:"):
        from fmlab.models.openclip import open_clip_backbone

        return open_clip_backbone(name, weights, seed=seed, **kwargs)
    if name.startswith("text:"):
        from fmlab.models.text import create_text_encoder

        return create_text_encoder(name, weights=weights, seed=seed, **kwargs)
    return BACKBONES.get(name)(weights=weights, **kwargs)


def _recorded_kwargs(name: str, weights: Path) -> dict:
    """Architecture options an fmlab run recorded beside its export (``encoder.json``), so that
    ``create_backbone(name, weights=RUN/encoder.safetensors)`` rebuilds the trained shape without
    the user repeating them; explicit keyword arguments still win."""
    import json

    meta = weights.with_name("encoder.json")
    if not meta.is_file():
        return {}
    try:
        rec = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{meta}: not readable JSON ({e})") from None
    if not isinstance(rec, dict) or rec.get("architecture") != name:
        return {}
    kw = rec.get("kwargs") or {}
    if not isinstance(kw, dict):
        raise ModelError(f"{meta}: 'kwargs' must be an object")
    return kw


def list_backbones() -> list[str]:
    """Names :func:`create_backbone` accepts: the registry's names, then the prefixed families.

    Returns:
        Sorted registry names followed by ``timm:<model>``, ``open_clip:<arch>[:<tag>]`` and
        ``text:minilm``.

    Examples:
        >>> "resnet20_cifar" in list_backbones() and list_backbones()[-1] == "text:minilm"
        True
    """
    return BACKBONES.names() + ["timm:<model>", "open_clip:<arch>[:<tag>]", "text:minilm"]


def _finish(bb: Backbone, weights: Path | None, head_prefixes: tuple[str, ...]) -> Backbone:
    if weights is not None:
        load_into_backbone(bb, load_weights_file(weights), weights, head_prefixes)
        bb.weights_sha256 = sha256_file(weights)
        bb.weights_path = str(weights)
    bb.eval()
    return bb


def _resnet_cifar(depth: int, name: str, weights: Path | None, width: int = 16,
                  num_classes: int = 10, in_chans: int = 3) -> Backbone:
    from fmlab.models.resnet_cifar import ResNetCifarTrunk

    trunk = ResNetCifarTrunk(depth=depth, width=width, in_chans=in_chans)
    head = nn.Linear(trunk.feature_dim, num_classes) if num_classes else None
    spec = PreprocessSpec((32, 32), in_chans, IMAGENET_MEAN[:in_chans] if in_chans == 3 else (0.5,),
                          IMAGENET_STD[:in_chans] if in_chans == 3 else (0.25,), "bilinear")
    bb = Backbone(name, trunk, trunk.feature_dim, spec, head)
    return _finish(bb, weights, ("linear",))


for _depth in (20, 32, 44, 56):
    BACKBONES.add(
        f"resnet{_depth}_cifar",
        lambda weights=None, _d=_depth, **kw: _resnet_cifar(_d, f"resnet{_d}_cifar", weights, **kw),
    )


@BACKBONES.register("resnet_cifar")
def _resnet_cifar_any(weights: Path | None = None, depth: int = 20, width: int = 16, **kw) -> Backbone:
    return _resnet_cifar(depth, f"resnet{depth}_cifar_w{width}", weights, width=width, **kw)


@BACKBONES.register("lenet5_mnist")
def _lenet5(weights: Path | None = None, num_classes: int = 10) -> Backbone:
    from fmlab.models.lenet import LeNet5Trunk

    trunk = LeNet5Trunk()
    # The checkpoint was trained on MNIST resized 28→32 bilinearly, pixels in [0, 1], no normalisation.
    spec = PreprocessSpec((32, 32), 1, (0.0,), (1.0,), "bilinear")
    bb = Backbone("lenet5_mnist", trunk, trunk.feature_dim, spec, nn.Linear(84, num_classes))
    return _finish(bb, weights, ("fc.f7",))


@BACKBONES.register("vit_tiny_cifar")
def _vit_tiny_cifar(weights: Path | None = None, num_classes: int = 10, **kw) -> Backbone:
    from fmlab.models.vit import vit_tiny_cifar

    trunk = vit_tiny_cifar(**kw)
    dim, img, chans = int(trunk.feature_dim), int(trunk.img_size), int(trunk.in_chans)
    spec = PreprocessSpec((img, img), chans, IMAGENET_MEAN if chans == 3 else (0.5,),
                          IMAGENET_STD if chans == 3 else (0.25,), "bilinear")
    bb = Backbone("vit_tiny_cifar", trunk, dim, spec, nn.Linear(dim, num_classes) if num_classes else None)
    return _finish(bb, weights, ("head_linear",))


def _timm_backbone(model_name: str, weights: Path | None, **kwargs) -> Backbone:
    import timm

    try:
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    except Exception as e:
        raise ModelError(f"cannot create timm model {model_name!r}: {e}") from None
    if weights is not None:
        sd = load_weights_file(weights)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ModelError(
                f"weights {weights} do not fit timm:{model_name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    head = None
    if getattr(model, "num_classes", 0):
        import copy

        head = copy.deepcopy(model.get_classifier())
        if not isinstance(head, nn.Module) or isinstance(head, nn.Identity):
            head = None
    model.reset_classifier(0)
    cfg = timm.data.resolve_model_data_config(model)
    size = kwargs.get("img_size", cfg["input_size"][1:])
    size = (size, size) if isinstance(size, int) else tuple(size)
    spec = PreprocessSpec(
        size, int(cfg["input_size"][0]), tuple(cfg["mean"]), tuple(cfg["std"]),
        cfg.get("interpolation", "bilinear") if cfg.get("interpolation") in ("bilinear", "bicubic") else "bilinear",
    )
    bb = Backbone(f"timm:{model_name}", model, int(model.num_features), spec, head)
    if weights is not None:
        bb.weights_sha256 = sha256_file(weights)
        bb.weights_path = str(weights)
    return bb.eval()
