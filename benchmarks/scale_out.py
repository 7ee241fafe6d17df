"""Local engine vs Ray (1 and 2 workers): curation of N synthetic captions, features of M images.

Issue 26. Runs every configuration side by side in one process, checks that the outputs are
identical (curated.jsonl sha256; feature tensors bit for bit), and prints a table plus the load
average before and after (the machine is shared: the times are noisy). Writes OUT/scale_out.json.

    FMLAB_DATA=... OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0 \\
        python benchmarks/scale_out.py --captions 1000000 --images 50000 --out runs/scale_out

Captions: synthetic (no corpus ships): 10 words each from a 2,000-word filler vocabulary plus
0-2 of 5,000 metadata entries drawn Zipf-like (head entries far above t=200), as JSONL.
Features: ``resnet20_cifar`` (random init; the speed does not depend on the weights) over the
first M images of CIFAR-10 train from FMLAB_DATA (the JPEG q~75 copy), batch 256, one thread per
worker; the local engine also runs with one thread. One local Ray cluster (2 CPUs) is started
first and its start-up time reported on its own row; each Ray row still includes starting its
actors and shipping the model/split to them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_pool(path: Path, n: int, n_entries: int = 5000, seed: int = 0) -> Path:
    """``n`` JSONL captions and ``entries.txt`` beside them (written once, reused)."""
    entries = path.parent / "entries.txt"
    if path.is_file() and entries.is_file():
        return entries
    rng = np.random.default_rng(seed)
    filler = [f"w{i}x" for i in range(2000)]
    ents = [f"e{i}" for i in range(n_entries)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            words = rng.integers(0, len(filler), size=(m, 10))
            k = rng.integers(0, 3, size=m)
            hits = np.minimum(rng.zipf(1.3, size=(m, 2)) - 1, n_entries - 1)
            for i in range(m):
                toks = [filler[j] for j in words[i]] + [ents[j] for j in hits[i, :k[i]]]
                f.write(json.dumps({"caption": " ".join(toks), "id": start + i}) + "\n")
    entries.write_text("\n".join(ents) + "\n")
    return entries


def bench_curate(pool: Path, entries: Path, out: Path) -> list[dict]:
    from fmlab.curate import CurateConfig, curate

    rows = []
    for engine, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2), ("local", 1)):
        t = time.perf_counter()
        s = curate(CurateConfig(pool, entries, 200, out / f"curate_{engine}{workers}", seed=0,
                                workers=workers, engine=engine))
        wall = time.perf_counter() - t
        rows.append({"task": "curate", "engine": engine, "workers": workers, "wall_s": round(wall, 1),
                     "pass1_s": s["seconds"]["pass1_read_match"], "pass2_s": s["seconds"]["pass2_write"],
                     "sha256": s["curated_sha256"], "pairs": s["pairs_total"], "kept": s["pairs_kept"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_features(n: int) -> list[dict]:
    import torch

    from fmlab.data import open_source
    from fmlab.data.sources import SubsetSplit
    from fmlab.features import cached_features
    from fmlab.features.ray_engine import ray_extractor
    from fmlab.models import create_backbone

    torch.set_num_threads(1)
    split = open_source("cifar10").split("train")
    split = SubsetSplit(split, np.arange(min(n, len(split))))
    bb = create_backbone("resnet20_cifar", seed=0)
    rows, ref = [], None
    # local again at the end: the spread of the two local rows shows the drift of the shared load
    for engine, workers in (("local", 1), ("ray", 1), ("ray", 2), ("local", 1)):
        extract = None if engine == "local" else ray_extractor(workers)
        t = time.perf_counter()
        fs = cached_features(bb, split, batch_size=256, use_cache=False, progress=False,
                             extract=extract)
        wall = time.perf_counter() - t
        ref = fs.features if ref is None else ref
        rows.append({"task": "features", "engine": engine, "workers": workers, "images": len(split),
                     "wall_s": round(wall, 1), "img_per_s": round(len(split) / wall, 1),
                     "equal_to_local": bool(torch.equal(ref, fs.features))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--out", default="runs/scale_out")
    ap.add_argument("--skip", choices=["curate", "features"], default=None)
    args = ap.parse_args()
    out = Path(args.out)
    load = {"before": os.getloadavg()}
    import ray

    t = time.perf_counter()  # one local cluster for every Ray row; its start is reported apart
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    rows = [{"task": "ray_start", "engine": "ray", "workers": 0,
             "wall_s": round(time.perf_counter() - t, 1)}]
    if args.skip != "curate":
        pool = out / f"pool_{args.captions}.jsonl"
        t = time.perf_counter()
        entries = make_pool(pool, args.captions)
        print(f"pool: {pool} ({pool.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t:.0f} s)")
        rows += bench_curate(pool, entries, out)
    if args.skip != "features":
        rows += bench_features(args.images)
    load["after"] = os.getloadavg()
    ray.shutdown()
    result = {"rows": rows, "loadavg": load, "cpus": os.cpu_count(), "argv": sys.argv}
    (out / "scale_out.json").write_text(json.dumps(result, indent=2))
    print(f"load average before {load['before']}, after {load['after']}")
    for r in rows:
        print(f"| {r['task']} | {r['engine']} | {r['workers']} | {r['wall_s']} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
