"""Save and load image-text models: ``clip_model.json`` (the :class:`ImageTextSpec`) beside a
safetensors file of the whole model's state (the engine's ``encoder.safetensors``)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch

from fmlab.errors import ModelError
from fmlab.multimodal.model import ImageTextModel, ImageTextSpec
from fmlab.utils.io import sha256_file, write_json

SPEC_FILE = "clip_model.json"
WEIGHTS_FILE = "encoder.safetensors"


def save_image_text_model(model: ImageTextModel, folder: str | Path, write_weights: bool = True) -> Path:
    """Write ``clip_model.json`` (and ``encoder.safetensors`` unless the engine already did)."""
    folder = Path(folder)
    if model.spec is None:
        raise ModelError("this ImageTextModel was built without a spec; build it with from_spec")
    path = folder / WEIGHTS_FILE
    if write_weights:
        from fmlab.engine.checkpoint import save_weights

        save_weights(model, path, metadata={"writer": "fmlab.multimodal"})
    write_json(folder / SPEC_FILE, {"format": "fmlab.image_text_model", "version": 1,
                                     "spec": asdict(model.spec), "weights": WEIGHTS_FILE,
                                     "weights_sha256": sha256_file(path)})
    return path


def load_image_text_model(ref: str | Path, key: str = "--model") -> ImageTextModel:
    """``open_clip:<arch>[:<tag>]`` (as it is), or a run folder / ``clip_model.json`` written by
    :func:`save_image_text_model` (``fmlab clip train``); ``key`` is the option an error names."""
    ref_s = str(ref)
    if ref_s.startswith("open_clip:"):
        return ImageTextModel.from_open_clip(ref_s).eval()
    p = Path(ref_s).expanduser()
    spec_path = p / SPEC_FILE if p.is_dir() else p
    if not spec_path.is_file():
        raise ModelError(f"{key} {ref_s!r}: neither open_clip:<arch> nor a folder with {SPEC_FILE}")
    try:
        meta = json.loads(spec_path.read_text())
        raw = meta["spec"]
        known = {f.name for f in fields(ImageTextSpec)}
        unknown = set(raw) - known
        if unknown:
            raise ModelError(f"{spec_path}: unknown spec keys {sorted(unknown)}")
        spec = ImageTextSpec(**raw)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{spec_path}: not an fmlab image-text model description ({e})") from None
    model = ImageTextModel.from_spec(spec, load_image_weights=False)
    weights = spec_path.parent / meta.get("weights", WEIGHTS_FILE)
    from fmlab.models.backbone import load_weights_file

    sd = load_weights_file(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ModelError(f"{weights} does not fit {model.name}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.load_state_dict(sd, strict=False)
    model.weights_sha256 = sha256_file(weights)
    return model.eval()


class _ImageEmbed(torch.nn.Module):
    """Image trunk then the model's image projection: preprocessed NCHW → joint embeddings."""

    def __init__(self, model: ImageTextModel) -> None:
        super().__init__()
        self.trunk, self.proj = model.image.trunk, model.image_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(x))


def joint_image_backbone(model: ImageTextModel):
    """The image side of ``model`` as a :class:`~fmlab.models.backbone.Backbone` whose features
    are the joint-space embeddings (``encode_image``), so the feature cache, ``fmlab adapt`` and
    every estimator see the space in which the text tower's class weights and CoOp's prompts live.
    It shares the model's modules (no copy)."""
    from fmlab.models.backbone import Backbone, state_sha256

    embed = _ImageEmbed(model)
    # without a weights file (an open_clip model at random init, a model built in memory) the
    # recorded hash is the tensors' own (the feature cache always hashes the tensors)
    sha = getattr(model, "weights_sha256", None) or state_sha256(embed)
    return Backbone(f"{model.name}:image_embed", embed, model.feature_dim,
                    model.image.preprocess, None, weights_sha256=sha).eval()
