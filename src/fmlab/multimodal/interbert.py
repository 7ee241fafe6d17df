"""InterBERT's fusion encoder and its masking rules (Lin et al., 2020; papers.md entry 44).

The encoder reads ``[regions; words]``: region tokens are the cells of a ``grid x grid`` pooling
of the image tower's last feature map (the "regions" of a detector-free setup), word tokens are
the text tower's frozen word embeddings of the caption's WordPiece ids. A *single-stream*
module (joint self-attention over both) lets the modalities interact; a *two-stream* module on
top (one transformer per modality, each attending only to its own tokens) keeps single-modal
features. Heads: masked segment modelling (MSM, predict masked words through the tied word
embeddings), masked region modelling (MRM, predict a masked region's class distribution) and
image-text matching (ITM, one logit from the text ``[CLS]`` and the mean region output).

Masking rules (pure functions, so tests measure them on big batches):

* :func:`mask_words` — ``round(rate * n)`` of a caption's ``n`` words (``[CLS]``/``[SEP]``/pads
  excluded) are masked, either as independent tokens or as contiguous *segments* of 1..``max_span``
  words separated by at least one unmasked word (MSM's span masking).
* :func:`mask_region_groups` — overlapping regions are masked together: a grid cell's
  neighbours overlap it, so whole ``group x group`` blocks of cells are masked, and their input
  features are zeroed (:func:`zero_regions`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import ConfigError

TASKS = ("msm", "mrm", "itm")
#: the options that fix the fusion encoder's shape (saved in ``interbert.json``)
ARCH_KEYS = ("hidden", "heads", "single_layers", "two_stream_layers", "grid")


@dataclass
class InterBertOptions:
    """``loss.interbert`` of ``fmlab clip train`` (``loss.name: interbert``).

    ``tasks`` picks the pre-training terms (``msm``, ``mrm``, ``itm``); fine-tuning for retrieval
    is ``tasks: [itm]`` with ``init`` (a pre-trained run, or null for the no-pre-training arm) and
    ``dual`` (a ``fmlab clip train`` run whose top-``negatives_k`` give the hard negatives).
    """

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    msm_weight: float = 1.0
    mrm_weight: float = 1.0
    itm_weight: float = 1.0
    hidden: int = 64
    heads: int = 4
    single_layers: int = 2
    two_stream_layers: int = 1
    grid: int = 4  # regions = grid x grid cells of the image tower's last feature map
    word_mask_rate: float = 0.15
    span_mask: bool = True  # False: independent token masking (the ablation)
    max_span: int = 3
    region_mask_rate: float = 0.15
    region_group: int = 2  # masked regions come in group x group blocks of overlapping cells
    region_targets: str = "auto"  # "masks" (canvas class areas), "head" (frozen tower's classifier)
    negatives: str = "random"  # "random" or "hard" (the dual encoder's top-k; needs dual)
    negatives_k: int = 16
    dual: str | None = None
    init: str | None = None
    seed: int = 0  # the fusion encoder's initialisation (a run is reproducible in any process)

    def validate(self, prefix: str = "loss.interbert") -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ConfigError(f"{prefix}.tasks: {bad[0] if bad else '[]'!r} is not a term; "
                              f"choose among {', '.join(TASKS)}")
        for key in ("hidden", "heads", "single_layers", "grid", "max_span", "region_group",
                    "negatives_k"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} must be >= 1")
        if self.two_stream_layers < 0:
            raise ConfigError(f"{prefix}.two_stream_layers: must be >= 0")
        if self.hidden % self.heads:
            raise ConfigError(f"{prefix}.heads: {self.heads} must divide hidden {self.hidden}")
        if self.region_group > self.grid:
            raise ConfigError(f"{prefix}.region_group: {self.region_group} exceeds grid {self.grid}")
        for key in ("word_mask_rate", "region_mask_rate"):
            if not 0 < getattr(self, key) <= 0.5:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} must be in (0, 0.5]")
        choices = {"region_targets": ("auto", "masks", "head"), "negatives": ("random", "hard")}
        for key, ok in choices.items():
            if getattr(self, key) not in ok:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} is not one of {', '.join(ok)}")
        if self.negatives == "hard" and not self.dual:
            raise ConfigError(f"{prefix}.negatives: hard needs {prefix}.dual (a fmlab clip train run)")

    def arch(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ARCH_KEYS}


def mask_words(valid: torch.Tensor, rate: float, span: bool, max_span: int = 3,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Which words to mask: ``round(rate * n)`` (at least 1) of each row's ``n`` maskable words.

    Why segments: a masked word next to its unmasked neighbours is often trivially implied
    by them ("left [MASK] a"); masking a contiguous segment forces the model to use the image.

    Args:
        valid: (B, L) bool, the maskable words (one contiguous run per row, e.g. between
            ``[CLS]`` and ``[SEP]``).
        rate: fraction of maskable words to mask.
        span: True: segments of 1..``max_span`` words with an unmasked word between segments;
            False: independent words.
        max_span: the longest segment.
        generator: the random stream.

    Returns:
        (B, L) bool mask (a subset of ``valid``).

    Examples:
        >>> valid = torch.zeros(2, 12, dtype=torch.bool); valid[:, 1:11] = True
        >>> m = mask_words(valid, 0.3, span=True, max_span=3, generator=torch.Generator().manual_seed(0))
        >>> m.sum(1).tolist(), bool((m & ~valid).any())
        ([3, 3], False)
    """
    out = torch.zeros_like(valid)
    for b in range(valid.shape[0]):
        pos = valid[b].nonzero().flatten()
        n = int(pos.numel())
        if n == 0:
            continue
        k = min(n, max(1, round(rate * n)))
        if not span:
            out[b, pos[torch.randperm(n, generator=generator)[:k]]] = True
            continue
        for start, length in _segments(n, k, max_span, generator):
            out[b, pos[start:start + length]] = True
    return out


