"""The non-digit object pool the issue-21 benchmarks rerun on: where it is, and writing it when absent.

``$FMLAB_SHAPES_POOL`` names an existing npz; otherwise ``runs/pools/shapes.npz`` is written once by
``examples/make_shapes_pool.py`` with its defaults (6,000 / 1,000 shapes, seed 0), which is the pool
the numbers in ``docs/results/`` were measured on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shapes_pool() -> str:
    """Path of the shapes npz pool (written on first use when neither it nor ``$FMLAB_SHAPES_POOL`` exists)."""
    given = os.environ.get("FMLAB_SHAPES_POOL")
    if given:
        if not Path(given).is_file():
            sys.exit(f"$FMLAB_SHAPES_POOL: {given} is not a file")
        return given
    path = Path("runs/pools/shapes.npz")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("shapes.tmp.npz")
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_shapes_pool.py"), "--out", str(tmp)], check=True)
        tmp.replace(path)
    return str(path)
