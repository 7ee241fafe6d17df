"""DPTR's Offline Randomised Perturbation and two-stage objective (papers.md entry 57).

Pre-training reads pseudo-visual tokens (a text tower's token embeddings of the transcription) plus
``beta * e_img``, ``beta ~ U(0, beta_max)`` per sample, ``e_img`` a random image embedding from a bank:
the perturbation bridges the gap between text and image embeddings, so a decoder pre-trained on text
alone reads image tokens after the swap. Fine-tuning swaps in an image encoder's tokens and never
perturbs; evaluation never perturbs. The decoder and vocabulary are in :mod:`fmlab.multimodal.textdecoder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fmlab.errors import DataError, ModelError
from fmlab.multimodal.textdecoder import (
    PAD,
    CharDecoder,
    CharVocab,
    FixedTextTokens,  # noqa: F401  (used in the doctest)
    sequence_loss,
    teacher_forced_inputs,
)
from fmlab.utils.validation import check, finite_float

__all__ = ["STAGES", "DPTRObjective", "Frozen", "TowerTextTokens", "image_tokens", "orp_perturb"]


def orp_perturb(e_text: torch.Tensor, bank: torch.Tensor, beta_max: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offline Randomised Perturbation: ``e_text + beta * e_img`` with ``beta ~ U(0, beta_max)`` per sample.

    ``e_img`` is a row of ``bank`` chosen uniformly at random for each sample; a bank of global image
    embeddings ``(M, D)`` is added to every token, a bank of token maps ``(M, N, D)`` token by token.

    Args:
        e_text: ``(B, N, D)`` text tokens.
        bank: ``(M, D)`` or ``(M, N, D)`` image embeddings.
        beta_max: upper end of the uniform scale (>= 0).
        generator: CPU generator for ``beta`` and the choice (default: the global RNG, which the
            engine re-seeds every step).

    Returns:
        ``(e_pseudo, beta (B,), index (B,))``: the perturbed tokens, each sample's scale and bank row.

    Examples:
        >>> e, bank = torch.zeros(3, 2, 4), torch.ones(5, 4)
        >>> out, beta, idx = orp_perturb(e, bank, 0.1, torch.Generator().manual_seed(0))
        >>> torch.equal(out, beta[:, None, None].expand(3, 2, 4)), bool((beta <= 0.1).all())
        (True, True)
    """
    beta_max = finite_float("beta_max", beta_max, low=0.0)
    if e_text.ndim != 3 or bank.ndim not in (2, 3) or bank.shape[-1] != e_text.shape[-1] or len(bank) == 0 or (
            bank.ndim == 3 and bank.shape[1] != e_text.shape[1]):
        raise ModelError(f"image_bank: shape {tuple(bank.shape)} must be (M, {e_text.shape[-1]}) or "
                         f"(M, {e_text.shape[1]}, {e_text.shape[-1]}) for text tokens {tuple(e_text.shape)}")
    n = len(e_text)
    beta = (torch.rand(n, generator=generator) * beta_max).to(e_text)
    index = torch.randint(len(bank), (n,), generator=generator).to(bank.device)
    e_img = bank[index].to(e_text)
    if e_img.ndim == 2:
        e_img = e_img[:, None, :]
    return e_text + beta[:, None, None] * e_img, beta, index


def image_tokens(features: torch.Tensor) -> torch.Tensor:
    """Memory tokens of an image encoder's output: ``(B, N, D)`` as is; a map ``(B, D, H, W)`` as columns.

    A feature map is averaged over its height and read left to right, ``(B, W, D)``: the usual
    sequence layout of text recognition, where each column covers a slice of the string.

    Args:
        features: the encoder's output, ``(B, N, D)`` or ``(B, D, H, W)``.

    Returns:
        ``(B, N, D)`` tokens (``N = W`` for a map).

    Examples:
        >>> image_tokens(torch.randn(2, 16, 4, 7)).shape
        torch.Size([2, 7, 16])
    """
    if features.ndim == 4:
        return features.mean(2).transpose(1, 2)
    if features.ndim != 3:
        raise ModelError(f"image_encoder: output shape {tuple(features.shape)} must be (B, N, D) or (B, D, H, W)")
    return features


STAGES = ("pretrain", "finetune")


