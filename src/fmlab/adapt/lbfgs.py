"""L-BFGS specialised to L2-regularised softmax regression, batched over regularisation strengths.

Why not ``torch.optim.LBFGS``: a generic line search evaluates the full objective at each trial
step, i.e. two (N, D)×(D, K) products per trial. For a linear model the logits along the search
line are Z + t·Zd, with Zd = X·d computed once per iteration, so the objective and its first two
derivatives in t cost only O(N·K). That makes an (almost) exact line search free: a safeguarded
Newton iteration on φ'(t) = 0 (φ is convex) that uses derivatives only, so float32 rounding in
the loss value cannot stall it. Each iteration then costs exactly two matrix products (X·d and
the gradient Xᵀ(P − Y)), and exact steps need fewer iterations than the usual unit-step start.

G problems that share X and y but differ in λ are solved together: every quantity carries a
leading G axis and every scalar (dot products, step sizes, convergence) is per problem, so the
batch is exactly G independent L-BFGS runs with one run's Python overhead.

Objective per problem: mean_i CE(softmax(W x_i + b), y_i) + λ/2·‖W‖², b unpenalised.
Convergence per problem: max |gradient| ≤ tol (scikit-learn's ``gtol`` test on the same
averaged objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_REFRESH_EVERY = 25  # recompute logits from (W, b) to stop float32 drift of Z += t·Zd


@dataclass
class LbfgsResult:
    W: torch.Tensor  # (G, K, D)
    b: torch.Tensor  # (G, K)
    n_iter: torch.Tensor  # (G,) iterations each problem took
    converged: torch.Tensor  # (G,) bool
    n_matmuls: int  # (N, D)-sized matrix products done, the cost unit


def _dot(aW: torch.Tensor, ab: torch.Tensor, cW: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    return (aW * cW).sum((1, 2)) + (ab * cb).sum(1)


def softmax_lbfgs(X: torch.Tensor, y: torch.Tensor, n_classes: int, lam: torch.Tensor,
                  W0: torch.Tensor, b0: torch.Tensor, max_iter: int = 100, tol: float = 1e-5,
                  history_size: int = 10, line_search_steps: int = 6,
                  Z0: torch.Tensor | None = None) -> LbfgsResult:
    """Minimise the objective above for each λ in ``lam`` (G,), starting from W0 (G, K, D) and
    b0 (G, K). X (N, D) float, y (N,) int64 class indices < n_classes. ``Z0`` (G, N, K), when the
    caller already has them, are the start's logits (saves one product)."""
    g_n = lam.shape[0]
    n, d = X.shape
    k = n_classes
    dt = X.dtype
    onehot = torch.zeros(n, k, dtype=dt)
    onehot[torch.arange(n), y] = 1.0
    Xg = X.expand(g_n, n, d)
    lam = lam.to(dt)
    lam3 = lam.view(g_n, 1, 1)
    W = W0.to(dt).clone()
    b = b0.to(dt).clone()
    matmuls = 0

    def logits(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if g_n == 1:  # plain 2-D products are a little faster than batched ones
            return torch.addmm(b[0], X, W[0].T).unsqueeze(0)
        return torch.baddbmm(b.unsqueeze(1), Xg, W.transpose(1, 2))

    def gradient(Z: torch.Tensor, W: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient (gW, gb) and the softmax probabilities P at logits Z."""
        P = torch.softmax(Z, dim=2)
        R = (P - onehot).div_(n)
        if g_n == 1:
            gW = torch.addmm(W[0], R[0].T, X, beta=float(lam[0])).unsqueeze(0)
        else:
            gW = torch.baddbmm(lam3 * W, R.transpose(1, 2), Xg)
        return gW, R.sum(1), P

    if Z0 is None:
        Z = logits(W, b)
        matmuls += 1
    else:
        Z = Z0.to(dt)
    gW, gb, P = gradient(Z, W)
    matmuls += 1
    S: list[tuple[torch.Tensor, torch.Tensor]] = []
    Yv: list[tuple[torch.Tensor, torch.Tensor]] = []
    rho: list[torch.Tensor] = []
    gamma = torch.ones(g_n, dtype=dt)
    n_iter = torch.zeros(g_n, dtype=torch.long)
    active = torch.ones(g_n, dtype=torch.bool)
    for it in range(max_iter + 1):
        gmax = torch.maximum(gW.abs().amax((1, 2)), gb.abs().amax(1))
        active = gmax > tol
        if it == max_iter or not bool(active.any()):
            break
        n_iter += active.long()
        act = active.to(dt)
        # Two-loop recursion: d = −H·g with H the L-BFGS inverse-Hessian approximation.
        qW, qb = -gW, -gb
        alphas = []
        for (sW, sb), (yW, yb), r in zip(reversed(S), reversed(Yv), reversed(rho)):
            a = r * _dot(sW, sb, qW, qb)
            qW = qW - a.view(-1, 1, 1) * yW
            qb = qb - a.view(-1, 1) * yb
            alphas.append(a)
        qW = qW * gamma.view(-1, 1, 1)
        qb = qb * gamma.view(-1, 1)
        for (sW, sb), (yW, yb), r, a in zip(S, Yv, rho, reversed(alphas)):
            beta = r * _dot(yW, yb, qW, qb)
            qW = qW + (a - beta).view(-1, 1, 1) * sW
            qb = qb + (a - beta).view(-1, 1) * sb
        dW, db = qW * act.view(-1, 1, 1), qb * act.view(-1, 1)
        Zd = logits(dW, db)
        matmuls += 1
        t = _line_search(Z, P, Zd, onehot, W, dW, lam, act, line_search_steps)
        sW, sb = t.view(-1, 1, 1) * dW, t.view(-1, 1) * db
        W, b = W + sW, b + sb
        if (it + 1) % _REFRESH_EVERY == 0:
            Z = logits(W, b)
            matmuls += 1
        else:
            Z = Z + t.view(-1, 1, 1) * Zd
        gW_new, gb_new, P = gradient(Z, W)
        matmuls += 1
        yW, yb = gW_new - gW, gb_new - gb
        sy = _dot(sW, sb, yW, yb)
        yy = _dot(yW, yb, yW, yb)
        good = (sy > 1e-30) & (yy > 0) & active
        S.append((sW, sb))
        Yv.append((yW, yb))
        rho.append(torch.where(good, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))
        gamma = torch.where(good, sy / yy.clamp_min(1e-30), gamma)
        if len(S) > history_size:
            S.pop(0)
            Yv.pop(0)
            rho.pop(0)
        gW, gb = gW_new, gb_new
    return LbfgsResult(W, b, n_iter, ~active, matmuls)


def _line_search(Z: torch.Tensor, P0: torch.Tensor, Zd: torch.Tensor, onehot: torch.Tensor,
                 W: torch.Tensor, dW: torch.Tensor, lam: torch.Tensor, act: torch.Tensor,
                 steps: int) -> torch.Tensor:
    """Per-problem step t ≈ argmin φ(t), φ(t) = objective(W + t·dW, ...), by safeguarded Newton.

    φ is convex with φ'(0) < 0. A bracket [lo, hi] with φ'(lo) < 0 < φ'(hi) is kept; a Newton
    step leaving it is replaced by bisection (or doubling while no upper end is known). Stops
    once |φ'(t)| ≤ 0.1·|φ'(0)|, the strong-Wolfe curvature test, which also guarantees sᵀy > 0.
    """
    n = Z.shape[1]
    wd = (W * dW).sum((1, 2))
    dd = (dW * dW).sum((1, 2))
    zy = (Zd * onehot).sum((1, 2))  # the true-class part of φ' does not depend on t

    def derivs(t: torch.Tensor, P: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        # φ'(t) = mean_i Σ_k (p_ik − y_ik)·zd_ik + λ(w·d + t·d·d)
        # φ''(t) = mean_i [Σ_k p_ik·zd_ik² − (Σ_k p_ik·zd_ik)²] + λ·d·d; few passes over (N, K).
        if P is None:
            P = torch.softmax(torch.addcmul(Z, t.view(-1, 1, 1), Zd), dim=2)
        PZ = P * Zd
        pz = PZ.sum(2)
        s2 = PZ.mul_(Zd).sum((1, 2))
        d1 = (pz.sum(1) - zy) / n + lam * (wd + t * dd)
        d2 = (s2 - (pz * pz).sum(1)) / n + lam * dd
        return d1, d2

    zero = torch.zeros_like(lam)
    d1, d2 = derivs(zero, P0)  # probabilities at t = 0 come with the gradient
    target = 0.1 * d1.abs()
    lo, hi = zero.clone(), torch.full_like(lam, float("inf"))
    t = zero.clone()
    done = ~act.bool() | (d1 >= 0)
    for _ in range(steps):
        newton = t - d1 / d2.clamp_min(1e-30)
        fallback = torch.where(torch.isinf(hi), 2 * t.clamp_min(1e-3), (lo + hi) / 2)
        inside = (newton > lo) & (newton < hi) & torch.isfinite(newton)
        t_new = torch.where(done, t, torch.where(inside, newton, fallback))
        d1_new, d2_new = derivs(t_new)
        t = t_new
        d1 = torch.where(done, d1, d1_new)
        d2 = torch.where(done, d2, d2_new)
        lo = torch.where(~done & (d1 < 0), t, lo)
        hi = torch.where(~done & (d1 > 0), t, hi)
        done = done | (d1.abs() <= target)
        if bool(done.all()):
            break
    return torch.where(act.bool(), t, zero)
