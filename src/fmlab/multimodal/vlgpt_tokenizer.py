"""VL-GPT's image tokenizer and detokenizer (reduced; papers.md entry 27), stage 1 of ``fmlab vlgpt``.

The paper's tokenizer turns a frozen CLIP ViT's feature map into a short sequence of CONTINUOUS
image embeddings with a causal transformer, and its detokenizer maps them back to pixels (through a
frozen diffusion model). Here, at CPU scale:

* :class:`ImageTokenizer`: a frozen image tower (e.g. the CIFAR ResNet-20) gives a feature map
  ``(B, C, h, w)``; its ``h*w`` cells become tokens; ``K`` learned query tokens follow them in one
  small transformer whose mask lets every query read all cells and only EARLIER queries (causal
  among the image embeddings, as in the paper, so embedding ``k`` never depends on ``k+1..K``).
  The ``K`` outputs are projected to ``embed_dim`` and layer-normalised without affine weights:
  every embedding then has zero mean and unit variance over its dimensions, which fixes the scale
  of the stage-2 regression target (an MSE of 1 is "no information").
* :class:`ImageDetokenizer`: a small conv decoder ``K x embed_dim -> pixels`` (the diffusion
  decoder's stand-in).
* :class:`TokenizerObjective`: the engine objective ``MSE(detok(tok(x)), x)`` on pixels in [0, 1]; a
  batch may carry the tower's precomputed ``cells`` (the tower is frozen, so they never change).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ModelError
from fmlab.utils.validation import check, positive_int

__all__ = ["ImageDetokenizer", "ImageTokenizer", "TokenizerObjective", "images_to_unit", "query_mask"]


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W)`` or ``(B, H, W, C)`` images → float ``(B, C, H, W)`` in [0, 1].

    Examples:
        >>> images_to_unit(torch.full((2, 4, 4), 255, dtype=torch.uint8)).shape
        torch.Size([2, 1, 4, 4])
    """
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ModelError(f"images: shape {tuple(x.shape)} must be (B, H, W) or (B, H, W, C)")
    return x.permute(0, 3, 1, 2).float() / 255.0


def query_mask(cells: int, queries: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean attention mask (True = blocked) of ``[cells; queries]``: cells see cells only,
    query ``k`` sees every cell and queries ``0..k``.

    Examples:
        >>> query_mask(2, 2).int().tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    """
    n = cells + queries
    blocked = torch.zeros(n, n, dtype=torch.bool, device=device)
    blocked[:cells, cells:] = True
    blocked[cells:, cells:] = torch.triu(torch.ones(queries, queries, dtype=torch.bool, device=device), 1)
    return blocked


class ImageTokenizer(nn.Module):
    """Frozen tower feature map → ``K`` continuous image embeddings through a small causal transformer.

    Args:
        tower: a :class:`~fmlab.models.Backbone` whose ``trunk.forward_map`` gives ``(B, C, h, w)``;
            it is frozen here (no gradient, eval mode).
        num_tokens: ``K``, image embeddings per image.
        embed_dim: width of each embedding.
        width: transformer width.
        layers: transformer layers.
        heads: attention heads (must divide ``width``).
        max_cells: most feature-map cells it accepts (size of the cell position table).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> tok = ImageTokenizer(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 4, 8,
        ...                      width=16, layers=1, heads=2)
        >>> tok(torch.zeros(2, 28, 28, dtype=torch.uint8)).shape
        torch.Size([2, 4, 8])
    """

    def __init__(self, tower: nn.Module, num_tokens: int = 4, embed_dim: int = 32, width: int = 64,
                 layers: int = 2, heads: int = 4, max_cells: int = 256) -> None:
        super().__init__()
        self.tower = tower.eval().requires_grad_(False)
        self.num_tokens = positive_int("num_tokens", num_tokens)
        self.embed_dim = positive_int("embed_dim", embed_dim)
        width, heads = positive_int("width", width), positive_int("heads", heads)
        check(width % heads == 0, "heads", heads, f"must divide width {width}")
        channels = int(getattr(tower, "feature_dim", 0)) or 64
        self.cell_proj = nn.Linear(channels, width)
        self.cell_pos = nn.Parameter(torch.randn(positive_int("max_cells", max_cells), width) * 0.02)
        self.queries = nn.Parameter(torch.randn(self.num_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, positive_int("layers", layers), enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, self.embed_dim))

    def train(self, mode: bool = True) -> ImageTokenizer:
        super().train(mode)
        self.tower.eval()  # frozen: its batch-norm statistics never move
        return self

    def cells(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen tower's feature-map cells ``(B, h*w, C)`` of uint8 images."""
        with torch.no_grad():
            fmap = self.tower.trunk.forward_map(self.tower.prepare(images))
        return fmap.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, K, embed_dim)`` image embeddings (each layer-normalised) of uint8 images."""
        return self.from_cells(self.cells(images))

    def from_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """``(B, K, embed_dim)`` embeddings of the tower's cells ``(B, h*w, C)`` (:meth:`cells`): the
        frozen tower's output can be computed once per image and reused every step."""
        n = cells.shape[1]
        if n > len(self.cell_pos):
            raise ModelError(f"images: {n} feature-map cells exceed max_cells {len(self.cell_pos)}")
        x = self.cell_proj(cells) + self.cell_pos[:n]
        x = torch.cat([x, self.queries.expand(len(x), -1, -1)], dim=1)
        x = self.blocks(x, mask=query_mask(n, self.num_tokens, x.device))
        z = self.out(x[:, n:])
        return F.layer_norm(z, (self.embed_dim,))


