"""Counter-based random numbers: draw ``j`` of sample ``i`` is a hash of ``(seed, stream, i, j)``.

A generator that takes its randomness from :func:`hash_uniform` renders any batch of samples with
exactly the pixels it would give them one by one, in any order, without a per-sample Python loop
(``np.random.default_rng([seed, i])`` per sample costs ~10 us each, the whole budget of a canvas).
The mixer is SplitMix64's finaliser, applied twice; plenty for layouts and noise, not for crypto.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place on a uint64 array (wrap-around is intended)."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def hash_uniform(seed: int, indices: np.ndarray, n: int, stream: int = 0) -> np.ndarray:
    """``n`` uniform [0, 1) numbers per sample, a function of ``(seed, stream, index, j)`` only.

    Args:
        seed: the split's seed (any int >= 0).
        indices: sample indices (B,), any order, repeats allowed.
        n: draws per sample.
        stream: separates independent uses (layout, noise, ...) of the same sample.

    Returns:
        float64 (B, n).

    Examples:
        >>> a = hash_uniform(0, np.array([5, 9]), 3)
        >>> bool((a[1] == hash_uniform(0, np.array([9]), 3)[0]).all()), a.shape
        (True, (2, 3))
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], np.uint64) * _GOLDEN + np.uint64(stream))
        row = _mix(idx * _GOLDEN + key)
        z = row[:, None] + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        z = _mix(_mix(z))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
