"""The engine objective for image-text training: ``loss, logs = objective(batch)``.

When the text tower is locked whole (LiT), every distinct caption's tower output is computed
once at ``on_train_start`` and looked up by ``caption_ids``: the tower's weights never change,
so this gives the same loss as running it per step, at a fraction of the cost on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fmlab.errors import ConfigError
from fmlab.multimodal.losses import LOSSES, clip_loss, multi_positive_loss, siglip_loss
from fmlab.multimodal.model import ImageTextModel


class ContrastiveObjective(nn.Module):
    def __init__(self, model: ImageTextModel, captions: list[str], loss: str = "clip",
                 cache_text: bool = True, text_batch_size: int = 256) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"loss.name: {loss!r} is not one of {', '.join(LOSSES)}")
        if loss == "siglip" and model.logit_bias is None:
            raise ConfigError("loss.name: siglip needs a logit bias (model.init_logit_bias, e.g. -10)")
        self.model = model
        self.captions = list(captions)
        self.loss_name = loss
        self.cache_text = cache_text
        self.text_batch_size = text_batch_size
        self.register_buffer("text_cache", torch.zeros(0), persistent=False)

    @property
    def encoder(self) -> ImageTextModel:
        return self.model

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def on_train_start(self, max_steps: int) -> None:
        if self.cache_text and self.model.text_locked:
            was = self.model.text.training
            self.model.text.eval()
            with torch.no_grad():
                rows = [self.model.text(**{k: v.to(self.model.logit_scale.device) for k, v in
                                           self.model.text.tokenize(self.captions[i:i + self.text_batch_size]).items()})
                        for i in range(0, len(self.captions), self.text_batch_size)]
            self.model.text.train(was)
            self.text_cache = torch.cat(rows).float()

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor:
        if self.text_cache.numel():
            return self.model.text_proj(self.text_cache[caption_ids.to(self.text_cache.device)])
        ids = caption_ids.tolist()
        return self.model.encode_text([self.captions[i] for i in ids])

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        img = self.model.encode_image(batch["images"])
        txt = self.text_features(batch["caption_ids"])
        scale = self.model.logit_scale_value()
        if self.loss_name == "clip":
            loss = clip_loss(img, txt, scale)
        elif self.loss_name == "siglip":
            loss = siglip_loss(img, txt, scale, self.model.logit_bias)
        else:
            loss = multi_positive_loss(img, txt, scale, batch["labels"])
        logs = {"logit_scale": scale.detach()}
        if self.model.logit_bias is not None:
            logs["logit_bias"] = self.model.logit_bias.detach()
        return loss, logs

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.model.clamp_logit_scale()
