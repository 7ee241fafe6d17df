"""fmlab.translate — unpaired image-to-image translation (CycleGAN + edge consistency).

Public API (kept stable; other families build on it):

- :data:`EDGES` / :func:`create_edges` — edge extractors (``sobel``, ``none``);
- :class:`CycleLoss`, :class:`IdentityLoss`, :class:`EdgeConsistencyLoss` — the non-adversarial
  terms as ``nn.Module``\\ s;
- :class:`ResnetGenerator`, :class:`PatchDiscriminator` — the nets;
- :class:`CycleGANObjective` — the engine objective (``fmlab translate train``);
- :func:`load_translator` (run dir → A→B generator in eval mode), :func:`translate_images`
  (float (N, C, H, W) in [0, 1] → same shape and range), :func:`export_translator`.
"""

from fmlab.translate.edges import EDGES, SobelEdges, create_edges
from fmlab.translate.io import export_translator, load_translator, translate_images
from fmlab.translate.losses import CycleLoss, EdgeConsistencyLoss, IdentityLoss
from fmlab.translate.nets import PatchDiscriminator, ResnetGenerator
from fmlab.translate.objective import CycleGANObjective, TranslateLossConfig

__all__ = ["EDGES", "CycleGANObjective", "CycleLoss", "EdgeConsistencyLoss", "IdentityLoss",
           "PatchDiscriminator", "ResnetGenerator", "SobelEdges", "TranslateLossConfig",
           "create_edges", "export_translator", "load_translator", "translate_images"]
