"""A small joint image-text space for DPTR on synthetic strings: two token towers and their CLIP stage.

DPTR (papers.md entry 57) needs text token features that can stand in for image token features,
which CLIP's joint space provides. There is no CLIP for rendered strings of arbitrary objects, so this
module builds a tiny one: :class:`ColumnImageTower` (a CNN whose feature map is read column by column,
plus a column position embedding and one transformer layer) and :class:`SymbolTextTower` (symbol and
position embeddings plus one transformer layer) both write ``(B, N, D)`` tokens, and
:class:`TowersObjective` aligns them CLIP-style: symmetric InfoNCE between the mean image token and the
mean text token of string images and their transcriptions. As in CLIP only the pooled embeddings are
aligned; the tokens DPTR reads live in the same space but are not matched one to one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ModelError
from fmlab.multimodal.textdecoder import PAD, CharVocab
from fmlab.utils.validation import check, positive_int

__all__ = ["ColumnImageTower", "SymbolTextTower", "TowersObjective", "filip_scores", "grey_images", "image_bank",
           "masked_mean"]


def grey_images(images: torch.Tensor, height: int | None = None) -> torch.Tensor:
    """uint8 ``(B, H, W)`` or ``(B, H, W, 3)`` images as float ``(B, 1, H, W)`` in [0, 1] (RGB -> mean).

    Args:
        images: the batch (any numeric dtype; uint8 is divided by 255).
        height: resize to this height keeping the aspect ratio (default: keep).

    Returns:
        float32 ``(B, 1, H', W')``.

    Examples:
        >>> grey_images(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), height=16).shape
        torch.Size([2, 1, 16, 16])
    """
    x = torch.as_tensor(images)
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    x = x.float() / scale
    if x.ndim == 4 and x.shape[-1] == 3:
        x = x.mean(-1)
    if x.ndim != 3:
        raise ModelError(f"images: shape {tuple(x.shape)} must be (B, H, W) or (B, H, W, 3)")
    x = x[:, None]
    if height is not None and x.shape[2] != height:
        width = max(1, round(x.shape[3] * height / x.shape[2]))
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over tokens ``(B, N, D) -> (B, D)``, only where ``mask`` (B, N) is true."""
    if mask is None:
        return tokens.mean(1)
    m = mask.to(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def _encoder_layer(dim: int, heads: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)


class ColumnImageTower(nn.Module):
    """Image tokens of a string image: CNN map averaged over height, one token per column group.

    Three 3x3 conv blocks (the first with stride 2, then 2x2 max-pools) divide the width by 8; a learned
    column position embedding and one transformer layer follow, then a linear map into the joint space.

    Args:
        dim: token width D (the joint space).
        height: input height (images are resized to it).
        max_columns: most token columns (width / 8) it accepts.
        width: conv channels.
        heads: attention heads of the transformer layer.

    Examples:
        >>> tower = ColumnImageTower(dim=16, height=32, max_columns=32, width=8, heads=2)
        >>> tower(torch.zeros(2, 32, 220, dtype=torch.uint8)).shape
        torch.Size([2, 27, 16])
    """

    def __init__(self, dim: int = 64, height: int = 32, max_columns: int = 64, width: int = 32,
                 heads: int = 4) -> None:
        super().__init__()
        self.dim, self.height = positive_int("towers.dim", dim), positive_int("height", height)
        width, self.max_columns = positive_int("towers.width", width), positive_int("max_columns", max_columns)
        self.convs = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, dim, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.pos = nn.Parameter(torch.randn(self.max_columns, dim) * 0.02)
        self.mix = _encoder_layer(dim, positive_int("towers.heads", heads))
        self.proj = nn.Linear(dim, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, W/8, D)`` of uint8 images ``(B, H, W[, 3])``."""
        x = grey_images(images, self.height).to(self.pos.device)
        cols = self.convs(x).mean(2).transpose(1, 2)  # (B, W', D)
        if cols.shape[1] > self.max_columns:
            raise ModelError(f"images: {cols.shape[1]} token columns exceed max_columns {self.max_columns}")
        return self.proj(self.mix(cols + self.pos[: cols.shape[1]]))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embedding ``(B, D)``: the mean token (the ORP bank's ``e_img``)."""
        return self(images).mean(1)


class SymbolTextTower(nn.Module):
    """Text tokens of transcriptions: symbol + position embeddings, one transformer layer, a linear map.

    Token ``i`` is the ``i``-th symbol, then one EOS token; padding slots are zero (as
    :class:`~fmlab.multimodal.textdecoder.FixedTextTokens`), so it is a drop-in ``text_tokens``.

    Args:
        vocab: the symbol vocabulary.
        dim: token width D.
        max_len: longest transcription.
        heads: attention heads.

    Examples:
        >>> tower = SymbolTextTower(CharVocab.digits(), dim=16, max_len=6, heads=2)
        >>> e = tower(["123", "45"])
        >>> e.shape, bool((e[1, 3:] == 0).all())
        (torch.Size([2, 7, 16]), True)
    """

    def __init__(self, vocab: CharVocab, dim: int = 64, max_len: int = 6, heads: int = 4) -> None:
        super().__init__()
        self.vocab, self.dim, self.max_len = vocab, positive_int("towers.dim", dim), positive_int("max_len", max_len)
        self.embed_symbols = nn.Embedding(vocab.size, dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(self.max_len + 1, dim) * 0.02)
        self.mix = _encoder_layer(dim, positive_int("towers.heads", heads))
        self.proj = nn.Linear(dim, dim)

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, max_len + 1, D), mask (B, max_len + 1))`` of ``texts``."""
        ids = self.vocab.encode_texts(list(texts), self.max_len).to(self.pos.device)
        keep = ids != PAD
        x = self.mix(self.embed_symbols(ids) + self.pos, src_key_padding_mask=~keep)
        return self.proj(x) * keep[..., None], keep

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Tokens ``(B, max_len + 1, D)`` (zero past EOS)."""
        return self.tokens(texts)[0]


