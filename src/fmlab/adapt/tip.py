"""Tip-Adapter and Tip-Adapter-F: a key-value cache of the few-shot training set.

Keys F are the L2-normalised training features (one per image, the mean over augmented views),
values L their one-hot labels. A query x̂ scores α · exp(−β(1 − x̂Fᵀ)) L: a sharpened similarity
vote. With zero-shot weights the cache is added to 100 · x̂W_zsᵀ, which is Tip-Adapter proper;
then α sets the blend and β the sharpness. Tip-Adapter-F fine-tunes the keys with AdamW on the
same fused logits and keeps the epoch that scores best on validation data.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from fmlab.adapt.base import (
    ArrayLike,
    Estimator,
    InputError,
    accuracy_and_loss,
    l2_normalize,
    select_best,
    views_mean_normalized,
)
from fmlab.adapt.registry import register_estimator
from fmlab.adapt.zeroshot import check_weights, zeroshot_scores

# Tip-Adapter's search: β_i = 0.1 + i·(s₀ − 0.1)/n_β, α_j = 0.1 + j·(s₁ − 0.1)/n_α; here with
# search scale [10, 10] and a coarser β grid (50 instead of 200 points). α also gets 20, 50 and
# 100 so that validation can let the cache outweigh a weak zero-shot head (small CLIPs).
DEFAULT_BETA_GRID = tuple(0.1 + i * (10.0 - 0.1) / 50 for i in range(50))
DEFAULT_ALPHA_GRID = tuple(0.1 + j * (10.0 - 0.1) / 20 for j in range(20)) + (20.0, 50.0, 100.0)


def cache_logits(affinity: torch.Tensor, values: torch.Tensor, beta: float | torch.Tensor
                 ) -> torch.Tensor:
    """exp(−β(1 − A)) L for affinities A (..., N_query, N_cache) and values L (N_cache, C)."""
    return torch.exp(-beta * (1.0 - affinity)) @ values


def cache_scores(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                 beta: float | torch.Tensor, block: int = 1024) -> torch.Tensor:
    """:func:`cache_logits` of normalised ``queries`` against ``keys``, a block of queries at a time.

    With a full train split as the cache (tens of thousands of keys) the affinity matrix of all
    queries — times every β of a search grid — does not fit in memory; blocks keep it to
    ``block × N_cache`` floats. A 1-D tensor ``beta`` gives one score matrix per value:
    (len(beta), N_query, C); a scalar gives (N_query, C).
    """
    betas = torch.as_tensor(beta, dtype=queries.dtype)
    out = torch.empty((*betas.shape, queries.shape[0], values.shape[1]), dtype=queries.dtype)
    for s in range(0, queries.shape[0], block):
        aff = queries[s:s + block] @ keys.T
        if betas.ndim == 0:
            out[s:s + block] = cache_logits(aff, values, betas)
        else:
            for i, b in enumerate(betas):
                out[i, s:s + block] = cache_logits(aff, values, b)
    return out


_REAL_OR_NONE = [Interval(Real, None, None, closed="neither"), None]


@register_estimator("tip", sweep_default=True, zeroshot_ensemble=True)
class TipAdapter(Estimator):
    """Training-free cache model.

    ``alpha``/``beta``: ``None`` searches them on (X_val, y_val) over ``alpha_grid`` × ``beta_grid``.
    ``zeroshot_weights`` (n_classes, D), optional: fuse with 100 · cosine zero-shot scores (the
    paper's method). Without them α only scales the scores, so a ``None`` alpha is fixed to 1 and
    only β is searched. Training views (V, N, D) are averaged into one key per image.

    Args:
        alpha: cache weight, or None to search it.
        beta: sharpness, or None to search it.
        zeroshot_weights: (n_classes, D) text class weights, or None.
        alpha_grid: α values searched (None: ``DEFAULT_ALPHA_GRID``).
        beta_grid: β values searched (None: ``DEFAULT_BETA_GRID``).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]]); y = np.array([0, 0, 1, 1])
        >>> TipAdapter(beta=5.0).fit(X, y).predict(np.array([[0.8, 0.2]]))
        array([0])
    """

    views = "mean"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "alpha": _REAL_OR_NONE, "beta": _REAL_OR_NONE, "zeroshot_weights": ["array-like", None],
        "alpha_grid": ["array-like", None], "beta_grid": ["array-like", None],
    }

    def __init__(self, alpha: float | None = None, beta: float | None = None,
                 zeroshot_weights: ArrayLike | None = None,
                 alpha_grid: tuple[float, ...] | None = None,
                 beta_grid: tuple[float, ...] | None = None) -> None:
        self.alpha = alpha
        self.beta = beta
        self.zeroshot_weights = zeroshot_weights
        self.alpha_grid = alpha_grid
        self.beta_grid = beta_grid

    @classmethod
    def with_zeroshot(cls, zeroshot_weights: ArrayLike, **params: Any) -> TipAdapter:
        """``tip+zs`` is Tip-Adapter's own fusion (α and β searched jointly), not a wrapper.

        Args:
            zeroshot_weights: (n_classes, D) text class weights.
            **params: the other constructor arguments.

        Returns:
            ``cls(zeroshot_weights=zeroshot_weights, **params)``.
        """
        return cls(zeroshot_weights=zeroshot_weights, **params)

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return self.beta is None or (self.alpha is None and self.zeroshot_weights is not None)

    # -- shared pieces ---------------------------------------------------------------------------
    def _grids(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        a = DEFAULT_ALPHA_GRID if self.alpha_grid is None else tuple(self.alpha_grid)
        b = DEFAULT_BETA_GRID if self.beta_grid is None else tuple(self.beta_grid)
        return a, b

    def _check_zs(self, dim: int) -> None:
        self.zs_weights_ = None if self.zeroshot_weights is None else \
            check_weights(self.zeroshot_weights)
        if self.zs_weights_ is None:
            return
        zs = self.zs_weights_
        if zs.shape[1] != dim:
            raise InputError(f"zeroshot_weights have dimension {zs.shape[1]} but X has {dim}")
        if not np.array_equal(self.classes_, np.arange(zs.shape[0])):
            raise InputError(f"training labels must be exactly the classes 0..{zs.shape[0]-1}"
                             f" of zeroshot_weights, got {self.classes_[:10].tolist()}...")

    def _zs_scores(self, Xn: torch.Tensor) -> torch.Tensor | float:
        return 0.0 if self.zs_weights_ is None else zeroshot_scores(Xn, self.zs_weights_)

    def _search(self, keys: torch.Tensor, Xv: torch.Tensor, yv: torch.Tensor) -> tuple[float, float]:
        """Vectorised grid search of (α, β) on validation accuracy, ties by validation loss."""
        Xn = l2_normalize(Xv)
        alpha_grid, beta_grid = self._grids()
        betas = torch.tensor(beta_grid if self.beta is None else (self.beta,), dtype=Xv.dtype)
        if self.alpha is not None:
            alphas = (float(self.alpha),)
        elif self.zs_weights_ is None:
            alphas = (1.0,)
        else:
            alphas = alpha_grid
        alphas_t = torch.tensor(alphas, dtype=Xv.dtype)
        cache = cache_scores(Xn, keys, self.values_, betas)  # (B, Nv, C)
        scores = self._zs_scores(Xn) + alphas_t[:, None, None, None] * cache.unsqueeze(0)
        acc, loss = accuracy_and_loss(scores.reshape(-1, *scores.shape[2:]), yv)
        best = select_best(acc, loss)
        return float(alphas[best // len(betas)]), float(betas[best % len(betas)])

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        self._check_zs(X.shape[-1])
        self.keys_ = views_mean_normalized(X)
        self.values_ = F.one_hot(y, len(self.classes_)).to(X.dtype)
        self._choose(X_val, y_val)

    def _choose(self, X_val: torch.Tensor | None, y_val: torch.Tensor | None) -> None:
        if self.needs_validation:
            assert X_val is not None and y_val is not None
            self.alpha_, self.beta_ = self._search(self.keys_, X_val.to(self.keys_.dtype), y_val)
        else:
            self.alpha_ = 1.0 if self.alpha is None else float(self.alpha)
            self.beta_ = float(self.beta)  # type: ignore[arg-type]
        self.hyperparameters_ = {**getattr(self, "hyperparameters_", {}),
                                 "alpha": self.alpha_, "beta": self.beta_}

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        Xn = l2_normalize(X)
        keys = self.keys_.to(X.dtype)
        cache = cache_scores(Xn, keys, self.values_.to(X.dtype), self.beta_)
        return self._zs_scores(Xn) + self.alpha_ * cache


@register_estimator("tipf", sweep_default=True, zeroshot_ensemble=True)
class TipAdapterF(TipAdapter):
    """Tip-Adapter with fine-tuned keys.

    The keys start as Tip-Adapter's and are trained with AdamW (``lr``, ``eps``, ``weight_decay``),
    cosine decay over all steps, mini-batches of ``batch_size`` shuffled by ``seed``, for ``epochs``
    epochs, on the cross-entropy of the fused logits at (``init_alpha``, ``init_beta``); left at
    ``None`` these are the values the training-free search picks on the validation split, so the
    training starts from the operating point Tip-Adapter would use. When the training input has
    views (V, N, D), epoch e trains on view e mod V (fresh augmentations per epoch, as the paper
    does with images). The untrained keys (epoch 0) and the keys after every epoch are scored on
    validation data and the best are kept, so fine-tuning never does worse than Tip-Adapter on
    validation; α/β are then searched as in :class:`TipAdapter`. Validation data is required
    unless ``alpha``, ``beta``, ``init_alpha`` and ``init_beta`` are all given; without it the
    keys of the last epoch are kept.

    Args:
        alpha, beta, zeroshot_weights, alpha_grid, beta_grid: as in :class:`TipAdapter`.
        epochs: training epochs (>= 1).
        lr, eps, weight_decay: AdamW's.
        batch_size: mini-batch size (>= 1).
        init_alpha, init_beta: the (α, β) of the training loss, or None to search them.
        seed: shuffling seed.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]]); y = np.array([0, 0, 1, 1])
        >>> est = TipAdapterF(alpha=1.0, beta=5.0, init_alpha=1.0, init_beta=5.0, epochs=2)
        >>> est.fit(X, y).predict(np.array([[0.8, 0.2]])), est.hyperparameters_["epoch"]
        (array([0]), 2)
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        **TipAdapter._parameter_constraints,
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "eps": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "init_alpha": _REAL_OR_NONE, "init_beta": _REAL_OR_NONE,
        "seed": [Interval(Integral, None, None, closed="neither")],
    }

    def __init__(self, alpha: float | None = None, beta: float | None = None,
                 zeroshot_weights: ArrayLike | None = None, epochs: int = 20, lr: float = 1e-3,
                 eps: float = 1e-4, weight_decay: float = 0.01, batch_size: int = 256,
                 init_alpha: float | None = None, init_beta: float | None = None, seed: int = 0,
                 alpha_grid: tuple[float, ...] | None = None,
                 beta_grid: tuple[float, ...] | None = None) -> None:
        super().__init__(alpha, beta, zeroshot_weights, alpha_grid, beta_grid)
        self.epochs = epochs
        self.lr = lr
        self.eps = eps
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.init_alpha = init_alpha
        self.init_beta = init_beta
        self.seed = seed

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return super().needs_validation or self.init_alpha is None or self.init_beta is None

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        self._check_zs(X.shape[-1])
        views = l2_normalize(X.unsqueeze(0) if X.ndim == 2 else X)
        init_keys = views_mean_normalized(X)
        self.values_ = F.one_hot(y, len(self.classes_)).to(X.dtype)
        Xv = None if X_val is None else X_val.to(X.dtype)
        if self.init_alpha is None or self.init_beta is None:
            assert Xv is not None and y_val is not None
            a0, b0 = self._search(init_keys, Xv, y_val)
        train_alpha = a0 if self.init_alpha is None else float(self.init_alpha)
        train_beta = b0 if self.init_beta is None else float(self.init_beta)
        keys, epoch = self._train_keys(views, y, init_keys, Xv, y_val, train_alpha, train_beta)
        self.keys_ = keys
        self.hyperparameters_ = {"epoch": epoch, "train_alpha": train_alpha, "train_beta": train_beta}
        self._choose(X_val, y_val)

    def _val_score(self, keys: torch.Tensor, Xvn: torch.Tensor, zs_val: torch.Tensor | float,
                   y_val: torch.Tensor, alpha: float, beta: float) -> tuple[float, float]:
        with torch.no_grad():
            scores = zs_val + alpha * cache_scores(Xvn, keys, self.values_, beta)
            acc, loss = accuracy_and_loss(scores, y_val)
        return float(acc), float(loss)

    def _train_keys(self, views: torch.Tensor, y: torch.Tensor, init_keys: torch.Tensor,
                    Xv: torch.Tensor | None, y_val: torch.Tensor | None, alpha: float,
                    beta: float) -> tuple[torch.Tensor, int]:
        """Train the keys; return the best on validation (or the last without it) and its epoch."""
        keys = torch.nn.Parameter(init_keys.clone())
        n = views.shape[1]
        steps_per_epoch = math.ceil(n / self.batch_size)
        opt = torch.optim.AdamW([keys], lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(int(self.seed))
        zs = self.zs_weights_
        zs_train = self._zs_scores(views[0]) if zs is not None else None
        best = None
        if Xv is not None and y_val is not None:
            Xvn = l2_normalize(Xv)
            zs_val = self._zs_scores(Xvn)
            best = (*self._val_score(init_keys, Xvn, zs_val, y_val, alpha, beta), init_keys, 0)
        for epoch in range(self.epochs):
            Xe = views[epoch % views.shape[0]]
            zs_e = self._zs_scores(Xe) if (zs is not None and views.shape[0] > 1) else zs_train
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, self.batch_size):
                idx = order[s:s + self.batch_size]
                logits = alpha * cache_logits(Xe[idx] @ keys.T, self.values_, beta)
                if zs_e is not None:
                    logits = logits + zs_e[idx]
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if best is not None:
                acc, vloss = self._val_score(keys, Xvn, zs_val, y_val, alpha, beta)
                if acc > best[0] or (acc == best[0] and vloss < best[1]):
                    best = (acc, vloss, keys.detach().clone(), epoch + 1)
        if best is None:
            return keys.detach().clone(), self.epochs
        return best[2], best[3]
