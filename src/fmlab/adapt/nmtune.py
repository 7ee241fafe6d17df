"""NMTune (Chen et al., ICLR 2024, "Understanding and mitigating the label noise in pre-training
on downstream tasks"): a residual MLP on frozen (black-box) features, regularised so the tuned
feature space keeps the pre-trained knowledge, decorrelates, and keeps its dominant directions.

Model: z = s ⊙ g(f) + f with g = Linear(D, 4D) → BatchNorm1d → ReLU → Linear(4D, D) and a learnable
per-dimension scale s (initialised to 1.0, the README's ``--mlp-res-scale-init``); logits = Wz + b.
Loss, on a batch Z (rows z) with features F (rows f):

    L = CE + λ · (w_mse·L_MSE + w_cov·L_COV − w_svd·(1/k)Σ_{j≤k} σ̂_j(Z)),

* L_MSE = mean over the B·D elements of (z/‖z‖ − sg(f/‖f‖))², f from the *other* view when
  training views are given (the official code's cross-view term), the same sample otherwise;
* L_COV = (1/D) Σ_{i≠j} C_ij², C = Z̄ᵀZ̄/(n−1) the covariance of the rows (VICReg's term);
* σ̂ = σ/Σσ, the singular values of the *uncentred* Z (gradients flow through the SVD), k = 5.

w_mse, w_cov, w_svd = 1, 0.04, 0.001 are the official code's defaults; λ (a multiplier on all
three, the issue's "λ from the validation split") is chosen on the validation split from
``lam_grid`` unless given. These follow the official code (Hhhhhhao/Noisy-Model-Learning,
``src/models/nml_tune.py``), which differs from papers.md in the MSE normalisation, the 1/k and
the three weights (docs/notes/issue20_formulas.md §1). Optimiser as in its README: AdamW (lr 1e-3,
wd 1e-4) with a per-step cosine schedule, batch 64, 30 epochs; for the few-shot sweep the steps
are then clamped to [``min_steps``, ``max_steps``] = [100, 300] (enough steps to train the head
on a split of a few batches; few enough that the sweep's hundreds of fits stay quick).

Views: the class says ``views = "samples"``, so the sweep passes (V, N, D) augmented views. With
V ≥ 2 every step draws two different views a ≠ b of the batch's images, CE and L_COV/L_SVD use
both (2B rows), and L_MSE compares z of view b with f of view a, as the official code does with
its two augmented views. With (N, D) features the step uses the batch once and L_MSE compares each
z with its own f.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from fmlab.adapt.base import Estimator, InputError, ParameterError, accuracy_and_loss, select_best
from fmlab.adapt.registry import register_estimator

DEFAULT_LAM_GRID = (0.0, 0.1, 1.0, 10.0)


class NMTuneNet(nn.Module):
    """The residual MLP z = s ⊙ g(f) + f and the linear head on z.

    Args:
        dim: the feature dimension D.
        n_classes: the classes of the head.
        hidden_ratio: g's hidden width over D.
        scale_init: the initial value of every entry of s.
    """

    def __init__(self, dim: int, n_classes: int, hidden_ratio: int = 4,
                 scale_init: float = 1.0) -> None:
        super().__init__()
        hidden = hidden_ratio * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim))
        self.scale = nn.Parameter(torch.full((1, dim), float(scale_init)))
        self.head = nn.Linear(dim, n_classes)
        nn.init.zeros_(self.head.bias)

    def features(self, f: torch.Tensor) -> torch.Tensor:
        """z = s ⊙ g(f) + f."""
        return self.scale * self.mlp(f) + f

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, logits)."""
        z = self.features(f)
        return z, self.head(z)


