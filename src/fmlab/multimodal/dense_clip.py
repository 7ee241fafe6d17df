"""DenseCLIP from an aligned image-text model (the paper's setting): read a CLIP's towers densely.

DenseCLIP starts from CLIP, whose image and text towers already share one space. Given an
:class:`~fmlab.multimodal.model.ImageTextModel` (e.g. a ``fmlab clip train`` run):

* the dense backbone is its image tower (trained further by the dense objective);
* the pixel embeddings ``z`` are its image projection applied per pixel: a 1×1 convolution whose
  weight is the projection's and bias zero, so ``mean_hw(z)`` equals the model's image embedding
  (our CLIP towers mean-pool the map; DenseCLIP reads CLIP's attention-pool projections per pixel
  the same way);
* the class text is its text tower + text projection (both frozen) under learnable context
  (:class:`~fmlab.multimodal.dense_text.TowerPrompts`), so the score map is aligned from step 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from fmlab.errors import ModelError


def clip_image_tower(clip, input_size: int = 0) -> nn.Module:
    """The CLIP model's image backbone, trainable and in train mode (optionally read at ``input_size``).

    Args:
        clip: an :class:`~fmlab.multimodal.model.ImageTextModel`.
        input_size: resize images to this square size (0: as the CLIP model reads them).

    Returns:
        The backbone (the model's own module, not a copy).
    """
    import dataclasses

    bb = clip.image
    if not callable(getattr(getattr(bb, "trunk", None), "forward_map", None)):
        raise ModelError(f"model.clip: image tower {getattr(bb, 'name', '?')!r} has no trunk.forward_map "
                         "(a map before pooling); DenseCLIP from CLIP needs a ResNet-style image tower")
    if input_size:
        bb.preprocess = dataclasses.replace(bb.preprocess, input_size=(int(input_size), int(input_size)))
    return bb.requires_grad_(True).train()


def pixel_projection_weight(clip) -> torch.Tensor:
    """The image projection as a 1×1 conv weight (D, C, 1, 1) (identity when the model has none).

    Examples:
        >>> class M:  # stand-in: a 3 -> 2 projection
        ...     image_proj = nn.Linear(3, 2, bias=False)
        >>> pixel_projection_weight(M()).shape
        torch.Size([2, 3, 1, 1])
    """
    proj = clip.image_proj
    if isinstance(proj, nn.Identity):
        c = int(clip.feature_dim)
        return torch.eye(c)[:, :, None, None]
    if not isinstance(proj, nn.Linear):
        raise ModelError(f"model.clip: image projection {type(proj).__name__} is not linear; cannot read it per pixel")
    if proj.bias is not None:
        raise ModelError("model.clip: image projection has a bias; expected CLIP's bias-free projection")
    return proj.weight.detach()[:, :, None, None].clone()


@torch.no_grad()
def init_pixel_projection(encoder: nn.Module, clip) -> None:
    """Set a :class:`~fmlab.multimodal.dense.DenseImageEncoder`'s 1×1 ``proj`` to the CLIP image projection."""
    w = pixel_projection_weight(clip)
    if encoder.proj is None or tuple(encoder.proj.weight.shape) != tuple(w.shape):
        got = None if encoder.proj is None else tuple(encoder.proj.weight.shape)
        raise ModelError(f"model.clip: pixel projection {got} does not fit the CLIP projection {tuple(w.shape)}")
    encoder.proj.weight.copy_(w)
    encoder.proj.bias.zero_()


def clip_class_prompts(clip, class_names: Sequence[str], n_ctx: int = 8, seed: int = 0, center: bool = False,
                       ctx_init: str = "") -> nn.Module:
    """Learnable context over the CLIP model's frozen text tower and text projection → (K, D).

    Args:
        clip: an :class:`~fmlab.multimodal.model.ImageTextModel` whose text tower has
            ``prompt_plan``/``forward_embeds`` (``text:minilm``, ``open_clip:``).
        class_names: one name per class.
        n_ctx: context length (ignored with ``ctx_init``).
        seed: context initialisation seed.
        center: subtract the class mean of the tower outputs (off: the projection was trained on
            the raw outputs).
        ctx_init: a phrase that starts the context (e.g. the captions' ``"a picture of a"``).

    Returns:
        A :class:`~fmlab.multimodal.dense_text.TowerPrompts` whose projection is the model's.
    """
    from fmlab.multimodal.dense_text import TowerPrompts

    tower = clip.text
    for attr in ("prompt_plan", "forward_embeds", "token_embedding"):
        if not hasattr(tower, attr):
            raise ModelError(f"model.clip: text tower {getattr(tower, 'name', '?')!r} has no {attr}; "
                             "learnable context needs a tower that reads token embeddings")
    return TowerPrompts(tower, class_names, int(clip.feature_dim), n_ctx, seed, center, proj=clip.text_proj,
                        ctx_init=ctx_init)


def load_clip(ref: str):
    """The :class:`~fmlab.multimodal.model.ImageTextModel` of ``model.clip`` (a ``fmlab clip train`` run)."""
    from fmlab.errors import ConfigError
    from fmlab.multimodal.io import load_image_text_model

    try:
        return load_image_text_model(ref)
    except ModelError as e:
        raise ConfigError(f"model.clip: {e}") from None
