"""Linear probe: multinomial logistic regression by full-batch L-BFGS in torch.

The objective is scikit-learn's, C·Σ_i CE_i + ½‖W‖² with the bias unpenalised, minimised in the
equivalent averaged form mean_i CE_i + ‖W‖²/(2·C·N) (scikit-learn ≥ 1.2 does the same, and its
``tol`` is the same max-|gradient| test). Computing in float32 with hand-written gradients and a
strong-Wolfe line search is what makes it several times faster than scikit-learn's float64 run.

With ``C=None`` the regularisation is chosen on validation data the way CLIP's and CoOp's linear
probes do: a log-spaced sweep, then bisection in log-space around the best value. Each fit warm-
starts from its neighbour's solution, so the whole search costs a few full fits.
"""

from __future__ import annotations

import math

import torch

from fmlab.adapt.base import Estimator, accuracy_and_loss, select_best, views_as_samples
from fmlab.errors import ConfigError

DEFAULT_C_GRID = (1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, C: float,
                 W0: torch.Tensor | None = None, b0: torch.Tensor | None = None,
                 max_iter: int = 100, tol: float = 1e-4,
                 history_size: int = 10) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise mean CE + ‖W‖²/(2CN) over W (D, K), b (K); returns (W, b, n_function_evals)."""
    n, d = X.shape
    lam = 1.0 / (C * n)
    W = (torch.zeros(d, n_classes, dtype=X.dtype) if W0 is None else W0.clone())
    b = (torch.zeros(n_classes, dtype=X.dtype) if b0 is None else b0.clone())
    W.requires_grad_(True)
    b.requires_grad_(True)
    onehot = torch.zeros(n, n_classes, dtype=X.dtype)
    onehot[torch.arange(n), y] = 1.0
    Xt = X.T.contiguous()
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, max_eval=max_iter * 2,
                            tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=history_size, line_search_fn="strong_wolfe")
    evals = 0

    def closure() -> torch.Tensor:
        # Gradients by hand: no autograd graph, one matmul forward, one backward.
        nonlocal evals
        evals += 1
        with torch.no_grad():
            logits = torch.addmm(b, X, W)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            loss = (lse.sum() - (logits * onehot).sum()) / n + 0.5 * lam * (W * W).sum()
            g = (logits - lse).exp_().sub_(onehot).div_(n)
            W.grad = torch.addmm(W, Xt, g, beta=lam)
            b.grad = g.sum(0)
        return loss

    opt.step(closure)
    return W.detach(), b.detach(), evals


class LinearProbe(Estimator):
    """Multinomial logistic regression (scikit-learn's objective) fitted by torch L-BFGS.

    ``C``: inverse regularisation strength; ``None`` chooses it on (X_val, y_val) by a sweep over
    ``C_grid`` and ``refine_steps`` bisection steps in log10 space (CoOp's search). ``max_iter``
    and ``tol`` mean what they mean in scikit-learn; ``search_max_iter`` caps the iterations of the
    fits inside the search (the chosen C is then refitted with ``max_iter``, warm-started).
    ``dtype``: "float32" (fast, default) or "float64". Training views are kept as samples.
    """

    views = "samples"

    def __init__(self, C: float | None = None, max_iter: int = 100, tol: float = 1e-4,
                 C_grid: tuple[float, ...] = DEFAULT_C_GRID, refine_steps: int = 8,
                 search_max_iter: int = 50, history_size: int = 10,
                 dtype: str = "float32") -> None:
        if C is not None and not C > 0:
            raise ConfigError(f"LinearProbe C must be > 0 or None, got {C!r}")
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"LinearProbe dtype must be 'float32' or 'float64', got {dtype!r}")
        if not C_grid or any(not c > 0 for c in C_grid):
            raise ConfigError(f"LinearProbe C_grid must be positive numbers, got {C_grid!r}")
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.C_grid = tuple(C_grid)
        self.refine_steps = refine_steps
        self.search_max_iter = search_max_iter
        self.history_size = history_size
        self.dtype = dtype

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return self.C is None

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        dt = torch.float32 if self.dtype == "float32" else torch.float64
        Xs, ys = views_as_samples(X.to(dt), y)
        k = len(self.classes_)

        def fit(C: float, W0: torch.Tensor | None = None, b0: torch.Tensor | None = None,
                it: int = self.max_iter) -> tuple[torch.Tensor, torch.Tensor, int]:
            return fit_logistic(Xs, ys, k, C, W0, b0, max_iter=it, tol=self.tol,
                                history_size=self.history_size)

        if self.C is not None:
            W, b, evals = fit(float(self.C))
            self.hyperparameters_ = {"C": float(self.C)}
        else:
            assert X_val is not None and y_val is not None
            logC, W, b = self._search(fit, X_val.to(dt), y_val)
            W, b, evals = fit(10.0**logC, W, b)
            self.hyperparameters_ = {"C": 10.0**logC}
        self._W, self._b = W, b
        self.coef_ = W.T.numpy().copy()  # (K, D) as in scikit-learn
        self.intercept_ = b.numpy().copy()
        self.n_evals_ = evals

    def _search(self, fit, Xv: torch.Tensor, yv: torch.Tensor):  # type: ignore[no-untyped-def]
        """Sweep then bisect log10(C) on validation accuracy (ties: lower validation loss)."""
        it = self.search_max_iter
        cache: dict[float, tuple[torch.Tensor, torch.Tensor, float, float]] = {}

        def evaluate(logC: float, W0=None, b0=None):  # type: ignore[no-untyped-def]
            W, b, _ = fit(10.0**logC, W0, b0, it)
            acc, loss = accuracy_and_loss(torch.addmm(b, Xv, W), yv)
            cache[logC] = (W, b, float(acc), float(loss))
            return cache[logC]

        grid = sorted(math.log10(c) for c in self.C_grid)
        W0 = b0 = None
        for g in grid:  # strong -> weak regularisation; each warm-starts from the previous
            W0, b0, _, _ = evaluate(g, W0, b0)
        best = self._best(grid, cache)
        i = grid.index(best)
        left = grid[max(i - 1, 0)]
        right = grid[min(i + 1, len(grid) - 1)]
        peak = best
        for _ in range(self.refine_steps if len(grid) > 1 else 0):
            Wp, bp = cache[peak][:2]
            lo, hi = (left + peak) / 2, (peak + right) / 2
            for c in (lo, hi):
                if c not in cache:
                    evaluate(c, Wp, bp)
            winner = self._best([lo, peak, hi], cache)
            if winner == lo:
                right, peak = peak, lo
            elif winner == hi:
                left, peak = peak, hi
            else:
                left, right = lo, hi
        return peak, cache[peak][0], cache[peak][1]

    @staticmethod
    def _best(cands: list[float], cache: dict) -> float:  # type: ignore[type-arg]
        acc = torch.tensor([cache[c][2] for c in cands])
        loss = torch.tensor([cache[c][3] for c in cands])
        return cands[select_best(acc, loss)]

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self._b.to(X.dtype), X, self._W.to(X.dtype))
