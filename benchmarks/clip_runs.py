"""LiT / CoOp experiments of the image-text issue (print numbers and the machine).

1. LiT on CIFAR-10 captions: ResNet-20 (CIFAR-10 weights) image tower + locked MiniLM, trained on
   templated captions of 5 base classes; zero-shot acc@1 on the 5 unseen and the 5 base classes
   (test split) vs chance (20%).
2. COCO-mini retrieval: same towers trained on train2017 captions; recall@1/5/10 on val2017 vs
   chance.
3. CoOp vs the hand-written prompt "a photo of a {}." at 1,2,4,8,16 shots on all 10 CIFAR-10
   classes, on top of the LiT model of (1) (few-shot splits drawn from the train split).
Each for the given seeds. ``--budget smoke`` runs everything tiny (~1-2 min); ``full`` is what
the lead schedules.

    FMLAB_DATA=/work/shared/data python benchmarks/clip_runs.py --budget smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BUDGETS = {  # steps (LiT CIFAR), steps (COCO), test images per class, CoOp epochs, shots
    "smoke": dict(lit_steps=5, coco_steps=4, test_per_class=20, coop_epochs=2, shots=[1, 2],
                  batch=32, seeds=[1]),
    "full": dict(lit_steps=600, coco_steps=300, test_per_class=1000, coop_epochs=50,
                 shots=[1, 2, 4, 8, 16], batch=128, seeds=[1, 2, 3]),
}


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads, load {load[0]:.1f}")


def test_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in np.unique(labels)]))


class Subset:
    """An image split restricted to some rows (evaluation budget)."""

    def __init__(self, split, rows):
        self.split, self.rows = split, np.asarray(rows)
        self.labels, self.name, self.origin = split.labels[self.rows], split.name, split.origin

    def __len__(self):
        return len(self.rows)

    def get_batch(self, idx):
        return self.split.get_batch(self.rows[np.asarray(idx)])


def lit_cifar(b: dict, seed: int, out: Path) -> tuple[dict, object]:
    from fmlab.data import open_source
    from fmlab.experiments.clip import load_clip_config, run_clip_train
    from fmlab.multimodal.evaluate import zeroshot_evaluate

    cfg = load_clip_config("configs/clip/lit_cifar5_minilm.yaml", [
        f"trainer.max_steps={b['lit_steps']}", f"trainer.batch_size={b['batch']}",
        f"trainer.seed={seed}", "trainer.progress=false", "trainer.tensorboard=false",
        f"schedule.warmup_steps={min(20, b['lit_steps'] // 4)}"])
    torch.manual_seed(seed)
    from fmlab.multimodal.model import ImageTextModel

    model = ImageTextModel.from_spec(cfg.model)
    t0 = time.perf_counter()
    res = run_clip_train(cfg, out / f"lit_s{seed}", model=model)
    train_s = time.perf_counter() - t0
    src = open_source("cifar10")
    test = src.split("test")
    sub = Subset(test, test_subset(test.labels, b["test_per_class"]))
    names = src.class_names
    base = [names.index(c) for c in cfg.data.classes]
    unseen = [i for i in range(len(names)) if i not in base]
    t = ["a photo of a {}."]
    r = {"train_s": round(train_s, 1), "final_loss": res.last_loss,
         "unseen_acc1": zeroshot_evaluate(model, sub, names, t, unseen)["acc1"],
         "base_acc1": zeroshot_evaluate(model, sub, names, t, base)["acc1"],
         "all10_acc1": zeroshot_evaluate(model, sub, names, t)["acc1"], "chance5": 0.2}
    return r, model


def coco(b: dict, seed: int, out: Path) -> dict:
    from fmlab.data import open_source
    from fmlab.experiments.clip import load_clip_config, run_clip_train
    from fmlab.multimodal.evaluate import retrieval_evaluate
    from fmlab.multimodal.model import ImageTextModel

    cfg = load_clip_config("configs/clip/coco_mini_retrieval.yaml", [
        f"trainer.max_steps={b['coco_steps']}", f"trainer.seed={seed}", "trainer.progress=false",
        "trainer.tensorboard=false", f"schedule.warmup_steps={min(10, b['coco_steps'] // 4)}"])
    torch.manual_seed(seed)
    model = ImageTextModel.from_spec(cfg.model)
    before = retrieval_evaluate(model, open_source("coco_mini").split("val"))
    res = run_clip_train(cfg, out / f"coco_s{seed}", model=model)
    after = retrieval_evaluate(model, open_source("coco_mini").split("val"))
    keys = ["image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1", "text_to_image_R@5",
            "text_to_image_R@10"]
    return {"final_loss": res.last_loss, **{f"untrained_{k}": round(before[k], 3) for k in keys},
            **{k: round(after[k], 3) for k in keys},
            **{f"chance_{k}": round(after[f"chance_{k}"], 3) for k in keys}}


def coop(b: dict, seed: int, model) -> list[dict]:
    from fmlab.adapt.coop import CoOp, class_prompt_weights
    from fmlab.adapt.splits import make_split
    from fmlab.data import open_source
    from fmlab.multimodal.evaluate import embed_images

    src = open_source("cifar10")
    train, test = src.split("train"), src.split("test")
    sub = Subset(test, test_subset(test.labels, b["test_per_class"]))
    model.eval()
    with torch.no_grad():
        Xte = embed_images(model.encode_image, _Iter(sub))
        W = torch.as_tensor(class_prompt_weights(model, src.class_names))
    hand = float(((Xte @ W.T).argmax(1).numpy() == sub.labels).mean())
    rows = []
    for k in b["shots"]:
        sp = make_split(train.labels, k, seed)
        with torch.no_grad():
            Xtr = torch.cat([model.encode_image(torch.from_numpy(train.get_batch(sp.train[i:i + 64])))
                             for i in range(0, len(sp.train), 64)])
        t0 = time.perf_counter()
        est = CoOp(model, src.class_names, epochs=b["coop_epochs"], seed=seed).fit(
            Xtr.numpy(), train.labels[sp.train])
        acc = float((est.predict(Xte.numpy()) == sub.labels).mean())
        rows.append({"shots": k, "seed": seed, "coop_acc1": round(acc, 4),
                     "hand_prompt_acc1": round(hand, 4), "fit_s": round(time.perf_counter() - t0, 1)})
    return rows


class _Iter:
    def __init__(self, sub):
        self.sub = sub

    def iter_batches(self, bs):
        for i in range(0, len(self.sub), bs):
            idx = np.arange(i, min(i + bs, len(self.sub)))
            yield idx, self.sub.get_batch(idx)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", choices=list(BUDGETS), default="smoke")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--only", default="lit,coco,coop")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not os.environ.get("FMLAB_DATA"):
        raise SystemExit("set FMLAB_DATA (CIFAR-10, COCO-mini and ResNet-20 weights)")
    b = dict(BUDGETS[args.budget])
    if args.seeds:
        b["seeds"] = [int(s) for s in args.seeds.split(",")]
    only = set(args.only.split(","))
    print("machine:", machine())
    print("budget:", args.budget, json.dumps(b))
    out = Path(args.out or tempfile.mkdtemp(prefix="clip_runs_"))
    t_all = time.perf_counter()
    for seed in b["seeds"]:
        model = None
        if "lit" in only or "coop" in only:
            r, model = lit_cifar(b, seed, out)
            print(f"[lit cifar5->unseen5] seed {seed}: {json.dumps(r)}")
        if "coco" in only:
            print(f"[coco-mini retrieval] seed {seed}: {json.dumps(coco(b, seed, out))}")
        if "coop" in only:
            for row in coop(b, seed, model):
                print(f"[coop vs hand prompt] {json.dumps(row)}")
    print(f"total {time.perf_counter() - t_all:.0f}s; runs in {out}")


if __name__ == "__main__":
    main()
