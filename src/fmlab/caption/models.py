"""The small nets of the captioning family: a mini image-text model, a GRU captioner, a GRU text
discriminator.

All text is word ids of :class:`fmlab.multimodal.vlgpt_text.WordVocab` (``PAD=0, BOS=1, EOS=2``,
words from id 5): templated captions have a few dozen words, so one word is one token.

- :class:`MiniClip`: a 3-conv image tower and a bag-of-words text tower (mean word embedding +
  MLP) trained contrastively. It plays CLIP's two roles in CgT-GAN: its frozen image tower is the
  captioner's encoder ``h`` (and the attack's feature space), its text tower scores generated
  captions. Bag of words, not a GRU, because the reward is computed on every sampled caption of
  every RL step and the attribute words ("left"/"right") carry the meaning here, not their order.
- :class:`CaptionDecoder`: a GRU whose initial state is a map of the image embedding; teacher
  forcing for MLE, :meth:`CaptionDecoder.sample` for policy gradient (samples with their log-probs).
- :class:`TextDiscriminator`: a GRU over word ids, logit "real corpus sentence" — r_nat = σ(D(ŷ)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import DataError

__all__ = ["CaptionDecoder", "ImageTower", "MiniClip", "NormalisedEncoder", "TextDiscriminator", "WORD0", "to_unit"]

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
WORD0 = 5  # first word id of WordVocab (after <pad> <bos> <eos> <boi> <unk>)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or float (B, 1, H, W) → float (B, 1, H, W) in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise DataError(f"captioner images: expected (B, H, W) or (B, 1, H, W), got "
                        f"{tuple(images.shape)}")
    return images


class ImageTower(nn.Module):
    """Three stride-2 3×3 convs, global average pool, linear map to ``dim``: x ∈ [0,1] → h(x)."""

    def __init__(self, dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(to_unit(images))


class NormalisedEncoder(nn.Module):
    """h(x) = the unit-normalised image-tower embedding (what the captioner reads)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower(images), dim=-1)


class BagTextTower(nn.Module):
    """Mean of the word embeddings (specials and padding excluded), then a 2-layer MLP."""

    def __init__(self, vocab_size: int, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        words = (ids >= WORD0).float()
        before_eos = (ids == EOS_ID).long().cumsum(1) == 0  # words after EOS do not count
        m = (words * before_eos.float()).unsqueeze(-1)
        mean = (self.embed(ids) * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.mlp(mean)


class MiniClip(nn.Module):
    """Image and text towers with a learned temperature; ``encode_*`` return unit vectors."""

    def __init__(self, vocab_size: int, dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.image = ImageTower(dim, width)
        self.text = BagTextTower(vocab_size, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(images), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(ids), dim=-1)


def _strip_after_eos(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids with PAD after the first EOS, mask of the real tokens incl. that EOS)``."""
    eos = (ids == EOS_ID).long()
    after = (eos.cumsum(1) - eos) > 0  # strictly after the first EOS
    mask = ~after
    return ids.masked_fill(after, PAD_ID), mask.float()


class CaptionDecoder(nn.Module):
    """GRU captioner: h₀ = tanh(W·f + b) from the image embedding f, then words until EOS.

    Args:
        vocab_size: WordVocab size.
        feat_dim: the image embedding's dimension.
        hidden: GRU state size; ``embed``: word embedding size.
        max_len: the longest caption (EOS included) :meth:`sample` produces.
    """

    def __init__(self, vocab_size: int, feat_dim: int, hidden: int = 128, embed: int = 64,
                 max_len: int = 16) -> None:
        super().__init__()
        self.max_len = int(max_len)
        self.init = nn.Linear(feat_dim, hidden)
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD_ID)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[[PAD_ID, BOS_ID, 3, 4]] = True  # never emit pad, bos, boi, unk
        self.register_buffer("banned", banned, persistent=False)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).masked_fill(self.banned, float("-inf"))

    def forward(self, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for target ``ids`` (B, T) (inputs: BOS + ids[:-1])."""
        bos = torch.full_like(ids[:, :1], BOS_ID)
        h0 = torch.tanh(self.init(feats)).unsqueeze(0)
        states, _ = self.gru(self.embed(torch.cat([bos, ids[:, :-1]], 1)), h0)
        return self._logits(states)

    def token_logp(self, feats: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(ids_t | ids_<t, f), mask)``, both (B, T); the mask stops after the first EOS."""
        ids, mask = _strip_after_eos(ids)
        logp = self(feats, ids).log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        return logp.masked_fill(mask == 0, 0.0), mask

    def sample(self, feats: torch.Tensor, greedy: bool = False,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``max_len`` tokens: argmax (``greedy``) or sampled from p(·|f).

        Returns:
            ``(ids, token_logp, mask)``, each (B, max_len): ids PAD after the first EOS,
            ``token_logp`` the log-probability of each emitted token (with gradient), mask 1 up
            to and including the first EOS.
        """
        b = feats.shape[0]
        h = torch.tanh(self.init(feats)).unsqueeze(0)
        tok = torch.full((b, 1), BOS_ID, dtype=torch.long, device=feats.device)
        ids, logps = [], []
        for _ in range(self.max_len):
            out, h = self.gru(self.embed(tok), h)
            logp = self._logits(out[:, 0]).log_softmax(-1)
            if greedy:
                nxt = logp.argmax(-1)
            else:
                nxt = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(1)
            ids.append(nxt)
            logps.append(logp.gather(1, nxt[:, None]).squeeze(1))
            tok = nxt[:, None]
        ids_t, mask = _strip_after_eos(torch.stack(ids, 1))
        return ids_t, torch.stack(logps, 1) * mask, mask


class TextDiscriminator(nn.Module):
    """GRU over word ids (up to the first EOS); the final state → one logit (real corpus sentence)."""

    def __init__(self, vocab_size: int, hidden: int = 64, embed: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD_ID)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B,) logits of (B, T) word ids."""
        ids, mask = _strip_after_eos(ids)
        states, _ = self.gru(self.embed(ids))
        last = (mask.sum(1).long() - 1).clamp_min(0)
        return self.head(states[torch.arange(len(ids)), last]).squeeze(-1)

    def reward(self, ids: torch.Tensor) -> torch.Tensor:
        """r_nat = D(ŷ) ∈ (0, 1), no gradient."""
        with torch.no_grad():
            return torch.sigmoid(self(ids))
