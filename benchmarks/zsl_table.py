"""Collect ``fmlab zsl`` outputs into the table of docs/results/zsl/README.md.

    python benchmarks/zsl_table.py runs/zsl/cifar10_{projection,clswgan,lisgan} \
        runs/zsl/eurosat_{projection,clswgan,lisgan} --out docs/results/zsl/table.md

Each folder's ``results.json`` (one record per seed) gives mean ± std (ddof=1) in % of ZSL top-1,
GZSL S, U and H; the per-seed values follow, so a reader can check the spread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = ("zsl_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h")


def row(folder: Path) -> str:
    """One markdown row: source, method, seeds, then mean ± std of each metric."""
    recs = json.loads((folder / "results.json").read_text())
    p = recs[0]["protocol"]
    cells = [p["source"], recs[0]["method"], ",".join(str(r["seed"]) for r in recs)]
    for m in METRICS:
        v = np.array([r[m] for r in recs]) * 100
        cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}")
    cells.append(f"{np.mean([r['fit_seconds'] for r in recs]):.0f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    head = ("| source | method | seeds | ZSL top-1 | GZSL S | GZSL U | GZSL H | fit s/seed (wall) |\n"
            "|---|---|---|---|---|---|---|---|")
    text = head + "\n" + "\n".join(row(f) for f in a.runs) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
