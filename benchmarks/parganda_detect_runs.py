"""ParGANDA's canvas detector (issue 24): raw vs translated synthetic canvases, tested on real MNIST canvases.

For each seed S: 64×64 canvases with 1–3 digits (:func:`fmlab.experiments.parganda_detect.grey_canvases`,
``--n-train`` canvases, layout seed S) over three pools — (a) the 10,000 raw ``fontdigits`` digits
of ``SRC/synth_train.npz``, (b) the same digits translated by ``SRC/translator_sS``
(``SRC/translated_sS.npz``, written by ``fmlab translate apply``; not retrained here), (c) the
first 10,000 MNIST train digits (upper bound), (d) = (b)'s images with (a)'s boxes (the
simulator's boxes: the canvas source boxes a translated digit by its thresholded pixels, which
include the translator's blobs; ParGANDA keeps the simulator's labels and boxes) — train the same :class:`~fmlab.detect.TinyCenterNet`
on each, and report mAP@0.5 on 1,000 canvases over MNIST **test** digits (layout seed 10,000, the
same for every run). Writes ``OUT/seedS.json``, ``OUT/summary.md`` and ``OUT/detections_sS.png``;
a seed whose json exists is read back::

    FMLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/parganda_detect_runs.py \
        --seeds 0,1,2 --src runs/parganda --out runs/parganda_detect
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fmlab.detect import decode
from fmlab.experiments.parganda import load_xy
from fmlab.experiments.parganda_detect import DetectorRecipe, canvas_map, grey_canvases, train_detector

ARMS = ("raw_synthetic", "translated_synthetic", "real_mnist", "translated_sim_boxes")
TEST_SEED = 10_000


@torch.no_grad()
def detections_png(nets: dict, test: dict, path: Path, n: int = 8, thresh: float = 0.3) -> None:
    """Rows: the arms' detections (score >= thresh) on the first ``n`` test canvases (green = label)."""
    from PIL import Image, ImageDraw

    x = torch.from_numpy(test["images"][:n]).float().div(255.0)
    scale, rows = 3, []
    for name, net in nets.items():
        boxes, scores, labels = decode(net(x), k=10)
        row = Image.new("RGB", (n * 64 * scale, 64 * scale + 14))
        draw = ImageDraw.Draw(row)
        draw.text((2, 64 * scale), name, fill=(255, 255, 0))
        for i in range(n):
            img = Image.fromarray(test["images"][i, 0]).convert("RGB").resize((64 * scale,) * 2, Image.NEAREST)
            row.paste(img, (i * 64 * scale, 0))
            for b, s, lab in zip(boxes[i].tolist(), scores[i].tolist(), labels[i].tolist()):
                if s >= thresh:
                    xy = [v * scale + (i * 64 * scale if j % 2 == 0 else 0) for j, v in enumerate(b)]
                    draw.rectangle(xy, outline=(255, 60, 60))
                    draw.text((xy[0] + 2, xy[1] + 1), f"{lab} {s:.2f}", fill=(255, 60, 60))
            gt = " ".join(str(v) for v in test["labels"][i] if v >= 0)
            draw.text((i * 64 * scale + 2, 2), gt, fill=(60, 255, 60))
        rows.append(row)
    out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)))
    for j, r in enumerate(rows):
        out.paste(r, (0, j * rows[0].height))
    out.save(path)


def run_seed(seed: int, args: argparse.Namespace, real: tuple, test: dict) -> dict:
    out, src = Path(args.out), Path(args.src)
    done = out / f"seed{seed}.json"
    res: dict = json.loads(done.read_text()) if done.is_file() else {"seed": seed}
    todo = [a for a in ARMS if f"map_{a}" not in res]  # a finished arm is read back
    if not todo:
        return res
    pools = {"raw_synthetic": load_xy(src / "synth_train.npz"),
             "translated_synthetic": load_xy(src / f"translated_s{seed}.npz"), "real_mnist": real}
    pools["translated_sim_boxes"] = pools["translated_synthetic"]
    recipe = DetectorRecipe(steps=args.steps)
    res.update({"steps": args.steps, "n_train": args.n_train})
    nets = {}
    for name in todo:
        t = time.process_time()
        train = grey_canvases(*pools[name], args.n_train, seed=seed)
        if name == "translated_sim_boxes":  # same layout as the raw canvases: take their boxes
            sim = grey_canvases(*pools["raw_synthetic"], args.n_train, seed=seed)
            assert np.array_equal(sim["labels"], train["labels"])
            train["boxes"] = sim["boxes"]
        nets[name] = train_detector(train, seed, recipe)
        ap, m = canvas_map(nets[name], test)
        res[f"map_{name}"], res[f"ap_{name}"] = m, [round(float(a), 4) for a in ap]
        res[f"cpu_s_{name}"] = round(time.process_time() - t, 1)
        print(f"seed {seed} {name}: mAP@0.5 {m:.4f} ({res[f'cpu_s_{name}']} CPU-s)", flush=True)
    png = out / f"detections_s{seed}.png"
    detections_png(nets, test, png if not png.is_file() else out / f"detections_more_s{seed}.png")
    done.write_text(json.dumps(res, indent=2))
    return res


def summary(results: list[dict]) -> str:
    def ms(k: str) -> str:
        v = [r[k] * 100 for r in results]
        return f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"

    seeds = ",".join(str(r["seed"]) for r in results)
    diff = [100 * (r["map_translated_synthetic"] - r["map_raw_synthetic"]) for r in results]
    lines = [f"seeds {seeds}; mAP@0.5 on 1,000 real-MNIST test canvases, mean ± sample std in %", "",
             "| training pool | mAP@0.5 |", "|---|---|",
             f"| raw synthetic (fonts) | {ms('map_raw_synthetic')} |",
             f"| translated synthetic (ParGANDA) | {ms('map_translated_synthetic')} |",
             f"| translated synthetic, simulator boxes | {ms('map_translated_sim_boxes')} |",
             f"| real MNIST train digits (upper bound) | {ms('map_real_mnist')} |", "",
             "translated − raw per seed: " + ", ".join(f"{d:+.1f}" for d in diff),
             "translated (simulator boxes) − raw per seed: " + ", ".join(
                 f"{100 * (r['map_translated_sim_boxes'] - r['map_raw_synthetic']):+.1f}" for r in results)]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--src", default="runs/parganda", help="folder with synth_train.npz, translated_sS.npz")
    p.add_argument("--out", default="runs/parganda_detect")
    p.add_argument("--steps", type=int, default=400, help="detector steps (batch 32)")
    p.add_argument("--n-train", type=int, default=6000, help="training canvases per arm")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    from fmlab.data import open_source

    mn = open_source("mnist")
    te, tr = mn.split("test"), mn.split("train")
    test = grey_canvases(np.asarray(te.get_batch(np.arange(len(te)))), np.asarray(te.labels), 1000,
                         seed=TEST_SEED)
    real = (np.asarray(tr.get_batch(np.arange(10000))), np.asarray(tr.labels)[:10000])
    results = [run_seed(int(s), args, real, test) for s in args.seeds.split(",")]
    text = summary(results)
    if len(results) == 3:
        (Path(args.out) / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