class ImageDetokenizer(nn.Module):
    """``K`` image embeddings → pixels in [0, 1]: linear to a ``size/4`` grid, two 2x up-convolutions.

    Args:
        num_tokens: ``K``.
        embed_dim: width of each embedding.
        size: output side in pixels (a multiple of 4: 28 for MNIST, 32 for CIFAR/canvas).
        channels: output channels (1 grey, 3 RGB).
        width: channels of the first grid.

    Examples:
        >>> det = ImageDetokenizer(4, 8, size=28, channels=1, width=8)
        >>> y = det(torch.randn(2, 4, 8))
        >>> y.shape, bool(((y >= 0) & (y <= 1)).all())
        (torch.Size([2, 1, 28, 28]), True)
    """

    def __init__(self, num_tokens: int, embed_dim: int, size: int = 28, channels: int = 1,
                 width: int = 64) -> None:
        super().__init__()
        self.num_tokens, self.embed_dim = positive_int("num_tokens", num_tokens), positive_int("embed_dim", embed_dim)
        self.size, self.channels = positive_int("size", size), positive_int("channels", channels)
        check(self.size % 4 == 0, "size", size, "must be a multiple of 4")
        self.width = positive_int("width", width)
        g = self.size // 4
        self.fc = nn.Linear(self.num_tokens * self.embed_dim, self.width * g * g)
        self.net = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(self.width, self.width // 2, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(self.width // 2, self.width // 4, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(self.width // 4, self.channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, channels, size, size)`` pixels in [0, 1] of embeddings ``(B, K, embed_dim)``."""
        if z.ndim != 3 or z.shape[1:] != (self.num_tokens, self.embed_dim):
            raise ModelError(f"embeddings: shape {tuple(z.shape)} must be (B, {self.num_tokens}, {self.embed_dim})")
        g = self.size // 4
        return torch.sigmoid(self.net(self.fc(z.flatten(1)).view(len(z), self.width, g, g)))

    def to_uint8(self, z: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(B, H, W)`` (grey) or ``(B, H, W, C)`` of embeddings, for viewing and classifiers."""
        with torch.no_grad():
            x = (self(z) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return x[..., 0] if self.channels == 1 else x


class TokenizerObjective(nn.Module):
    """Stage 1 as an engine objective: pixel MSE of ``detokenizer(tokenizer(images))``.

    Args:
        tokenizer: the :class:`ImageTokenizer` (its tower stays frozen).
        detokenizer: the :class:`ImageDetokenizer`.

    Examples:
        >>> from fmlab.models import create_backbone
        >>> tok = ImageTokenizer(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 2, 8,
        ...                      width=16, layers=1, heads=2)
        >>> obj = TokenizerObjective(tok, ImageDetokenizer(2, 8, size=28, channels=1, width=8))
        >>> loss, logs = obj({"images": torch.zeros(3, 28, 28, dtype=torch.uint8)})
        >>> loss.ndim, sorted(logs)
        (0, ['psnr'])
    """

    def __init__(self, tokenizer: ImageTokenizer, detokenizer: ImageDetokenizer) -> None:
        super().__init__()
        self.tokenizer, self.detokenizer = tokenizer, detokenizer

    @property
    def encoder(self) -> nn.Module:
        return nn.ModuleDict({"tokenizer": self.tokenizer, "detokenizer": self.detokenizer})

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        target = images_to_unit(batch["images"]).to(self.queries_device)
        if target.shape[1:] != (self.detokenizer.channels, self.detokenizer.size, self.detokenizer.size):
            raise ModelError(f"images: {tuple(target.shape[1:])} (C, H, W) differ from the detokenizer's "
                             f"({self.detokenizer.channels}, {self.detokenizer.size}, {self.detokenizer.size})")
        z = self.tokenizer.from_cells(batch["cells"]) if "cells" in batch else self.tokenizer(batch["images"])
        recon = self.detokenizer(z)
        loss = F.mse_loss(recon, target)
        return loss, {"psnr": (-10 * torch.log10(loss.detach().clamp_min(1e-10)))}

    @property
    def queries_device(self) -> torch.device:
        return self.tokenizer.queries.device
