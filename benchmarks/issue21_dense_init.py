"""Is the score map aligned at step 0? Zero-shot class accuracy of the UNTRAINED score map on object pixels.

For each dense config, the model is built (no training step) and, on test canvases, every object pixel
(ground truth > 0) is classified by the argmax over classes of its score map (upsampled bilinearly to
the canvas); chance is 1/K. With ``model.clip`` the image tower, per-pixel projection and text side come
from the aligned CLIP run, so this measures the alignment DenseCLIP starts from; without it (a CIFAR-10
classifier + MiniLM never trained together) it should be at chance.

    python benchmarks/issue21_dense_init.py --clip /tmp/issue21_dense_clip/clip --out docs/results/dense/clip/init.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CONFIGS = ("configs/dense/canvas_denseclip.yaml", "configs/dense/canvas_denseclip_clip.yaml")


@torch.no_grad()
def init_accuracy(config: str, clip: str, n: int, seeds: int) -> dict:
    from fmlab.experiments.dense import build_objective, class_names_of, load_dense_config, open_split
    from fmlab.multimodal.dense_objective import canvas_batch

    accs = []
    for seed in range(seeds):
        sets = [f"model.seed={seed}"] + ([f"model.clip={clip}"] if "_clip" in config else [])
        cfg = load_dense_config(config, sets)
        source, sp = open_split(cfg.data.source, "test", cfg.data.data_root)
        obj = build_objective(cfg, class_names_of(source, cfg.data)).eval()
        batch = canvas_batch(sp.render(np.arange(n)))
        correct = total = 0
        for s in range(0, n, 50):
            images, masks = batch["images"][s:s + 50], batch["masks"][s:s + 50]
            _, scores = obj.model(images)
            pred = F.interpolate(scores, size=masks.shape[-2:], mode="bilinear", align_corners=False).argmax(1) + 1
            obj_px = masks > 0
            correct += int((pred[obj_px] == masks[obj_px]).sum())
            total += int(obj_px.sum())
        accs.append(correct / total)
    k = len(source.class_names)
    return {"config": config, "n_images": n, "seeds": seeds, "object_pixel_acc": accs,
            "mean": float(np.mean(accs)), "chance": 1 / k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True, help="the fmlab clip train run for model.clip")
    ap.add_argument("--out", default="docs/results/dense/clip/init.json")
    ap.add_argument("--n", type=int, default=200, help="test canvases")
    ap.add_argument("--seeds", type=int, default=3, help="model seeds (context / head init)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    res = [init_accuracy(c, a.clip, a.n, a.seeds) for c in CONFIGS]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    for r in res:
        print(f"{r['config']}: object-pixel accuracy at step 0 {r['mean']:.3f} "
              f"({', '.join(f'{x:.3f}' for x in r['object_pixel_acc'])}; chance {r['chance']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
