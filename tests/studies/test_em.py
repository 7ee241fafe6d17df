"""EM for Gaussian mixtures: monotone objective on random data, recovery of separated means."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.errors import ConfigError
from fmlab.studies.em import fit_gmm


@pytest.mark.parametrize("covariance", ["full", "shared"])
@pytest.mark.parametrize("seed", range(4))
def test_plain_log_likelihood_never_decreases(covariance, seed):
    """reg=0: the recorded objective is the plain mean log-likelihood, and it is re-measured here."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 3)) + rng.integers(0, 3, (300, 1))
    fit = fit_gmm(x, 3, covariance=covariance, reg=0.0, max_iter=60, tol=-np.inf, seed=seed)
    assert fit.n_iter == 60  # tol=-inf: no early stop, so every iteration is checked
    assert np.all(np.diff(fit.history) >= -1e-10), np.diff(fit.history).min()
    # the returned parameters come from one more M-step after the last record: no worse
    assert fit.log_likelihood(x) >= fit.history[-1] - 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_penalised_objective_never_decreases_on_structureless_data(seed):
    """Uniform noise (no clusters at all), many components, a covariance penalty: still monotone."""
    x = np.random.default_rng(seed).random((200, 4))
    fit = fit_gmm(x, 6, covariance="full", reg=0.05, max_iter=80, tol=-np.inf, seed=seed)
    assert np.all(np.diff(fit.history) >= -1e-10)
    assert fit.history[-1] > fit.history[0]  # and it moved


def test_recovers_separated_means():
    rng = np.random.default_rng(0)
    true = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])
    z = rng.integers(4, size=4000)
    x = true[z] + rng.standard_normal((4000, 3))
    fit = fit_gmm(x, 4, covariance="full", n_init=3, seed=1)
    # match each true mean to its nearest fitted mean: a permutation, each within 0.15
    dist = np.linalg.norm(true[:, None] - fit.means[None], axis=-1)
    assert sorted(dist.argmin(1).tolist()) == [0, 1, 2, 3]
    assert dist.min(1).max() < 0.15
    assert np.allclose(fit.weights, 0.25, atol=0.03)
    assert np.allclose(fit.covariances, np.eye(3), atol=0.15)
    post = fit.posterior(x)
    assert np.allclose(post.sum(1), 1.0)


def test_bad_input_names_the_key():
    x = np.zeros((3, 2))
    with pytest.raises(ConfigError, match="x"):
        fit_gmm(x, 4)
    with pytest.raises(ConfigError, match="covariance"):
        fit_gmm(np.ones((10, 2)), 2, covariance="diag")
    with pytest.raises(ConfigError, match="reg"):
        fit_gmm(np.ones((10, 2)), 2, reg=float("nan"))
