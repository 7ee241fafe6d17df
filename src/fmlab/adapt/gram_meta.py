"""GRAM's meta-training pieces: pseudo-domains and meta-tasks from unlabelled image-text pairs,
and the first-order meta-objective the engine trains (``fmlab adapt meta-train``).

Meta-tasks (this project's reduction of GRAM's cross-modal hierarchical clustering; see
docs/methods.md): the joint embeddings [image; caption] are clustered into ``n_domains``
pseudo-domains (k-means), each domain into ``classes_per_domain`` pseudo-classes (k-means on the
image embeddings); a pseudo-class's *name* is the caption nearest its centre (its prototype).
Task t draws two different domains A and B and, in each, ``n_way`` pseudo-classes with
``shots`` images apiece; all draws come from a generator seeded by (seed, t), so the task list is
a pure function of the index (the engine's exact resume needs nothing more).

Meta-objective for a task (first-order MAML, inner step on A, outer step on B)::

    g  = ∇_φ L_A(φ)                (no graph: first order)
    φ' = φ − α · ψ(g)              (ψ is *not* detached: it gets a meta-gradient through φ')
    L  = L_B(φ')                   ∂L/∂φ = ∂L_B/∂φ' (FO-MAML), ∂L/∂ω through ψ

with L_T(c) = CE(s · cos(x, prompt_k(c)), y), CoOp's loss at the model's logit scale s.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.adapt.coop import PromptLearner
from fmlab.adapt.gram import GradientRegulator
from fmlab.errors import DataError


def pseudo_domains(image_emb: np.ndarray, text_emb: np.ndarray, n_domains: int,
                   classes_per_domain: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster image-text pairs into domains, then each domain into pseudo-classes.

    Args:
        image_emb, text_emb: (N, D) L2-normalised joint-space embeddings of the pairs.
        n_domains: k-means clusters of the concatenated embeddings.
        classes_per_domain: k-means clusters of the image embeddings inside each domain.
        seed: k-means seed.

    Returns:
        ``cls`` (N,) the pseudo-class of each pair (global index), ``domain`` (C,) the domain of
        each pseudo-class, ``prototype`` (C,) the pair whose caption names each pseudo-class.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> e = rng.normal(size=(40, 4)); e /= np.linalg.norm(e, axis=1, keepdims=True)
        >>> cls, dom, proto = pseudo_domains(e, e, 2, 3)
        >>> len(dom), sorted(set(dom.tolist())), bool((cls[proto] == np.arange(len(dom))).all())
        (6, [0, 1], True)
    """
    from sklearn.cluster import KMeans

    n = len(image_emb)
    if n < n_domains * classes_per_domain:
        raise DataError(f"{n} image-text pairs cannot make {n_domains} domains x "
                        f"{classes_per_domain} pseudo-classes; lower meta.n_domains or "
                        "meta.classes_per_domain")
    joint = np.concatenate([image_emb, text_emb], axis=1)
    dom = KMeans(n_domains, n_init=4, random_state=seed).fit_predict(joint)
    cls = np.zeros(n, dtype=np.int64)
    domain_of, proto = [], []
    for d in range(n_domains):
        rows = np.flatnonzero(dom == d)
        k = min(classes_per_domain, len(rows))
        sub = KMeans(k, n_init=4, random_state=seed).fit(image_emb[rows])
        for j in range(k):
            members = rows[sub.labels_ == j]
            if len(members) == 0:  # k-means on duplicated points can leave a cluster empty
                continue
            centre = text_emb[members].mean(0)
            cls[members] = len(domain_of)
            proto.append(int(members[np.argmax(text_emb[members] @ centre)]))
            domain_of.append(d)
    return cls, np.asarray(domain_of, dtype=np.int64), np.asarray(proto, dtype=np.int64)