def nmtune_mse(z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """mean((z/‖z‖ − sg(f/‖f‖))²) over all B·D elements (``nn.MSELoss`` on normalised rows)."""
    return F.mse_loss(F.normalize(z, dim=-1), F.normalize(f, dim=-1).detach())


def nmtune_cov(z: torch.Tensor) -> torch.Tensor:
    """(1/D) Σ_{i≠j} C_ij² with C = Z̄ᵀZ̄/(n−1), the rows' covariance (VICReg's covariance term)."""
    n, d = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    c = zc.T @ zc / max(n - 1, 1)
    off = c - torch.diag(torch.diagonal(c))
    return off.pow(2).sum() / d


def nmtune_svd(z: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(1/k) Σ_{j≤k} σ̂_j with σ̂ = σ/Σσ, σ the singular values of the uncentred Z (subtracted
    in the loss, so minimising it raises the dominant singular values' share)."""
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp_min(1e-12)
    return p[:k].mean()


def nmtune_terms(z: torch.Tensor, f: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                 mse_pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
                 k: int = 5) -> dict[str, torch.Tensor]:
    """The four loss terms of one batch.

    Args:
        z: (n, D) tuned features; f: (n, D) frozen features; logits: (n, C); y: (n,) labels.
        mse_pairs: (z rows, f rows) for L_MSE when it is cross-view (default: (z, f)).
        k: singular values averaged by the SVD term.

    Returns:
        ``{"ce", "mse", "cov", "svd"}`` scalars (``svd`` is the positive mean share; the total
        subtracts it).

    Examples:
        >>> z = torch.randn(8, 4); t = nmtune_terms(z, z, torch.randn(8, 3), torch.zeros(8).long())
        >>> float(t["mse"])
        0.0
    """
    zm, fm = mse_pairs if mse_pairs is not None else (z, f)
    return {"ce": F.cross_entropy(logits, y), "mse": nmtune_mse(zm, fm), "cov": nmtune_cov(z),
            "svd": nmtune_svd(z, k)}


def nmtune_total(terms: dict[str, torch.Tensor], lam: float, w_mse: float = 1.0,
                 w_cov: float = 0.04, w_svd: float = 0.001) -> torch.Tensor:
    """CE + λ·(w_mse·L_MSE + w_cov·L_COV − w_svd·L_SVD); λ = 0 is plain cross-entropy."""
    if lam == 0:
        return terms["ce"]
    reg = w_mse * terms["mse"] + w_cov * terms["cov"] - w_svd * terms["svd"]
    return terms["ce"] + lam * reg


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch; a last batch of one row joins the previous one (BatchNorm needs ≥ 2)."""
    order = torch.randperm(n, generator=gen)
    out = list(order.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


@register_estimator("nmtune")
class NMTune(Estimator):
    """NMTune: residual MLP + linear head on frozen features, with MSE/covariance/SVD regularisers.

    Args:
        lam: the multiplier λ of the three regularisers, or None to choose it on validation data
            from ``lam_grid`` (highest accuracy, ties: lowest validation loss, then first).
        lam_grid: candidate λ values (≥ 0).
        w_mse, w_cov, w_svd: the three weights (official defaults 1, 0.04, 0.001).
        top_k: singular values averaged by the SVD term.
        hidden_ratio: the MLP's hidden width over D.
        scale_init: initial residual scale s.
        lr, weight_decay: AdamW's.
        epochs, batch_size: the schedule (cosine per step, no warm-up).
        min_steps: at least this many optimiser steps (a few-shot split is 1–3 batches, so
            30 epochs alone would leave the head near its initialisation at lr 1e-3).
        max_steps: a cap on the optimiser steps, or None.
        seed: initialisation, shuffling and view draws (every λ candidate starts alike).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [0.2, 1.1], [1.0, 0.0], [1.1, 0.3]]); y = np.array([0, 0, 1, 1])
        >>> NMTune(lam=0.1, lr=1e-2).fit(X, y).predict(np.array([[0.1, 0.9], [1.0, 0.1]]))
        array([0, 1])
    """

    views = "samples"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "lam": [Interval(Real, 0, None, closed="left"), None],
        "lam_grid": ["array-like"],
        "w_mse": [Interval(Real, 0, None, closed="left")],
        "w_cov": [Interval(Real, 0, None, closed="left")],
        "w_svd": [Interval(Real, 0, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "hidden_ratio": [Interval(Integral, 1, None, closed="left")],
        "scale_init": [Real],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "min_steps": [Interval(Integral, 0, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "seed": [Interval(Integral, None, None, closed="neither")],
    }

    def __init__(self, lam: float | None = None, lam_grid: Sequence[float] = DEFAULT_LAM_GRID,
                 w_mse: float = 1.0, w_cov: float = 0.04, w_svd: float = 0.001, top_k: int = 5,
                 hidden_ratio: int = 4, scale_init: float = 1.0, lr: float = 1e-3,
                 weight_decay: float = 1e-4, epochs: int = 30, batch_size: int = 64,
                 min_steps: int = 100, max_steps: int | None = 300, seed: int = 0) -> None:
        self.lam = lam
        self.lam_grid = lam_grid
        self.w_mse = w_mse
        self.w_cov = w_cov
        self.w_svd = w_svd
        self.top_k = top_k
        self.hidden_ratio = hidden_ratio
        self.scale_init = scale_init
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        grid = list(self.lam_grid)
        if not grid or any(not (isinstance(v, Real) and math.isfinite(v) and v >= 0) for v in grid):
            raise ParameterError(f"NMTune lam_grid must be numbers >= 0, got {self.lam_grid!r}")

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return self.lam is None

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        views = (X if X.ndim == 3 else X.unsqueeze(0)).float()
        if views.shape[1] * views.shape[0] < 2:
            raise InputError("n_samples = 1: NMTune needs at least 2 training samples "
                             "(BatchNorm statistics)")
        if self.lam is not None:
            self.net_, steps, self.losses_ = self._train(views, y, float(self.lam))
            lam, table = float(self.lam), None
        else:
            assert X_val is not None and y_val is not None
            nets, accs, losses = [], [], []
            for lam in self.lam_grid:
                net, steps, curve = self._train(views, y, float(lam))
                with torch.no_grad():
                    acc, loss = accuracy_and_loss(net(X_val.double())[1], y_val)
                nets.append((net, curve))
                accs.append(acc)
                losses.append(loss)
            best = select_best(torch.cat(accs), torch.cat(losses))
            (self.net_, self.losses_), lam = nets[best], float(self.lam_grid[best])
            table = {str(float(v)): float(a) for v, a in zip(self.lam_grid, torch.cat(accs))}
        self.hyperparameters_ = {"lam": lam, "w_mse": self.w_mse, "w_cov": self.w_cov,
                                 "w_svd": self.w_svd, "top_k": self.top_k, "steps": steps,
                                 "epochs": self.epochs, "batch_size": self.batch_size,
                                 "lr": self.lr, "n_views": int(views.shape[0])}
        if table is not None:
            self.hyperparameters_["val_accuracy_by_lam"] = table

    def _train(self, views: torch.Tensor, y: torch.Tensor,
               lam: float) -> tuple[NMTuneNet, int, list[float]]:
        """AdamW with a per-step cosine schedule; returns the net (eval mode, float64), its
        number of steps and its training-loss curve."""
        gen = torch.Generator().manual_seed(int(self.seed))
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(self.seed))  # the net's initialisation
        try:
            net = NMTuneNet(views.shape[-1], len(self.classes_), self.hidden_ratio,
                            self.scale_init)
        finally:
            torch.random.set_rng_state(torch_state)
        n_views, n = views.shape[0], views.shape[1]
        spe = math.ceil(n / self.batch_size) - (1 if n > self.batch_size and
                                                 n % self.batch_size == 1 else 0)
        total = spe * self.epochs
        total = max(total, self.min_steps)
        if self.max_steps:
            total = min(total, self.max_steps)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total, 1))
        net.train()
        curve: list[float] = []
        step = 0
        while step < total:
            for idx in _batches(n, self.batch_size, gen):
                if step >= total:
                    break
                loss = self._step_loss(net, views, y, idx, lam, gen, n_views)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                curve.append(float(loss.detach()))
                step += 1
        # predictions in float64: a row's score then does not depend on which other rows share
        # the matmul (float32 kernels round differently per batch size)
        return net.eval().double(), total, curve

    def _step_loss(self, net: NMTuneNet, views: torch.Tensor, y: torch.Tensor,
                   idx: torch.Tensor, lam: float, gen: torch.Generator,
                   n_views: int) -> torch.Tensor:
        """One batch: two different views when there are several (cross-view L_MSE), else one."""
        if n_views >= 2:
            a, b = torch.randperm(n_views, generator=gen)[:2].tolist()
            f = torch.cat([views[a, idx], views[b, idx]])
            z, logits = net(f)
            half = len(idx)
            terms = nmtune_terms(z, f, logits, torch.cat([y[idx], y[idx]]),
                                 mse_pairs=(z[half:], f[:half]), k=self.top_k)
        else:
            f = views[0, idx]
            z, logits = net(f)
            terms = nmtune_terms(z, f, logits, y[idx], k=self.top_k)
        return nmtune_total(terms, lam, self.w_mse, self.w_cov, self.w_svd)

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net_(X.double())[1].to(X.dtype)