class DPTRObjective(nn.Module):
    """DPTR's two stages over one :class:`CharDecoder`, as an engine objective ``forward(batch) -> (loss, logs)``.

    * ``"pretrain"``: memory = ``text_tokens(texts)`` (frozen: run without gradients), plus ORP
      (:func:`orp_perturb` with a random row of ``image_bank``) when ``perturb`` is on and the
      module is training. Baseline "no perturbation": ``perturb=False``.
    * ``"finetune"``: memory = :func:`image_tokens` of ``image_encoder(images)``; never perturbed.
      Baseline "decoder from scratch": this stage on a freshly built decoder.
      :meth:`finetune` turns a pre-trained objective into this stage, sharing its decoder.

    ORP is never applied in evaluation: :meth:`predict` and ``eval()`` mode read unperturbed tokens.

    Batch keys: ``labels`` int64 ``(B, L)`` class of each character, -1 past the string's end (as
    ``render_strings`` writes), or ``texts`` (list of B transcriptions); ``"finetune"`` also needs
    ``images`` (whatever ``image_encoder`` takes). Other keys are ignored.

    Args:
        decoder: the decoder (its ``memory_dim`` must equal the token width).
        vocab: the symbols it writes.
        stage: ``"pretrain"`` or ``"finetune"``.
        text_tokens: callable ``texts -> (B, N, D)`` pseudo-visual tokens (required to pre-train), e.g.
            :class:`FixedTextTokens` or a text tower's per-token features.
        image_encoder: callable ``images -> (B, N, D)`` or ``(B, D, H, W)`` (required to fine-tune);
            an ``nn.Module`` is trained with the decoder unless its parameters are frozen.
        image_bank: ``(M, D)`` or ``(M, N, D)`` image embeddings for ORP (required with ``perturb``).
        beta_max: ORP scale upper end (paper: 0.1).
        perturb: apply ORP in pre-training.

    Examples:
        >>> vocab = CharVocab.digits()
        >>> dec = CharDecoder(vocab.size, memory_dim=8, max_len=4, d_model=16, heads=2, layers=1)
        >>> obj = DPTRObjective(dec, vocab, text_tokens=FixedTextTokens(vocab, 8, 4),
        ...                     image_bank=torch.randn(10, 8))
        >>> loss, logs = obj({"labels": torch.tensor([[1, 2, -1], [3, 4, 5]])})
        >>> loss.ndim, sorted(logs), len(obj.predict({"texts": ["12", "345"]}))
        (0, ['beta', 'loss', 'token_acc'], 2)
    """

    def __init__(self, decoder: CharDecoder, vocab: CharVocab, *, stage: str = "pretrain",
                 text_tokens: Callable[[list[str]], torch.Tensor] | None = None,
                 image_encoder: Callable[[Any], torch.Tensor] | None = None,
                 image_bank: torch.Tensor | None = None, beta_max: float = 0.1, perturb: bool = True) -> None:
        super().__init__()
        check(stage in STAGES, "stage", stage, f"must be one of {STAGES}")
        check(decoder.vocab_size == vocab.size, "vocab", vocab.size, f"symbols + 3 must equal the decoder's "
              f"vocab_size {decoder.vocab_size}")
        check(stage != "pretrain" or text_tokens is not None, "text_tokens", None, "is needed to pre-train")
        check(stage != "finetune" or image_encoder is not None, "image_encoder", None, "is needed to fine-tune")
        check(stage != "pretrain" or not perturb or image_bank is not None, "image_bank", None,
              "is needed for the perturbation (or pass perturb=False)")
        self.decoder, self.vocab, self.stage = decoder, vocab, stage
        self.text_tokens, self.image_encoder = text_tokens, image_encoder
        self.beta_max, self.perturb = finite_float("beta_max", beta_max, low=0.0), bool(perturb)
        self.register_buffer("image_bank", None if image_bank is None else torch.as_tensor(image_bank).float(),
                             persistent=False)
        self.last_beta: torch.Tensor | None = None  # the last ORP draw, for inspection
        self.last_index: torch.Tensor | None = None

    def finetune(self, image_encoder: Callable[[Any], torch.Tensor]) -> DPTRObjective:
        """The ``"finetune"`` objective over this (pre-trained) decoder, reading ``image_encoder``'s tokens."""
        return DPTRObjective(self.decoder, self.vocab, stage="finetune", image_encoder=image_encoder)

    def texts(self, batch: dict[str, Any]) -> list[str]:
        """The batch's transcriptions (``texts``, else decoded from ``labels``)."""
        if "texts" in batch:
            return [str(t) for t in batch["texts"]]
        if "labels" not in batch:
            raise DataError(f"batch: needs 'labels' or 'texts', has {sorted(batch)}")
        return self.vocab.labels_to_texts(batch["labels"])

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """Target token ids ``(B, max_len + 1)`` of the batch."""
        if "labels" in batch:
            return self.vocab.encode_labels(batch["labels"], self.decoder.max_len)
        return self.vocab.encode_texts(self.texts(batch), self.decoder.max_len)

    def memory(self, batch: dict[str, Any], perturb: bool | None = None) -> torch.Tensor:
        """The decoder's memory tokens ``(B, N, D)`` for the batch in this stage.

        Args:
            batch: see the class docstring.
            perturb: apply ORP (default: in pre-training with ``perturb`` on, while training).

        Returns:
            The tokens; with ORP, ``last_beta`` and ``last_index`` hold the draw.
        """
        if self.stage == "finetune":
            if "images" not in batch:
                raise DataError(f"batch: the finetune stage needs 'images', has {sorted(batch)}")
            return image_tokens(self.image_encoder(batch["images"]))
        with torch.no_grad():
            tokens = self.text_tokens(self.texts(batch))
        if (self.perturb and self.training) if perturb is None else perturb:
            tokens, self.last_beta, self.last_index = orp_perturb(tokens, self.image_bank, self.beta_max)
        return tokens

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher-forced cross-entropy of the transcription given the stage's memory.

        Returns:
            ``(loss, logs)``; logs: ``loss``, ``token_acc`` (share of non-PAD targets predicted) and,
            when ORP was applied, ``beta`` (its mean).
        """
        self.last_beta = None
        memory = self.memory(batch)
        targets = self.targets(batch).to(memory.device)
        logits = self.decoder(memory, teacher_forced_inputs(targets))
        loss = sequence_loss(logits, targets)
        keep = targets != PAD
        logs = {"loss": loss.detach(), "token_acc": (logits.argmax(-1) == targets)[keep].float().mean()}
        if self.last_beta is not None:
            logs["beta"] = self.last_beta.mean()
        return loss, logs

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> list[str]:
        """Greedy transcriptions of the batch, from unperturbed memory (evaluation never perturbs).

        Call ``eval()`` first when the image encoder has batch norm or dropout.

        Args:
            batch: see the class docstring (``labels``/``texts`` are only read in pre-training).

        Returns:
            B transcriptions.
        """
        return self.vocab.decode(self.decoder.greedy(self.memory(batch, perturb=False)))


class TowerTextTokens(nn.Module):
    """Pseudo-visual tokens from a BERT-style text tower: its last hidden states, optionally projected.

    The real-use counterpart of :class:`~fmlab.multimodal.textdecoder.FixedTextTokens` for a
    :class:`~fmlab.multimodal.towers.MiniLMTower` (anything with ``tokenize`` and a ``model`` returning
    ``last_hidden_state``). Pass an :class:`~fmlab.multimodal.model.ImageTextModel`'s ``text_proj`` as
    ``proj`` so the tokens live in the joint space, where image embeddings (the ORP bank) and the image
    tokens of fine-tuning live too. Padding tokens are zero. N is the batch's longest tokenisation.

    Args:
        tower: the text tower (kept frozen by :class:`DPTRObjective`, which runs it without gradients).
        proj: optional module applied to each token (e.g. ``model.text_proj``).

    Examples:
        >>> class _Tower(nn.Module):  # stands in for a MiniLMTower
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = nn.Embedding(10, 4)
        ...     def tokenize(self, texts):
        ...         ids = torch.tensor([[int(c) for c in t.ljust(3, "0")] for t in texts])
        ...         return {"input_ids": ids, "attention_mask": (ids > 0).long()}
        ...     def model(self, input_ids, attention_mask):
        ...         from types import SimpleNamespace
        ...         return SimpleNamespace(last_hidden_state=self.emb(input_ids))
        >>> TowerTextTokens(_Tower(), nn.Linear(4, 6))(["12", "345"]).shape
        torch.Size([2, 3, 6])
    """

    def __init__(self, tower: nn.Module, proj: nn.Module | None = None) -> None:
        super().__init__()
        self.tower, self.proj = tower, proj if proj is not None else nn.Identity()

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Tokens ``(B, N, D)`` of ``texts``."""
        device = next((p.device for p in self.tower.parameters()), torch.device("cpu"))
        tok = {k: v.to(device) for k, v in self.tower.tokenize(list(texts)).items()}
        hidden = self.tower.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        return self.proj(hidden) * tok["attention_mask"][..., None].to(hidden.dtype)


class Frozen(nn.Module):
    """Runs ``module`` without gradients (a frozen tower inside an objective)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False)

    def forward(self, *args: Any) -> torch.Tensor:
        with torch.no_grad():
            return self.module(*args)