class MetaTaskSource:
    """Meta-task ``t`` (an engine source: ``len`` + ``get_batch``): support and query images'
    embeddings, labels 0..n_way-1 and the rows of their pseudo-classes' prompts.

    Args:
        image_emb: (N, D) image embeddings of the pairs.
        cls, domain: from :func:`pseudo_domains`.
        n_way, shots: pseudo-classes per task and images per pseudo-class (drawn with
            replacement when a pseudo-class is smaller).
        n_tasks: the length of the task list (the engine's epoch).
        seed: the task list's seed.
    """

    def __init__(self, image_emb: np.ndarray, cls: np.ndarray, domain: np.ndarray, n_way: int,
                 shots: int, n_tasks: int = 100_000, seed: int = 0) -> None:
        self.x = torch.as_tensor(image_emb, dtype=torch.float32)
        self.members = [np.flatnonzero(cls == c) for c in range(len(domain))]
        self.by_domain = [np.flatnonzero(domain == d) for d in range(int(domain.max()) + 1)]
        usable = [d for d in self.by_domain if len(d) >= n_way]
        if len(usable) < 2:
            raise DataError(f"meta-tasks need two domains with at least n_way={n_way} "
                            "pseudo-classes; lower meta.n_way or raise meta.classes_per_domain")
        self.domains = [i for i, d in enumerate(self.by_domain) if len(d) >= n_way]
        self.n_way, self.shots, self.n_tasks, self.seed = n_way, shots, n_tasks, seed

    def __len__(self) -> int:
        return self.n_tasks

    def _side(self, rng: np.random.Generator, d: int) -> tuple[torch.Tensor, ...]:
        classes = rng.choice(self.by_domain[d], self.n_way, replace=False)
        rows = [rng.choice(self.members[c], self.shots, replace=len(self.members[c]) < self.shots)
                for c in classes]
        idx = torch.as_tensor(np.concatenate(rows))
        y = torch.arange(self.n_way).repeat_interleave(self.shots)
        return self.x[idx], y, torch.as_tensor(classes)

    def task(self, t: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(t)])
        a, b = rng.choice(self.domains, 2, replace=False)
        xa, ya, ra = self._side(rng, int(a))
        xb, yb, rb = self._side(rng, int(b))
        return {"support_x": xa, "support_y": ya, "support_rows": ra,
                "query_x": xb, "query_y": yb, "query_rows": rb}

    def get_batch(self, indices) -> dict[str, torch.Tensor]:
        tasks = [self.task(int(t)) for t in np.asarray(indices).ravel()]
        return {k: torch.stack([t[k] for t in tasks]) for k in tasks[0]}


class GramMetaObjective(nn.Module):
    """First-order meta-learning of the CoOp context φ and the regulator ψ (module docstring).

    The image-text model stays outside the module's parameters and state (it is frozen and
    would bloat every checkpoint); only φ (``ctx``) and ψ (``regulator``) train.

    Args:
        learner: a :class:`~fmlab.adapt.coop.PromptLearner` over every pseudo-class prototype
            (its own context is unused; ``ctx_init`` is φ's start).
        ctx_init: (n_ctx, D) initial context.
        scale: the model's logit scale.
        inner_lr: α.
        hidden: ψ's hidden width.
    """

    def __init__(self, learner: PromptLearner, ctx_init: torch.Tensor, scale: float,
                 inner_lr: float = 0.1, hidden: int = 64) -> None:
        super().__init__()
        self.__dict__["learner"] = learner  # not a submodule: keeps the model out of state_dict
        self.ctx = nn.Parameter(ctx_init.detach().float().clone())
        self.regulator = GradientRegulator(self.ctx.shape[1], hidden)
        self.scale, self.inner_lr = float(scale), float(inner_lr)

    def task_loss(self, ctx: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  rows: torch.Tensor) -> torch.Tensor:
        """CoOp's loss of one task's images against its pseudo-classes' prompts with ``ctx``."""
        w = F.normalize(self.learner(ctx, rows), dim=-1)
        return F.cross_entropy(self.scale * F.normalize(x, dim=-1) @ w.T, y)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        inner, outer, gates = [], [], []
        for b in range(batch["support_x"].shape[0]):
            la = self.task_loss(self.ctx, batch["support_x"][b], batch["support_y"][b],
                                batch["support_rows"][b])
            (g,) = torch.autograd.grad(la, self.ctx)  # first order: no graph through g
            adapted = self.ctx - self.inner_lr * self.regulator(g)
            lb = self.task_loss(adapted, batch["query_x"][b], batch["query_y"][b],
                                batch["query_rows"][b])
            inner.append(la.detach())
            outer.append(lb)
            gates.append(self.regulator.gate(g).mean().detach())
        loss = torch.stack(outer).mean()
        return loss, {"inner_loss": torch.stack(inner).mean(), "outer_loss": loss.detach(),
                      "gate_mean": torch.stack(gates).mean()}
