"""Class text embeddings for :class:`~fmlab.multimodal.video_objective.XCLIPObjective`: frozen or learnable.

X-CLIP keeps CLIP's text tower; on a laptop the class names of a video task ("a video of
something moving up", "a video of a 3") are encoded once by a frozen text tower (e.g. the
offline MiniLM) and a learnable linear map takes them into the joint space
(:class:`ClassText` with ``features``). Without a text tower each class gets a learnable vector
(``ClassText.learnable``). Either way the module is a callable ``() -> (K, E)``, so the objective
trains it with the video model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.utils.validation import positive_int

__all__ = ["ClassText", "class_prompts", "encode_class_prompts"]


def class_prompts(template: str, names: Sequence[str]) -> list[str]:
    """One prompt per class: ``template`` with ``{}`` replaced by the class name.

    Args:
        template: text with exactly one ``{}``.
        names: class names.

    Returns:
        The prompts, in class order.

    Examples:
        >>> class_prompts("a video of something moving {}", ["up", "left"])
        ['a video of something moving up', 'a video of something moving left']
    """
    if template.count("{}") != 1:
        raise ConfigError(f"text template {template!r}: needs exactly one {{}} for the class name")
    return [template.replace("{}", str(n)) for n in names]


def encode_class_prompts(tower_name: str, prompts: Sequence[str]) -> Tensor:
    """Embeddings ``(K, F)`` of ``prompts`` by the frozen text tower ``tower_name`` (e.g. ``text:minilm``).

    Args:
        tower_name: a :func:`fmlab.multimodal.towers.text_tower` name.
        prompts: the class prompts.

    Returns:
        Float tensor, one row per prompt (no gradient).
    """
    return _encode(tower_name, tuple(prompts)).clone()


@functools.lru_cache(maxsize=8)
def _encode(tower_name: str, prompts: tuple[str, ...]) -> Tensor:
    """Encode once per process (benchmarks train many runs with the same prompts)."""
    from fmlab.multimodal.towers import text_tower

    tower = text_tower(tower_name).eval()
    with torch.no_grad():
        return tower.encode(list(prompts)).float()


class ClassText(nn.Module):
    """``() -> (K, E)`` class embeddings: a learnable map of frozen features, or a learnable table.

    Args:
        features: frozen class features ``(K, F)`` (kept as a buffer, so checkpoints hold them),
            mapped to ``embed_dim`` by a learnable linear layer; None: a learnable ``(K, E)`` table.
        embed_dim: joint embedding size E.
        n_classes: K when ``features`` is None.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> ClassText(torch.randn(3, 10), 8)().shape, ClassText.learnable(5, 8)().shape
        (torch.Size([3, 8]), torch.Size([5, 8]))
    """

    def __init__(self, features: Tensor | None, embed_dim: int, n_classes: int | None = None) -> None:
        super().__init__()
        embed_dim = positive_int("model.embed_dim", embed_dim)
        if features is None:
            k = positive_int("n_classes", n_classes)
            self.table = nn.Parameter(torch.randn(k, embed_dim) * 0.02)
            self.proj = None
        else:
            if features.ndim != 2:
                raise ConfigError(f"class features: expected (K, F), got {tuple(features.shape)}")
            self.register_buffer("features", features.detach().float().clone())
            self.proj = nn.Linear(features.shape[1], embed_dim, bias=False)

    @classmethod
    def learnable(cls, n_classes: int, embed_dim: int) -> ClassText:
        """A learnable ``(n_classes, embed_dim)`` table (no text tower).

        Args:
            n_classes: K.
            embed_dim: E.

        Returns:
            The module.
        """
        return cls(None, embed_dim, n_classes)

    def forward(self) -> Tensor:
        """The class embeddings ``(K, E)``."""
        return self.table if self.proj is None else self.proj(self.features)
