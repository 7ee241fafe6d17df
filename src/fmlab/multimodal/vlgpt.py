"""VL-GPT (reduced; papers.md entry 27): one causal transformer that captions images and draws captions.

Sequences interleave continuous image embeddings (from :class:`~fmlab.multimodal.vlgpt_tokenizer.ImageTokenizer`)
with word tokens, in both orders:

* image → text: ``[BOS, img_1..img_K, w_1..w_n, EOS]``
* text → image: ``[BOS, w_1..w_n, BOI, img_1..img_K]``

An image embedding enters through a linear map, a word through an embedding table; one causal
transformer reads the sequence; two heads read every position: word logits and the NEXT image
embedding. The loss (VL-GPT's pre-training objective) is

    L = CE(next word | prefix)  over positions whose next token is text (words, EOS, BOI)
      + lambda * MSE(f(prefix), img_next)  over positions whose next token is an image embedding

(``image_loss="cosine"``: ``1 - cos`` instead of MSE). ``lambda = 0`` is the paper's ablation: the
model still captions, but its image head never learns, so text → image breaks.
Captioning is greedy; generation feeds each predicted embedding back as the next input, then the
detokenizer draws the ``K`` embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, ModelError
from fmlab.multimodal.vlgpt_text import BOI, BOS, EOS, PAD, UNK
from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["VLGPT", "VLGPTObjective", "interleave"]

IMAGE_LOSSES = ("mse", "cosine")


def interleave(captions: torch.Tensor, num_image_tokens: int, order: str) -> dict[str, torch.Tensor]:
    """Token ids, image slots and text targets of captions in one order.

    Args:
        captions: ``(B, L)`` ids: words, EOS, PAD (:meth:`WordVocab.encode_batch`).
        num_image_tokens: ``K``.
        order: ``"i2t"`` (``[BOS, img*K, words, EOS]``) or ``"t2i"`` (``[BOS, words, BOI, img*K]``).

    Returns:
        ``ids`` ``(B, T)`` (PAD at image slots and after the end), ``image_pos`` ``(B, K)`` positions
        of the image slots, ``targets`` ``(B, T)``: the next token where it is text, else PAD.

    Examples:
        >>> s = interleave(torch.tensor([[7, 8, 2]]), 2, "t2i")
        >>> s["ids"].tolist(), s["image_pos"].tolist(), s["targets"].tolist()
        ([[1, 7, 8, 3, 0, 0]], [[4, 5]], [[7, 8, 3, 0, 0, 0]])
        >>> interleave(torch.tensor([[7, 2]]), 2, "i2t")["targets"].tolist()
        [[0, 0, 7, 2, 0]]
    """
    k = positive_int("num_image_tokens", num_image_tokens)
    captions = torch.as_tensor(captions).long()
    b, L = captions.shape
    n_words = (captions != PAD).sum(1) - 1  # EOS excluded
    if order == "i2t":
        ids = torch.cat([torch.full((b, 1), BOS), torch.full((b, k), PAD), captions], dim=1)
        image_pos = torch.arange(1, k + 1).expand(b, k)
    elif order == "t2i":
        ids = torch.full((b, L + 1 + k), PAD, dtype=torch.long)
        ids[:, 0] = BOS
        body = torch.where(captions == EOS, torch.full_like(captions, BOI), captions)
        ids[:, 1:L + 1] = body
        image_pos = (n_words + 2)[:, None] + torch.arange(k)[None, :]
    else:
        raise ConfigError(f"order: {order!r} must be i2t or t2i")
    ids, image_pos = ids.to(captions.device), image_pos.to(captions.device).contiguous()
    is_image = torch.zeros_like(ids, dtype=torch.bool)
    is_image[torch.arange(b, device=ids.device)[:, None], image_pos] = True
    nxt = torch.cat([ids[:, 1:], torch.full((b, 1), PAD, device=ids.device)], dim=1)
    nxt_img = torch.cat([is_image[:, 1:], torch.zeros((b, 1), dtype=torch.bool, device=ids.device)], dim=1)
    targets = torch.where(nxt_img, torch.full_like(nxt, PAD), nxt)
    return {"ids": ids, "image_pos": image_pos, "targets": targets}


class VLGPT(nn.Module):
    """The causal transformer over interleaved ``[image embeddings; word tokens]``.

    Args:
        vocab_size: word ids (:attr:`WordVocab.size`).
        num_image_tokens: ``K`` image embeddings per image.
        image_dim: width of an image embedding.
        width: transformer width.
        layers: transformer layers.
        heads: attention heads (must divide ``width``).
        max_len: longest sequence (``1 + K + caption words + 1``).

    Examples:
        >>> m = VLGPT(12, 2, 8, width=16, layers=1, heads=2, max_len=12)
        >>> s = interleave(torch.tensor([[6, 7, 2]]), 2, "i2t")
        >>> logits, img = m(s["ids"], torch.randn(1, 2, 8), s["image_pos"])
        >>> logits.shape, img.shape
        (torch.Size([1, 6, 12]), torch.Size([1, 6, 8]))
        >>> m.caption(torch.randn(3, 2, 8), max_words=5).shape[0]
        3
    """

    def __init__(self, vocab_size: int, num_image_tokens: int, image_dim: int, width: int = 128,
                 layers: int = 3, heads: int = 4, max_len: int = 48) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.num_image_tokens = positive_int("num_image_tokens", num_image_tokens)
        self.image_dim = positive_int("image_dim", image_dim)
        width, heads = positive_int("width", width), positive_int("heads", heads)
        check(width % heads == 0, "heads", heads, f"must divide width {width}")
        self.max_len = positive_int("max_len", max_len)
        self.tok = nn.Embedding(self.vocab_size, width)
        self.img_in = nn.Linear(self.image_dim, width)
        self.pos = nn.Parameter(torch.randn(self.max_len, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, positive_int("layers", layers), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, self.vocab_size)
        self.img_head = nn.Linear(width, self.image_dim)

    def forward(self, ids: torch.Tensor, images: torch.Tensor,
                image_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Word logits ``(B, T, V)`` and next-image predictions ``(B, T, image_dim)`` at every position.

        Args:
            ids: ``(B, T)`` token ids (anything at image slots).
            images: ``(B, J, image_dim)`` embeddings for the first ``J <= K`` image slots.
            image_pos: ``(B, J)`` positions of those slots.
        """
        b, t = ids.shape
        if t > self.max_len:
            raise ModelError(f"sequence: {t} positions exceed max_len {self.max_len}")
        if images.shape[-1] != self.image_dim or images.shape[:2] != image_pos.shape:
            raise ModelError(f"images: shape {tuple(images.shape)} must be (B, {tuple(image_pos.shape)[1]}, "
                             f"{self.image_dim})")
        x = self.tok(ids)
        is_img = torch.zeros((b, t), dtype=torch.bool, device=ids.device)
        rows = torch.arange(b, device=ids.device)[:, None]
        is_img[rows, image_pos] = True
        placed = torch.zeros_like(x).index_put((rows.expand_as(image_pos), image_pos), self.img_in(images))
        x = torch.where(is_img[..., None], placed, x) + self.pos[:t]
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device, dtype=x.dtype)
        h = self.norm(self.blocks(x, mask=causal, is_causal=True))
        return self.lm_head(h), self.img_head(h)

    @torch.no_grad()
    def caption(self, images: torch.Tensor, max_words: int = 16) -> torch.Tensor:
        """Greedy captions ``(B, <= max_words + 1)`` of image embeddings ``(B, K, image_dim)`` (EOS-ended, PAD after)."""
        b, k = len(images), self.num_image_tokens
        ids = torch.cat([torch.full((b, 1), BOS), torch.full((b, k), PAD)], dim=1).to(images.device)
        pos = torch.arange(1, k + 1, device=images.device).expand(b, k)
        done = torch.zeros(b, dtype=torch.bool, device=images.device)
        out = []
        steps = min(max_words, self.max_len - 1 - k)
        for step in range(steps + 1):
            logits = self(ids, images, pos)[0][:, -1].clone()
            logits[:, [PAD, BOS, BOI, UNK]] = float("-inf")
            if step == steps:
                logits[:, :] = float("-inf")
                logits[:, EOS] = 0.0
            nxt = torch.where(done, torch.full_like(ids[:, 0], PAD), logits.argmax(-1))
            out.append(nxt)
            done = done | (nxt == EOS)
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def generate(self, captions: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(B, K, image_dim)`` of captions ``(B, L)`` (words, EOS, PAD), one at a time.

        Prompts ``[BOS, words, BOI]``; each predicted embedding becomes the next input. Captions of one
        length run as a batch.
        """
        captions = torch.as_tensor(captions).long()
        n_words = (captions != PAD).sum(1) - 1
        out = torch.zeros(len(captions), self.num_image_tokens, self.image_dim, device=captions.device)
        for n in n_words.unique().tolist():
            rows = (n_words == n).nonzero().flatten()
            s = interleave(captions[rows][:, :n + 1], self.num_image_tokens, "t2i")
            ids, pos = s["ids"], s["image_pos"]
            z = torch.zeros(len(rows), 0, self.image_dim, device=captions.device)
            for k in range(self.num_image_tokens):
                cut = int(pos[0, k])  # the prefix up to (not including) slot k
                pred = self(ids[:, :cut], z, pos[:, :k])[1][:, -1]
                z = torch.cat([z, pred[:, None]], dim=1)
            out[rows] = z
        return out

    def caption_nll(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed word NLL (EOS included) of each caption given its image, and its token count; ``(B,)`` each."""
        s = interleave(captions, self.num_image_tokens, "i2t")
        logits = self(s["ids"], images, s["image_pos"])[0]
        nll = F.cross_entropy(logits.transpose(1, 2), s["targets"], ignore_index=PAD, reduction="none")
        return nll.sum(1), (s["targets"] != PAD).sum(1)


class VLGPTObjective(nn.Module):
    """Stage 2 as an engine objective: CE on text positions + ``lambda`` x regression of the next image embedding.

    Every sample of a batch is used in both orders (image → text and text → image).

    Args:
        model: the :class:`VLGPT`.
        caption_ids: ``(N, L)`` ids of every caption the batches point at (``caption_ids`` rows).
        image_loss_weight: ``lambda`` (0: the ablation, no regression term at all).
        image_loss: ``"mse"`` or ``"cosine"``.
        tokenizer: turns a batch's ``images`` into embeddings when it has no ``image_tokens``
            (frozen: no gradient reaches it).

    Examples:
        >>> m = VLGPT(12, 2, 8, width=16, layers=1, heads=2, max_len=12)
        >>> obj = VLGPTObjective(m, torch.tensor([[6, 7, 2], [8, 2, 0]]), image_loss_weight=1.0)
        >>> loss, logs = obj({"image_tokens": torch.randn(2, 2, 8), "caption_ids": torch.tensor([0, 1])})
        >>> sorted(logs)
        ['image_loss', 'text_loss']
    """

    def __init__(self, model: VLGPT, caption_ids: torch.Tensor, image_loss_weight: float = 1.0,
                 image_loss: str = "mse", tokenizer: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.weight = finite_float("objective.image_loss_weight", image_loss_weight, low=0.0)
        if image_loss not in IMAGE_LOSSES:
            raise ConfigError(f"objective.image_loss: {image_loss!r} is not one of {', '.join(IMAGE_LOSSES)}")
        self.image_loss = image_loss
        self.tokenizer = tokenizer.eval().requires_grad_(False) if tokenizer is not None else None
        self.register_buffer("caption_table", torch.as_tensor(caption_ids).long(), persistent=False)

    @property
    def encoder(self) -> VLGPT:
        return self.model

    def train(self, mode: bool = True) -> VLGPTObjective:
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    def regression(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean MSE (or ``1 - cos``) between predicted and true image embeddings ``(..., D)``."""
        if self.image_loss == "mse":
            return F.mse_loss(pred, target)
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        if "image_tokens" in batch:
            z = batch["image_tokens"].float()
        else:
            with torch.no_grad():
                z = self.tokenizer(batch["images"])
        caps = self.caption_table[batch["caption_ids"].to(self.caption_table.device)]
        caps = caps[:, :int((caps != PAD).sum(1).max())]
        ce_sum, n_text, reg = 0.0, 0, []
        rows = torch.arange(len(z), device=z.device)[:, None]
        for order in ("i2t", "t2i"):
            s = interleave(caps, self.model.num_image_tokens, order)
            logits, img = self.model(s["ids"], z, s["image_pos"])
            ce_sum = ce_sum + F.cross_entropy(logits.transpose(1, 2), s["targets"], ignore_index=PAD,
                                              reduction="sum")
            n_text += int((s["targets"] != PAD).sum())
            reg.append(self.regression(img[rows, s["image_pos"] - 1], z))  # position p-1 predicts slot p
        text_loss = ce_sum / max(n_text, 1)
        image_loss = torch.stack(reg).mean()
        loss = text_loss + self.weight * image_loss if self.weight > 0 else text_loss
        return loss, {"text_loss": text_loss.detach(), "image_loss": image_loss.detach()}
