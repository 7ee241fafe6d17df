"""ConES (Yi et al., 2023, "ConES: Concept Embedding Search for Parameter Efficient Tuning Large
Vision Language Models"), reduced to classification: learn the class embeddings directly in the
joint space where they meet the image features, with no text-encoder pass while tuning.

The paper searches prompt embeddings in the text encoder's *output* space (detection,
segmentation, text-to-image); for few-shot classification that makes each class a learnable
vector w_k in the joint space, initialised from the text embedding of "a photo of a {class}."
(``init="text"``; ``cones_random``: random unit vectors), scored as CoOp scores its prompts:
``s · cos(x, w_k)`` at the model's own frozen logit scale s, trained with cross-entropy. So
``cones`` is a zero-shot-initialised cosine classifier; what it saves over CoOp is the text
tower's forward and backward on every step (the text tower runs once, at initialisation).

To make the timing comparison with CoOp differ only in that, ConES reuses CoOp's whole fitting
procedure (SGD lr 0.002, momentum 0.9, cosine decay after a 1-epoch warmup at 1e-5, batch 32,
50 epochs); only the learner (the module that outputs the C×D class embeddings) differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.utils._param_validation import StrOptions

from fmlab.adapt.coop import FIT_CONSTRAINTS, CoOp, class_prompt_weights
from fmlab.adapt.registry import register_estimator

Init = Literal["text", "random"]


class ConceptEmbeddings(nn.Module):
    """C learnable class embeddings in the joint space; the forward pass is the parameter itself
    (no text tower: that is the point)."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(init.float().clone())

    def forward(self) -> torch.Tensor:
        return self.weight


@register_estimator("cones")
class ConES(CoOp):
    """Concept embeddings learnt in the joint space, initialised from class-name text (ConES).

    ``fit(X, y)``: ``X`` = the model's image embeddings (N, D) or (V, N, D) augmented views;
    labels index ``class_names``. ``fmlab adapt --clip-model`` provides the model and names.

    Args:
        model: the frozen image-text model (its text tower runs once, for the text init).
        class_names: one name per class (labels index them).
        init: ``"text"`` (the normalised embedding of ``template`` per class) or ``"random"``
            (seeded Gaussian directions, normalised).
        template: the prompt of the text init.
        lr, momentum, weight_decay, epochs, batch_size, warmup_epochs, warmup_lr, max_steps,
            seed: as :class:`~fmlab.adapt.coop.CoOp` (the same defaults).

    Examples:
        >>> ConES(model=None, class_names=["cat", "dog"], init="random").get_params()["init"]
        'random'
    """

    transfers_to_new_classes = False  # one learnt embedding per seen class

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "init": [StrOptions({"text", "random"})],
        "template": [str],
        **FIT_CONSTRAINTS,
    }

    def __init__(self, model, class_names: Sequence[str], init: Init = "text",
                 template: str = "a photo of a {}.", lr: float = 0.002, epochs: int = 50,
                 batch_size: int = 32, momentum: float = 0.9, weight_decay: float = 5e-4,
                 warmup_epochs: int = 1, warmup_lr: float = 1e-5, max_steps: int | None = None,
                 seed: int = 0) -> None:
        self.model = model
        self.class_names = class_names
        self.init = init
        self.template = template
        self._store_fit_arguments(lr, epochs, batch_size, momentum, weight_decay, warmup_epochs,
                                  warmup_lr, max_steps, seed)

    def _make_learner(self, g: torch.Generator) -> nn.Module:
        names = [str(n).replace("_", " ") for n in self.class_names]
        if self.init == "text":
            w = torch.from_numpy(class_prompt_weights(self.model, names, self.template))
        else:
            dim = int(self.model.feature_dim)  # the joint space the image embeddings live in
            w = F.normalize(torch.randn(len(names), dim, generator=g), dim=-1)
        return ConceptEmbeddings(w.to(self.model.logit_scale.device))

    def _learner_hyperparameters(self) -> dict:
        return {"init": self.init, "template": self.template if self.init == "text" else None}


@register_estimator("cones_random")
class ConESRandom(ConES):
    """ConES from random concept embeddings (the ablation of the text init).

    Examples:
        >>> ConESRandom(model=None, class_names=["cat"]).get_params()["init"]
        'random'
    """

    def __init__(self, model, class_names: Sequence[str], init: Init = "random",
                 template: str = "a photo of a {}.", lr: float = 0.002, epochs: int = 50,
                 batch_size: int = 32, momentum: float = 0.9, weight_decay: float = 5e-4,
                 warmup_epochs: int = 1, warmup_lr: float = 1e-5, max_steps: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(model, class_names, init, template, lr, epochs, batch_size, momentum,
                         weight_decay, warmup_epochs, warmup_lr, max_steps, seed)
