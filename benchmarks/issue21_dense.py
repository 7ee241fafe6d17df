"""Issue 21 must-show for DenseCLIP: method vs language-free baseline, with vs without context-aware
prompting, 3 seeds each, on MNIST canvases and on a user's npz object pool.

Every run is the CLI itself (``fmlab dense train`` then ``fmlab dense eval``), one after another,
single-threaded; CPU seconds per run come from ``getrusage(RUSAGE_CHILDREN)``. A finished run
(its ``eval.json``) is not run again, so a killed job continues where it stopped.

    python benchmarks/issue21_dense.py --out /tmp/issue21_dense --doc docs/results/dense

writes ``OUT/results.json`` (and a copy in DOC) and ``DOC/table.md`` (mean ± std over seeds) and, for seed 0, the
score-map pictures ``DOC/<pool>_<variant>.png``.

From an aligned image-text model (``model.clip``): the ``*_clip`` variants first train the CLIP stage once
(``fmlab clip train --config configs/clip/canvas_mnist.yaml``, TRAIN split, canvas seed 1) into ``OUT/clip``,
check it on held-out canvases (retrieval on a train split of canvas seed 2, never the test split), then
run every dense variant with ``--set model.clip=OUT/clip``:

    python benchmarks/issue21_dense.py --out /tmp/issue21_dense_clip --doc docs/results/dense/clip \
        --pools mnist --variants baseline_clip,denseclip_clip_noctx,denseclip_clip
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from _pools import shapes_pool

POOLS = {
    "mnist": None,  # the configs' own source
    "shapes": "canvas?objects=npz:{shapes}&size=64&max_objects=3&n_train=4000&n_test=500&seed=0",
}
VARIANTS = ("baseline", "denseclip_noctx", "denseclip", "baseline_clip", "denseclip_clip_noctx", "denseclip_clip")
CLIP_CONFIG = "configs/clip/canvas_mnist.yaml"
CLIP_HELDOUT = "canvas?objects=mnist&size=64&max_objects=3&n_train=500&n_test=10&seed=2"  # its TRAIN split
METRICS = ("miou", "miou_objects", "pixel_acc", "scoremap_miou_objects")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], log: Path) -> float:
    t0 = _cpu()
    with open(log, "a") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return _cpu() - t0


def clip_stage(out: Path, doc: Path) -> Path:
    """Train the aligned image-text model once (``OUT/clip``) and check it by held-out retrieval."""
    run = out / "clip"
    done = run / "retrieval.json"
    if done.is_file():
        return run
    run.parent.mkdir(parents=True, exist_ok=True)
    log = out / "clip.log"
    train = ["fmlab", "clip", "train", "--config", CLIP_CONFIG, "--out", str(run), "--set", "trainer.progress=false"]
    cpu = _run(train, log)
    ret = ["fmlab", "clip", "retrieval", "--model", str(run), "--data", CLIP_HELDOUT, "--split", "train", "--no-db"]
    _run(ret, log)
    metrics = {p[0]: float(p[1]) for p in (ln.split() for ln in log.read_text().splitlines())
               if len(p) == 2 and "_R@" in p[0]}
    res = {"cpu_train_s": cpu, "train_command": shlex.join(train), "retrieval_command": shlex.join(ret), **metrics}
    done.write_text(json.dumps(res, indent=1))
    (doc / "clip_stage.json").write_text(json.dumps(res, indent=1))
    return run


def one_run(out: Path, doc: Path, pool: str, variant: str, seed: int, extra: list[str]) -> dict:
    run = out / pool / variant / f"seed{seed}"
    done = run / "eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    sets = ["--set", f"model.seed={seed}", "--set", f"trainer.seed={seed}", "--set", "trainer.progress=false"]
    if POOLS[pool]:
        sets += ["--set", "data.source=" + POOLS[pool].format(shapes=shapes_pool())]
    if variant.endswith("_clip") or variant.endswith("_clip_noctx"):
        sets += ["--set", f"model.clip={clip_stage(out, doc)}"]
    sets += extra
    train = ["fmlab", "dense", "train", "--config", f"configs/dense/canvas_{variant}.yaml", "--out", str(run), *sets]
    run.parent.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"seed{seed}.log"
    cpu_train = _run(train, log)
    evalc = ["fmlab", "dense", "eval", "--model", str(run), "--db", str(out / "results.db")]
    if seed == 0:
        evalc += ["--picture", str(doc / f"{pool}_{variant}.png")]
    cpu_eval = _run(evalc, log)
    metrics = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in METRICS + ("scoremap_miou", "n_images"):
            metrics[parts[0]] = float(parts[1])
    res = {"pool": pool, "variant": variant, "seed": seed, "cpu_train_s": cpu_train, "cpu_eval_s": cpu_eval,
           "train_command": shlex.join(train), "eval_command": shlex.join(evalc), **metrics}
    done.write_text(json.dumps(res, indent=1))
    return res


def table(results: list[dict]) -> str:
    head = "| pool | variant | n | mIoU (bg incl.) | mIoU (objects) | pixel acc | score-map-only mIoU (objects) | CPU s/run |"
    lines = [head, "|" + "---|" * 8]
    for pool in POOLS:
        for variant in VARIANTS:
            rows = [r for r in results if r["pool"] == pool and r["variant"] == variant]
            if not rows:
                continue
            cells = []
            for m in METRICS:
                v = np.array([r[m] for r in rows if m in r])
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}" if len(v) else "—")
            cpu = np.mean([r["cpu_train_s"] + r["cpu_eval_s"] for r in rows])
            lines.append(f"| {pool} | {variant} | {len(rows)} | " + " | ".join(cells) + f" | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/issue21_dense")
    ap.add_argument("--doc", default="docs/results/dense")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pools", default=",".join(POOLS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra --set for every run")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    out, doc = Path(a.out), Path(a.doc)
    doc.mkdir(parents=True, exist_ok=True)
    extra = [x for s in a.extra for x in ("--set", s)]
    if any("_clip" in v for v in a.variants.split(",")) and a.pools != "mnist":
        ap.error("the *_clip variants use the MNIST-caption CLIP stage: pass --pools mnist")
    results = []
    for seed in range(a.seeds):  # seed-major: every pool and variant has a result early
        for pool in a.pools.split(","):
            for variant in a.variants.split(","):
                results.append(one_run(out, doc, pool, variant, seed, extra))
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (doc / "results.json").write_text(json.dumps(results, indent=1))
                (doc / "table.md").write_text(table(results))
                print(f"{pool} {variant} seed{seed}: mIoU {results[-1].get('miou', float('nan')):.3f} "
                      f"objects {results[-1].get('miou_objects', float('nan')):.3f} "
                      f"({results[-1]['cpu_train_s']:.0f} CPU s)", flush=True)
    print(table(results))


if __name__ == "__main__":
    sys.exit(main())
