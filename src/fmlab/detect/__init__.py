"""fmlab.detect — a tiny CenterNet-style object detector for small canvases (ParGANDA's detector)."""

from fmlab.detect.centernet import (CenterNetObjective, TinyCenterNet, centre_targets, decode,
                                    focal_loss)

__all__ = ["CenterNetObjective", "TinyCenterNet", "centre_targets", "decode", "focal_loss"]