def filip_scores(img: torch.Tensor, txt: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Late-interaction (FILIP, text side) scores ``(B_img, B_txt)``: for each text token its best image token.

    ``s[i, j] = mean over the kept tokens n of text j of max_w <txt[j, n], img[i, w]>`` (tokens L2-normalised).

    Args:
        img: ``(B, W, D)`` image tokens.
        txt: ``(B', N, D)`` text tokens.
        keep: ``(B', N)`` bool, the text tokens that count.

    Returns:
        ``(B, B')`` scores in [-1, 1].

    Examples:
        >>> t = torch.eye(3)[None]  # one text of 3 orthogonal tokens
        >>> float(filip_scores(t.flip(1), t, torch.ones(1, 3, dtype=torch.bool))[0, 0])
        1.0
    """
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    best = torch.einsum("jnd,iwd->ijnw", txt, img).amax(-1)  # (B, B', N)
    k = keep.to(best.dtype)[None]
    return (best * k).sum(-1) / k.sum(-1).clamp_min(1.0)


LOSSES = ("filip", "clip")


class TowersObjective(nn.Module):
    """Alignment of the two towers (engine objective): symmetric InfoNCE over image-text scores.

    ``loss="clip"``: scores are cosines of the mean image token and the mean text token (CLIP aligns
    pooled embeddings only). ``loss="filip"``: :func:`filip_scores`, each text token matched to its best
    image column (FILIP's token-wise late interaction), which aligns the token spaces DPTR reads.

    Batch keys: ``images`` (uint8 string images) and ``labels`` ``(B, L)`` (-1 past the end) or ``texts``.

    Args:
        image_tower: a :class:`ColumnImageTower`.
        text_tower: a :class:`SymbolTextTower`.
        init_temperature: initial softmax temperature (learned; CLIP: 0.07).
        loss: ``"filip"`` or ``"clip"``.

    Examples:
        >>> v = CharVocab.digits()
        >>> obj = TowersObjective(ColumnImageTower(16, 32, 32, 8, 2), SymbolTextTower(v, 16, 6, 2))
        >>> loss, logs = obj({"images": torch.zeros(3, 32, 220, dtype=torch.uint8), "texts": ["1", "22", "3"]})
        >>> loss.ndim, sorted(logs)
        (0, ['i2t_acc', 'loss', 'temperature'])
    """

    def __init__(self, image_tower: ColumnImageTower, text_tower: SymbolTextTower,
                 init_temperature: float = 0.07, loss: str = "filip") -> None:
        super().__init__()
        check(image_tower.dim == text_tower.dim, "towers.dim", image_tower.dim, f"!= text dim {text_tower.dim}")
        check(loss in LOSSES, "towers.loss", loss, f"must be one of {LOSSES}")
        self.loss = loss
        self.image_tower, self.text_tower = image_tower, text_tower
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def texts(self, batch: dict[str, Any]) -> list[str]:
        """The batch's transcriptions."""
        if "texts" in batch:
            return [str(t) for t in batch["texts"]]
        return self.text_tower.vocab.labels_to_texts(batch["labels"])

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, logs)``: InfoNCE both ways; logs ``loss``, ``i2t_acc``, ``temperature``."""
        img_tok = self.image_tower(batch["images"])
        tok, keep = self.text_tower.tokens(self.texts(batch))
        if self.loss == "filip":
            scores = filip_scores(img_tok, tok, keep)
        else:
            scores = F.normalize(img_tok.mean(1), dim=-1) @ F.normalize(masked_mean(tok, keep), dim=-1).T
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * scores
        target = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"loss": loss.detach(), "i2t_acc": acc, "temperature": 1.0 / scale.detach()}


@torch.no_grad()
def image_bank(tower: ColumnImageTower, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """ORP bank ``(M, D)``: global embeddings of natural images (e.g. CIFAR-10) through the image tower.

    Args:
        tower: the (frozen) image tower; images are turned grey and resized to its height.
        images: uint8 ``(M, h, w[, 3])``.
        batch_size: images per forward pass.

    Returns:
        float32 ``(M, D)``.
    """
    was = tower.training
    tower.eval()
    out = torch.cat([tower.embed(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])
    tower.train(was)
    return out
