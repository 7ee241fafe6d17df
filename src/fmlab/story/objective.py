"""Engine objective of the story transformer, and how each adaptation regime freezes it."""

from __future__ import annotations

import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.story.transformer import StoryTransformer

__all__ = ["ADAPT_METHODS", "StoryObjective", "prepare_adaptation"]

#: story-continuation arms: caption-only fine-tuning, and source-frame cross-attention with full
#: fine-tuning or with prompt-tuning (only prompts + cross-attention train)
ADAPT_METHODS = ("caption_only", "cross_full", "cross_prompt")


class StoryObjective(nn.Module):
    """Next-token cross-entropy of ``batch["codes"]`` given ``batch["caption_emb"]`` and, when the
    model has cross-attention, ``batch["source_codes"]``."""

    def __init__(self, model: StoryTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        source = batch.get("source_codes") if self.model.has_cross else None
        loss = self.model.loss(batch["codes"], batch["caption_emb"].float(), source)
        return loss, {"nll": float(loss.detach())}


def prepare_adaptation(model: StoryTransformer, method: str) -> StoryTransformer:
    """Turn a pre-trained text-to-image model into one arm's starting point (in place).

    ``caption_only`` trains everything without a source frame; ``cross_full`` adds the gated
    cross-attention and trains everything; ``cross_prompt`` adds it and trains only
    :meth:`StoryTransformer.prompt_tuning_parameters`.
    """
    if method not in ADAPT_METHODS:
        raise ConfigError(f"story.method: {method!r} is unknown; choose from {ADAPT_METHODS}")
    if method != "caption_only":
        model.add_cross_attention()
    if method == "cross_prompt":
        keep = {id(p) for p in model.prompt_tuning_parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    return model
