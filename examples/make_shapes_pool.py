"""Write a Fashion-MNIST-style object pool of drawn shapes as ``npz:`` (a pool a user brings).

fmlab's synthetic sources (``canvas``, ``video``, ``strings``) paste objects from any labelled image
source; MNIST digits are only the default. This script draws 10 classes of grey 28x28 shapes with
random size, position, thickness and rotation, and writes them in the ``npz:`` layout (``x_train``,
``y_train``, ``x_test``, ``y_test``, ``class_names``), so every issue-21 command can be rerun with
``objects=npz:shapes.npz`` to show nothing is wired to digits.

    python examples/make_shapes_pool.py --out shapes.npz [--n-train 6000 --n-test 1000 --seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

CLASS_NAMES = ["circle", "ring", "square", "frame", "triangle", "cross", "plus", "bar", "pole", "diamond"]


def _shape(k: int, u: np.ndarray, v: np.ndarray, r: float, w: float) -> np.ndarray:
    """Ink of class ``k`` on centred, rotated coordinates (u, v), radius r, stroke w (all in pixels)."""
    au, av = np.abs(u), np.abs(v)
    if k == 0:
        return np.hypot(u, v) <= r
    if k == 1:
        return np.abs(np.hypot(u, v) - r) <= w / 2
    if k == 2:
        return np.maximum(au, av) <= r * 0.85
    if k == 3:
        return np.abs(np.maximum(au, av) - r * 0.85) <= w / 2
    if k == 4:
        return (v <= r * 0.7) & (v >= -r * 0.9 + 1.8 * au)
    if k == 5:
        return ((np.abs(u - v) <= w * 0.75) | (np.abs(u + v) <= w * 0.75)) & (np.maximum(au, av) <= r)
    if k == 6:
        return ((au <= w / 2) | (av <= w / 2)) & (np.maximum(au, av) <= r)
    if k == 7:
        return (av <= w * 0.9) & (au <= r)
    if k == 8:
        return (au <= w * 0.9) & (av <= r)
    return au + av <= r


def make_shapes(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` shapes (uint8 (n, size, size)) and their classes, drawn from ``seed``.

    Args:
        n: number of images.
        seed: random seed.
        size: image side.

    Returns:
        (images, labels).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_NAMES), n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.zeros((n, size, size), np.uint8)
    for i, k in enumerate(labels):
        r = rng.uniform(0.28, 0.42) * size
        w = rng.uniform(0.08, 0.16) * size
        cx, cy = size / 2 + rng.uniform(-2, 2, 2)
        # rotation-symmetric classes would gain nothing; bars and poles must keep their orientation
        angle = 0.0 if k in (7, 8) else rng.uniform(-0.35, 0.35)
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * (xx - cx) + s * (yy - cy), -s * (xx - cx) + c * (yy - cy)
        # 2x2 supersampling gives soft edges, like scanned digits
        ink = np.mean([_shape(int(k), u + du, v + dv, r, w) for du in (-0.25, 0.25) for dv in (-0.25, 0.25)], 0)
        images[i] = np.clip(ink * rng.uniform(180, 255), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    x_tr, y_tr = make_shapes(a.n_train, 2 * a.seed)
    x_te, y_te = make_shapes(a.n_test, 2 * a.seed + 1)
    np.savez_compressed(a.out, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                        class_names=np.array(CLASS_NAMES))
    print(f"wrote {a.out}: {a.n_train} train / {a.n_test} test shapes, classes {', '.join(CLASS_NAMES)}")


if __name__ == "__main__":
    main()
