"""Class text embeddings for DenseCLIP: learnable context on a frozen text tower, or a tiny offline one.

:class:`TowerPrompts` is CoOp's prompt learner (``[SOS] v_1 … v_M CLASS_k . [EOS]`` in the
tower's token-embedding space) over a *frozen* :class:`~fmlab.multimodal.towers.TextTower`
(``text:minilm`` offline), followed by a trainable linear projection to the joint width. The
tower is held outside the module tree, so checkpoints and ``model.safetensors`` carry only the
context and the projection (the tower is rebuilt from its name), and the optimiser never sees
its weights.

Sentence-embedding towers are anisotropic: MiniLM's embeddings of "[ctx] 0." … "[ctx] 9." share
~95% of their direction (mean pairwise cosine 0.96), so every class's score map starts as the same
foreground map. ``center=True`` (the default) subtracts the class mean of the tower outputs before
the projection, keeping what tells the classes apart (centred cosines -0.11 ≈ -1/(K-1)); CLIP's
text space, built for this contrast, needs no such step. :func:`class_prompts` builds either that or the tiny :class:`ClassPrompts` +
:class:`MeanTokenEncoder` pair used by tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from fmlab.errors import ConfigError
from fmlab.multimodal.dense import ClassPrompts, MeanTokenEncoder
from fmlab.utils.validation import positive_int


class TowerPrompts(nn.Module):
    """Learnable shared context + class names through a frozen text tower → (K, width).

    Args:
        tower: a TextTower with ``token_embedding``, ``prompt_plan`` and ``forward_embeds``
            (e.g. ``text_tower("text:minilm")``); frozen and put in eval mode here.
        class_names: one name per class (``_`` read as a space).
        width: output width D (a trainable ``Linear(tower.feature_dim, D)``).
        n_ctx: context length M.
        seed: seed of the context (N(0, 0.02²)) and projection initialisation.
        center: subtract the mean over classes of the tower outputs (see the module docstring).
        proj: a given projection to the joint width (e.g. an aligned CLIP's ``text_proj``), used as
            it is and frozen with the tower; None: a fresh trainable ``Linear(feature_dim, width)``.
        ctx_init: a phrase whose token embeddings start the context (e.g. ``"a picture of a"``,
            CoOp's init; ``n_ctx`` is then its token count); "" draws N(0, 0.02²).

    Examples:
        >>> class Toy(nn.Module):  # a stand-in tower: token ids are the characters' codes
        ...     feature_dim = 4
        ...     def __init__(self):
        ...         super().__init__(); self.token_embedding = nn.Embedding(128, 4)
        ...     def prompt_plan(self, texts):
        ...         ids = torch.tensor([[1] + [ord(c) for c in t] + [2] for t in texts])
        ...         return ids, torch.full((len(texts),), ids.shape[1] - 1)
        ...     def forward_embeds(self, embeds, end):
        ...         return embeds.mean(1)
        >>> p = TowerPrompts(Toy(), ["a", "b", "c"], width=8, n_ctx=2)
        >>> p().shape, sorted(k for k, _ in p.named_parameters())
        (torch.Size([3, 8]), ['ctx', 'proj.bias', 'proj.weight'])
    """

    def __init__(self, tower: nn.Module, class_names: Sequence[str], width: int, n_ctx: int = 8,
                 seed: int = 0, center: bool = True, proj: nn.Module | None = None,
                 ctx_init: str = "") -> None:
        super().__init__()
        self.center = bool(center)
        names = [str(n).replace("_", " ") for n in class_names]
        if not names:
            raise ConfigError("class_names: empty; DenseCLIP needs one name per class")
        tower.eval().requires_grad_(False)
        self._tower = (tower,)  # a tuple: not a submodule, so never saved nor optimised
        ids, end = tower.prompt_plan([f"{n}." for n in names])
        with torch.no_grad():
            emb = tower.token_embedding(ids).float()
        self.register_buffer("class_emb", emb, persistent=False)
        self.register_buffer("end", end.clone(), persistent=False)
        g = torch.Generator().manual_seed(int(seed))
        dim = emb.shape[-1]
        if ctx_init:
            cids, cend = tower.prompt_plan([ctx_init])
            with torch.no_grad():
                ctx = tower.token_embedding(cids[0, 1:int(cend[0])]).float().clone()
        else:
            ctx = torch.randn(positive_int("n_ctx", n_ctx), dim, generator=g) * 0.02
        self.ctx = nn.Parameter(ctx)
        if proj is not None:
            self.proj = proj.requires_grad_(False)
            return
        self.proj = nn.Linear(int(tower.feature_dim), positive_int("width", width))
        with torch.no_grad():
            bound = 1.0 / float(tower.feature_dim) ** 0.5
            self.proj.weight.copy_(torch.rand(self.proj.weight.shape, generator=g) * 2 * bound - bound)
            self.proj.bias.zero_()

    @property
    def num_classes(self) -> int:
        """K."""
        return int(self.class_emb.shape[0])

    def forward(self) -> torch.Tensor:
        """The class text embeddings (K, width)."""
        k = self.class_emb.shape[0]
        emb = self.class_emb.to(self.ctx.device)
        tower = self._tower[0]
        if next(tower.parameters()).device != self.ctx.device:
            tower.to(self.ctx.device)
        seq = torch.cat([emb[:, :1], self.ctx.unsqueeze(0).expand(k, -1, -1), emb[:, 1:]], dim=1)
        e = tower.forward_embeds(seq, self.end.to(self.ctx.device) + self.ctx.shape[0])
        return self.proj(e - e.mean(dim=0, keepdim=True) if self.center else e)


def class_prompts(text: str, class_names: Sequence[str], width: int, n_ctx: int = 8,
                  seed: int = 0, center: bool = True) -> nn.Module:
    """The class-prompt module of a DenseCLIP config's ``model.text``.

    Args:
        text: ``"tiny"`` (a seeded random token per class + :class:`MeanTokenEncoder`, offline
            and fast: tests) or a text tower name (``"text:minilm"``, ``"open_clip:<arch>"``) used
            frozen under :class:`TowerPrompts`.
        class_names: one name per class.
        width: the joint width D.
        n_ctx: context length.
        seed: initialisation seed.
        center: :class:`TowerPrompts`' ``center`` (a real tower only).

    Returns:
        A module whose call returns (K, width).

    Examples:
        >>> class_prompts("tiny", ["circle", "square"], 8)().shape
        torch.Size([2, 8])
    """
    if text == "tiny":
        g = torch.Generator().manual_seed(int(seed) + 7919)
        tokens = torch.randn(len(class_names), 1, 32, generator=g)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return ClassPrompts(tokens, MeanTokenEncoder(32, width), n_ctx=n_ctx, seed=seed)
    from fmlab.multimodal.towers import text_tower

    return TowerPrompts(text_tower(text), class_names, width, n_ctx, seed, center)
