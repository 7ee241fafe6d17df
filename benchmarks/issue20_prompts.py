"""Issue 20's prompt-method comparisons (docs/results/prompts): ConES vs CoOp, and GRAM vs CoOp
from "a photo of a" and from a random context, with one image-text model trained here.

Steps, each a CLI command in a child process (one thread), skipped when its output exists:

1. ``fmlab clip train --config configs/clip/coco_mini_retrieval.yaml`` -> the model M (LiT:
   ResNet-20 image tower, locked MiniLM text tower, COCO-mini train captions);
2. ``fmlab adapt meta-train --clip-model M --data coco_mini`` -> GRAM's META_DIR (the
   meta-training images are COCO-mini's; the downstream test splits are CIFAR-10 and EuroSAT, and
   the leak check confirms no overlap);
3. ``fmlab adapt --clip-model M --data D --methods ... --shots ... --seeds 1,2,3`` per source D
   (study ``b2n`` adds ``--base-to-new``; study ``xd`` adds ``--transfer-to`` the other source).

    FMLAB_DATA=/work/shared/data python benchmarks/issue20_prompts.py --out runs/i20p
    FMLAB_DATA=/work/shared/data python benchmarks/issue20_prompts.py --out runs/i20p --studies b2n,xd
    python benchmarks/issue20_prompts.py --out runs/i20p --report   # tables from results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = {
    "cones": ("zeroshot,coop,cones,cones_random", "1,2,4,8,16"),
    "gram": ("coop,coop_photo,gram", "1,2,4"),
    # GRAM's generalisation studies (with the gram_phi ablation: φ without ψ)
    "b2n": ("zeroshot,coop,coop_photo,gram,gram_phi", "1,2,4"),
    "xd": ("zeroshot,coop,coop_photo,gram,gram_phi", "1,2,4"),
}
TRANSFER = {"cifar10": "eurosat", "eurosat": "cifar10"}  # xd: fitted on the key, scored on the value


def fmlab(args: list[str], log: Path) -> float:
    """Run ``fmlab ARGS`` (one thread); returns its wall seconds; exits on failure."""
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "fmlab", *args], stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}).returncode
    if rc != 0:
        raise SystemExit(f"fmlab {' '.join(args)} failed (rc {rc}); see {log}")
    return time.perf_counter() - t


def run(out: Path, sources: list[str], studies: list[str], seeds: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model = out / "clip"
    if not (model / "clip_model.json").is_file():
        fmlab(["clip", "train", "--config", str(ROOT / "configs/clip/coco_mini_retrieval.yaml"),
               "--out", str(model)], out / "clip.log")
    meta = out / "meta"
    if set(studies) - {"cones"} and not (meta / "gram_meta.json").is_file():
        fmlab(["adapt", "meta-train", "--clip-model", str(model), "--data", "coco_mini",
               "--out", str(meta)], out / "meta.log")
    for study in studies:
        methods, shots = SWEEPS[study]
        for data in sources:
            dest = out / f"{study}_{data}"
            if (dest / "results.json").is_file():
                continue
            cmd = ["adapt", "--clip-model", str(model), "--data", data, "--methods", methods,
                   "--shots", shots, "--seeds", seeds, "--out", str(dest), "--no-db"]
            if study != "cones":
                cmd += ["--meta", str(meta)]
            if study == "b2n":
                cmd += ["--base-to-new"]
            if study == "xd":
                cmd += ["--transfer-to", TRANSFER[data]]
            wall = fmlab(cmd, out / f"{study}_{data}.log")
            print(f"{study} on {data}: {wall:.0f} s", flush=True)


def report(out: Path) -> str:
    """Accuracy (%) and mean fit seconds per method × shots, mean ± std over seeds."""
    lines = []
    for res in sorted(out.glob("*/results.json")):
        recs = json.loads(res.read_text())
        shots = sorted({r["shots"] for r in recs}, key=lambda k: (isinstance(k, str), k))
        methods = list(dict.fromkeys(r["method"] for r in recs))
        lines += [f"### {res.parent.name}", "",
                  "| method | " + " | ".join(f"{k}-shot" for k in shots) + " | fit s (mean) |",
                  "|---|" + "---:|" * (len(shots) + 1)]
        for m in methods:
            cells = []
            for k in shots:
                xs = [100 * r["accuracy"] for r in recs if r["method"] == m and r["shots"] == k]
                cells.append(f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}"
                             if len(xs) > 1 else f"{xs[0]:.1f}")
            fit = statistics.mean(r["fit_seconds"] for r in recs if r["method"] == m)
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {fit:.2f} |")
        if recs[0].get("evaluation") in ("base_to_new", "cross_dataset"):
            from fmlab.adapt.transfer import summarize_transfer

            lines += ["", summarize_transfer(recs)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sources", default="cifar10,eurosat")
    ap.add_argument("--studies", default="cones,gram")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        print(report(Path(args.out)))
        return
    run(Path(args.out), args.sources.split(","), args.studies.split(","), args.seeds)


if __name__ == "__main__":
    main()
