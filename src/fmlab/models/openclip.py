"""open_clip models: the image tower as a :class:`Backbone`, the text tower as a text encoder.

``open_clip:<arch>`` builds the architecture at random initialisation (works offline);
``open_clip:<arch>:<tag>`` asks open_clip for the pretrained tag (needs the network once, then its
cache); ``weights=`` loads a local checkpoint file instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from fmlab.errors import ModelError
from fmlab.models.backbone import Backbone
from fmlab.models.preprocess import PreprocessSpec
from fmlab.utils.io import sha256_file

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_MODEL_CACHE: dict[tuple[str, str | None, str | None, int | None], nn.Module] = {}


def parse_name(name: str) -> tuple[str, str | None]:
    parts = name.split(":")
    if parts[0] != "open_clip" or len(parts) not in (2, 3) or not parts[1]:
        raise ModelError(f"open_clip model names look like open_clip:<arch>[:<tag>], got {name!r}")
    return parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


def load_open_clip(name: str, weights: Path | None = None, seed: int | None = None) -> nn.Module:
    """The whole open_clip model (both towers), cached per process so that an image backbone and
    a text encoder built from the same name (and init ``seed``) share one instance.

    The seed only keys the cache: :func:`fmlab.models.create_backbone` seeds the RNG around it.
    """
    arch, tag = parse_name(name)
    key = (arch, tag, str(weights) if weights else None, seed)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    import open_clip

    pretrained = str(weights) if weights is not None else tag
    try:
        model = open_clip.create_model(arch, pretrained=pretrained)
    except Exception as e:
        raise ModelError(
            f"cannot load {name}{' with weights ' + str(weights) if weights else ''}: {e}. "
            "Pretrained tags need the network once; offline, pass a local weights file or drop the tag."
        ) from None
    model.eval()
    _MODEL_CACHE[key] = model
    return model


class _VisualTrunk(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def open_clip_backbone(name: str, weights: Path | None = None, seed: int | None = None) -> Backbone:
    """The image tower of ``open_clip:<arch>[:<tag>]`` as a :class:`Backbone`."""
    model = load_open_clip(name, weights, seed)
    visual = model.visual
    size = visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = tuple(getattr(visual, "image_mean", None) or _OPENAI_MEAN)
    std = tuple(getattr(visual, "image_std", None) or _OPENAI_STD)
    spec = PreprocessSpec(size, 3, mean, std, "shorter_center_crop_bicubic")
    bb = Backbone(name, _VisualTrunk(model), int(visual.output_dim), spec, None)
    if weights is not None:
        bb.weights_sha256 = sha256_file(weights)
        bb.weights_path = str(weights)
    return bb.eval()
