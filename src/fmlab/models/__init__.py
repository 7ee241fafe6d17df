"""Backbones and text encoders behind one registry (``create_backbone``)."""

from fmlab.models.backbone import Backbone, load_weights_file
from fmlab.models.factory import BACKBONES, create_backbone, list_backbones
from fmlab.models.preprocess import PreprocessSpec

__all__ = ["BACKBONES", "Backbone", "PreprocessSpec", "create_backbone", "list_backbones",
           "load_weights_file"]
