"""Retrieval by re-ranking: a dual encoder's top-k, reordered by an InterBERT run's ITM score.

A fusion encoder reads every (image, caption) pair jointly, so scoring all pairs is quadratic
in a CPU-bound way; InterBERT's retrieval fine-tuning is therefore evaluated as a re-ranker: for
each query the dual encoder (``fmlab clip train``, cosine similarity) shortlists ``k``
candidates, the fusion encoder's matching logit orders them, and everything below rank ``k``
keeps the dual encoder's order. ``fmlab clip retrieval --model DUAL --rerank RUN --rerank-k K``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ModelError
from fmlab.multimodal.interbert import InterBertFusion, InterBertOptions
from fmlab.multimodal.interbert_objective import (FUSION_FILE, image_regions, read_interbert_meta,
                                                  text_specials)


def rerank_scores(sim: torch.Tensor, k: int,
                  score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Scores whose per-row order is the dual order with the top ``k`` reordered by ``score``.

    Args:
        sim: (Q, N) dual-encoder similarities (row = query).
        k: shortlist length (clipped to N).
        score: ``score(query_index, candidate_index) -> (M,)`` re-ranking logits of M pairs.

    Returns:
        (Q, N): the shortlist gets ``max(sim) + 1 + (k - rank by score)``, the rest keeps ``sim``,
        so a shortlisted candidate stays above every other one.

    Examples:
        >>> sim = torch.tensor([[0.9, 0.8, 0.1, 0.7]])
        >>> out = rerank_scores(sim, 2, lambda q, c: c.float())  # prefers the higher index
        >>> out.argsort(1, descending=True).tolist()
        [[1, 0, 3, 2]]
    """
    k = min(int(k), sim.shape[1])
    top = sim.topk(k, dim=1).indices
    q = torch.arange(sim.shape[0]).repeat_interleave(k)
    s = score(q, top.flatten()).reshape(sim.shape[0], k).to(sim.dtype)
    rank = s.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    out = sim.clone()
    out.scatter_(1, top, sim.max() + 1 + (k - rank).to(sim.dtype))
    return out


class InterBertScorer:
    """The matching logit of an InterBERT run (``fmlab clip train`` with ``loss.name: interbert``).

    Args:
        run: the run folder (``clip_model.json`` + ``encoder.safetensors`` for the towers,
            ``interbert.json`` + ``interbert.safetensors`` for the fusion encoder).

    Raises:
        fmlab.errors.ModelError: the folder is not such a run, or its weights do not fit.
    """

    def __init__(self, run: str | Path) -> None:
        from fmlab.models.backbone import load_weights_file
        from fmlab.multimodal.io import load_image_text_model

        run = Path(run)
        meta = read_interbert_meta(run)
        self.model = load_image_text_model(run)
        self.options = InterBertOptions(**meta["options"])
        self.fusion = InterBertFusion(meta["region_dim"], meta["word_dim"], meta["region_classes"],
                                      meta["max_len"], self.options)
        try:
            self.fusion.load_state_dict(load_weights_file(run / meta.get("weights", FUSION_FILE)))
        except RuntimeError as e:
            raise ModelError(f"{run / FUSION_FILE} does not fit {run / 'interbert.json'}: "
                             f"{str(e).splitlines()[0]}") from None
        self.fusion.eval()
        text_specials(self.model.text)

    @torch.no_grad()
    def regions(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """(n, grid², C) region features of every image of an :class:`ImageSplit`."""
        rows = [image_regions(self.model, torch.from_numpy(x), self.options.grid)
                for _, x in images.iter_batches(batch_size)]
        return torch.cat(rows)

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention masks (n, L <= max_len) of ``texts``."""
        tok = self.model.text.tokenize(list(texts))
        length = self.fusion.max_len
        return tok["input_ids"][:, :length], tok["attention_mask"][:, :length]

    @torch.no_grad()
    def pairs(self, regions: torch.Tensor, tokens: tuple[torch.Tensor, torch.Tensor],
              image_idx: torch.Tensor, text_idx: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """(M,) matching logits of the pairs ``(image_idx[m], text_idx[m])``."""
        ids, attn = tokens
        out = []
        for s in range(0, len(image_idx), chunk):
            i, t = image_idx[s:s + chunk], text_idx[s:s + chunk]
            length = int(attn[t].sum(1).max())
            words = self.model.text.token_embedding(ids[t, :length])
            img, txt = self.fusion(regions[i], words, attn[t, :length] == 0)
            out.append(self.fusion.itm(img, txt))
        return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def rerank_evaluate(dual: Any, run: str | Path, split: Any, k: int = 10,
                    batch_size: int = 64, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Recall@k of the dual encoder's top-``k`` re-ranked by an InterBERT run, both directions.

    Args:
        dual: an :class:`ImageTextModel` (its cosine similarities give the shortlists).
        run: the InterBERT run folder.
        split: an :class:`~fmlab.data.ImageTextSplit`.
        k: shortlist length.
        batch_size: images per forward pass.
        ks: recall cut-offs.

    Returns:
        ``image_to_text_R@k`` / ``text_to_image_R@k`` and counts (``rerank_k``, ``n_images``, ``n_texts``).
    """
    from fmlab.multimodal.evaluate import embed_images, embed_texts, retrieval_metrics

    dual.eval()
    captions = list(split.captions)
    idx = torch.as_tensor(np.asarray(split.caption_image_index), dtype=torch.int64)
    sim = embed_images(dual.encode_image, split.images, batch_size) @ embed_texts(dual.encode_text, captions).T
    scorer = InterBertScorer(run)
    regions, tokens = scorer.regions(split.images, batch_size), scorer.tokens(captions)
    i2t = rerank_scores(sim, k, lambda q, c: scorer.pairs(regions, tokens, q, c))
    t2i = rerank_scores(sim.T, k, lambda q, c: scorer.pairs(regions, tokens, c, q))
    m_i, m_t = retrieval_metrics(i2t, idx, ks), retrieval_metrics(t2i.T, idx, ks)
    out = {key: v for key, v in m_i.items() if key.startswith("image_to_text")}
    out.update({key: v for key, v in m_t.items() if key.startswith("text_to_image")})
    out.update(rerank_k=int(k), n_images=int(sim.shape[0]), n_texts=int(sim.shape[1]))
    return out