def _segments(n: int, k: int, max_span: int, generator) -> list[tuple[int, int]]:
    """Random segments of total length ``k`` in ``0..n-1`` with a gap of >= 1 between them."""
    lengths: list[int] = []
    while sum(lengths) < k:
        lengths.append(int(torch.randint(1, max_span + 1, (1,), generator=generator)))
    lengths[-1] -= sum(lengths) - k
    if k + len(lengths) - 1 > n:  # too many segments to separate: the fewest, longest ones
        lengths = [max_span] * (k // max_span) + ([k % max_span] if k % max_span else [])
    if k + len(lengths) - 1 > n:
        lengths = [k]  # only at rates near 1/2 with max_span 1; then one segment
    m = len(lengths)
    free = n - k - (m - 1)
    bars = torch.randperm(free + m, generator=generator)[:m].sort().values.tolist()
    gaps = [bars[0]] + [bars[i] - bars[i - 1] - 1 for i in range(1, m)]
    out, at = [], 0
    for i, length in enumerate(lengths):
        at += gaps[i] + (1 if i else 0)
        out.append((at, length))
        at += length
    return out


def mask_region_groups(batch: int, grid: int, rate: float, group: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Masked grid cells: ``max(1, round(rate * grid² / group²))`` random ``group x group`` blocks.

    Why blocks: neighbouring cells overlap in receptive field (as InterBERT's regions with
    IoU > 0.4 do); masking one cell alone lets the model copy it from its neighbours.

    Args:
        batch: number of images.
        grid: cells per side.
        rate: target fraction of masked cells (before overlaps of blocks).
        group: block side in cells.
        generator: the random stream.

    Returns:
        (batch, grid*grid) bool, row-major cells.

    Examples:
        >>> m = mask_region_groups(3, 4, 0.25, 2, torch.Generator().manual_seed(0))
        >>> m.shape, m.sum(1).tolist()
        (torch.Size([3, 16]), [4, 4, 4])
    """
    n_blocks = max(1, round(rate * grid * grid / (group * group)))
    side = grid - group + 1
    out = torch.zeros(batch, grid, grid, dtype=torch.bool)
    for b in range(batch):
        for a in torch.randperm(side * side, generator=generator)[:n_blocks].tolist():
            r, c = divmod(a, side)
            out[b, r:r + group, c:c + group] = True
    return out.reshape(batch, grid * grid)


def zero_regions(regions: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Region features with the masked ones set to zero (MRM's input corruption).

    Examples:
        >>> zero_regions(torch.ones(1, 3, 2), torch.tensor([[False, True, False]]))[0, :, 0].tolist()
        [1.0, 0.0, 1.0]
    """
    return regions.masked_fill(masked.unsqueeze(-1), 0.0)


def grid_regions(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) map → (B, grid², C) region features (average pooling, row-major cells)."""
    return F.adaptive_avg_pool2d(feature_map, grid).flatten(2).transpose(1, 2)


def _layers(n: int, hidden: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0,
                                                    batch_first=True, norm_first=True)
                         for _ in range(n))


class InterBertFusion(nn.Module):
    """Single-stream then two-stream transformer over ``[regions; words]`` with InterBERT's heads.

    Args:
        region_dim: channels of a region feature.
        word_dim: width of the (frozen) word embeddings.
        region_classes: outputs of the MRM head.
        max_len: the longest caption in tokens.
        options: the architecture keys of :class:`InterBertOptions`.

    Examples:
        >>> fus = InterBertFusion(8, 6, 5, 12, InterBertOptions(hidden=16, heads=2, grid=2))
        >>> img, txt = fus(torch.randn(3, 4, 8), torch.randn(3, 7, 6), torch.zeros(3, 7, dtype=torch.bool))
        >>> tuple(img.shape), tuple(txt.shape), tuple(fus.itm(img, txt).shape)
        ((3, 4, 16), (3, 7, 16), (3,))
    """

    def __init__(self, region_dim: int, word_dim: int, region_classes: int, max_len: int,
                 options: InterBertOptions) -> None:
        super().__init__()
        h, o = options.hidden, options
        self.region_in = nn.Sequential(nn.Linear(region_dim, h), nn.LayerNorm(h))
        self.word_in = nn.Sequential(nn.Linear(word_dim, h), nn.LayerNorm(h))
        self.region_pos = nn.Parameter(0.02 * torch.randn(o.grid * o.grid, h))
        self.word_pos = nn.Parameter(0.02 * torch.randn(max_len, h))
        self.type_emb = nn.Parameter(0.02 * torch.randn(2, h))
        self.single = _layers(o.single_layers, h, o.heads)
        self.image_stream = _layers(o.two_stream_layers, h, o.heads)
        self.text_stream = _layers(o.two_stream_layers, h, o.heads)
        self.norm_image, self.norm_text = nn.LayerNorm(h), nn.LayerNorm(h)
        self.msm_head = nn.Sequential(nn.Linear(h, word_dim), nn.GELU(), nn.LayerNorm(word_dim))
        self.mrm_head = nn.Linear(h, region_classes)
        self.itm_head = nn.Linear(2 * h, 1)
        self.max_len = int(max_len)

    def forward(self, regions: torch.Tensor, words: torch.Tensor,
                pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode pairs.

        Args:
            regions: (B, R, region_dim) region features (masked ones already zeroed).
            words: (B, L, word_dim) word embeddings (``L <= max_len``).
            pad: (B, L) bool, True at padding.

        Returns:
            Region outputs (B, R, hidden) and word outputs (B, L, hidden).
        """
        r, length = regions.shape[1], words.shape[1]
        x_img = self.region_in(regions) + self.region_pos[:r] + self.type_emb[0]
        x_txt = self.word_in(words) + self.word_pos[:length] + self.type_emb[1]
        x = torch.cat([x_img, x_txt], 1)
        key_pad = torch.cat([torch.zeros(pad.shape[0], r, dtype=torch.bool, device=pad.device), pad], 1)
        for layer in self.single:
            x = layer(x, src_key_padding_mask=key_pad)
        x_img, x_txt = x[:, :r], x[:, r:]
        for img_layer, txt_layer in zip(self.image_stream, self.text_stream):
            x_img = img_layer(x_img)
            x_txt = txt_layer(x_txt, src_key_padding_mask=pad)
        return self.norm_image(x_img), self.norm_text(x_txt)

    def itm(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """(B,) matching logits from the text ``[CLS]`` output and the mean region output."""
        return self.itm_head(torch.cat([txt[:, 0], img.mean(1)], -1)).squeeze(-1)

    def msm_logits(self, txt: torch.Tensor, word_table: torch.Tensor) -> torch.Tensor:
        """(N, vocab) word logits of word outputs (N, hidden), tied to the word embeddings."""
        return self.msm_head(txt) @ word_table.T
