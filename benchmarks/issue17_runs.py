"""Issue 17's comparisons (docs/results/composite): multi-task vs its single objectives, M3I vs
the sequential two-stage recipe, self-distilled further pre-training, UNIP vs no distillation.

Every run is a real CLI command (``fmlab pretrain`` / ``fmlab finetune``) in a child process with
one thread, recorded with its CPU seconds; the driver skips runs already recorded, so it resumes.
Frozen-feature scores use one rule everywhere (:func:`probe`): kNN (k=20, cosine, T=0.07) and an
L2 logistic-regression probe (C chosen on 500 held-out train images) on standardised features.

* ``multitask``: supervised + SimCLR + MAE on one 4-block, 128-d ViT vs each single objective's
  shipped config on the same ViT, same steps x batch; CIFAR-10 (5,000 train subset / 2,000 test)
  and EuroSAT transfer (3,000 / 1,000 tiles, upsampled to 32 px by the encoder).
* ``m3i``: M3I (view + label + text targets), M3I (view + label) and M3I + COCO-mini caption
  pairs vs the sequential recipe (view target for half the steps, then label target from those
  weights), equal total steps.
* ``further``: one MAE theta_init on CIFAR-10 (seed 0), then per seed: plain further MAE on EuroSAT
  (teacher), self-distilled further MAE from theta_init, and ``fmlab finetune --method full``
  of none / plain / self-distilled with 10 % (30 per class) and 100 % of the EuroSAT train labels.
* ``unip``: an MAE teacher ViT (seed 0), then per seed the UNIP student (grey views) vs the same
  student at random init; scored on grey-scale CIFAR-10 and EuroSAT.

    FMLAB_DATA=/work/shared/data python benchmarks/issue17_runs.py --study multitask --out runs/i17
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from fmlab.utils.io import write_json

_spec = importlib.util.spec_from_file_location("mer", Path(__file__).with_name("mim_eurosat_runs.py"))
mer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mer)

CFG = mer.CFG
QUIET = ["trainer.progress=false", "trainer.tensorboard=false"]
SMALL_VIT = ["model.arch=vit_tiny_cifar", "model.kwargs={embed_dim: 128, depth: 4, num_heads: 4}"]
RANDOM = ["optim.lr=0", "trainer.max_steps=1", "monitor.every_epochs=0", "schedule.warmup_steps=0"]


def sets(*groups: list[str]) -> list[str]:
    out: list[str] = []
    for g in groups:
        for s in g:
            out += ["--set", s]
    return out


Runner = mer.Runner


def pretrain(config: str, *groups: list[str]) -> list[str]:
    return ["pretrain", "--config", str(CFG / config), *sets(QUIET, *groups)]


# --------------------------------------------------------------------------- evaluation data


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the same images in grey (ITU-R 601 luma), repeated to 3 channels."""
    y = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def eval_sets(names: tuple[str, ...]) -> dict:
    """Decoded (train, train labels, test, test labels) of CIFAR-10 (seeded subsets) and EuroSAT."""
    from fmlab.data import open_source

    out = {}
    if "cifar10" in names:
        c = open_source("cifar10")
        tr, te = c.split("train"), c.split("test")
        i = np.random.default_rng(0).permutation(len(tr))[:5000]
        j = np.sort(np.random.default_rng(1).permutation(len(te))[:2000])
        out["cifar10"] = (tr.get_batch(i), tr.labels[i], te.get_batch(j), te.labels[j])
    if "eurosat" in names:
        e = open_source("eurosat")
        tr, te = e.split("train"), e.split("test")
        out["eurosat"] = (tr.decode(np.arange(len(tr))), tr.labels, te.decode(np.arange(len(te))),
                          te.labels)
    return out


def score(run: Path, data: dict, grey_input: bool = False) -> dict:
    bb = mer.load_encoder(run)
    res = {}
    for name, (xtr, ytr, xte, yte) in data.items():
        if grey_input:
            xtr, xte = grey(xtr), grey(xte)
        r = mer.probe(mer.encode(bb, xtr), ytr, mer.encode(bb, xte), yte)
        res.update({f"{name}_{k}": v for k, v in r.items()})
    return res


class Scores:
    """``scores.json`` under ``out``: one dict of metrics per run key, computed once."""

    def __init__(self, out: Path):
        self.path = out / "scores.json"
        self.rows = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def add(self, key: str, fn) -> dict:
        if key not in self.rows:
            self.rows[key] = fn()
            write_json(self.path, self.rows)
            print(key, {k: round(v, 4) for k, v in self.rows[key].items()
                        if isinstance(v, float)}, flush=True)
        return self.rows[key]


# --------------------------------------------------------------------------- studies


def study_multitask(args, run: Runner, sc: Scores) -> None:
    data = eval_sets(("cifar10", "eurosat"))
    common = [*SMALL_VIT, f"trainer.batch_size={args.batch}", f"trainer.max_steps={args.steps}",
              "data.limit=20000", "monitor.every_epochs=0", f"trainer.checkpoint_every={args.steps}"]
    for s in args.seeds:
        arms = {a: pretrain(f"{a}_cifar10.yaml", common, [f"trainer.seed={s}"])
                for a in ("multitask", "supervised", "simclr", "mae")}
        arms["random"] = pretrain("supervised_cifar10.yaml", common, RANDOM, [f"trainer.seed={s}"])
        for arm, cmd in arms.items():
            r = run(f"multitask/{arm}/seed{s}", cmd)
            sc.add(f"multitask/{arm}/seed{s}", lambda r=r: score(r, data))


def study_m3i(args, run: Runner, sc: Scores) -> None:
    data = eval_sets(("cifar10", "eurosat"))
    n, half = args.steps, args.steps // 2
    common = ["data.limit=20000", "monitor.every_epochs=0", f"trainer.checkpoint_every={n}"]
    for s in args.seeds:
        seed = [f"trainer.seed={s}"]
        arms = {
            "m3i": pretrain("m3i_cifar10.yaml", common, seed, [f"trainer.max_steps={n}"]),
            "m3i_view_label": pretrain("m3i_cifar10.yaml", common, seed, [
                f"trainer.max_steps={n}", "objective.text_weight=0"]),
            # + the image-text term on COCO-mini's own captions (64 of its images per step)
            "m3i_pairs": pretrain("m3i_cifar10.yaml", common, seed, [
                f"trainer.max_steps={n}", "objective.pairs_weight=1.0"]),
            "seq_stage1_view": pretrain("m3i_cifar10.yaml", common, seed, [
                f"trainer.max_steps={half}", "objective.label_weight=0", "objective.text_weight=0"]),
        }
        for arm, cmd in arms.items():
            run(f"m3i/{arm}/seed{s}", cmd)
        s1 = run.out / f"m3i/seq_stage1_view/seed{s}"
        run(f"m3i/seq/seed{s}", pretrain("m3i_cifar10.yaml", common, seed, [
            f"trainer.max_steps={n - half}", "objective.view_weight=0", "objective.text_weight=0",
            f"model.weights={s1}/encoder.safetensors"]))
        run(f"m3i/random/seed{s}", pretrain("m3i_cifar10.yaml", common, seed, RANDOM))
        for arm in ("m3i", "m3i_view_label", "m3i_pairs", "seq", "random"):
            r = run.out / f"m3i/{arm}/seed{s}"
            sc.add(f"m3i/{arm}/seed{s}", lambda r=r: score(r, data))


def finetune_cmd(weights: Path, shots: str, seed: int) -> list[str]:
    return ["finetune", "--backbone", "vit_tiny_cifar", "--weights", str(weights), "--data",
            "eurosat", "--method", "full", "--shots", shots, "--seeds", str(seed), "--no-db"]


def study_further(args, run: Runner, sc: Scores) -> None:
    data = eval_sets(("eurosat",))
    init = run("further/theta_init", pretrain("mae_eurosat.yaml", [
        "data.source=cifar10", "data.limit=20000", f"trainer.max_steps={args.init_steps}",
        "trainer.seed=0", "monitor.every_epochs=0", "trainer.checkpoint_every=200"]))
    w0 = f"{init}/encoder.safetensors"
    for s in args.seeds:
        seed = [f"trainer.seed={s}", "monitor.every_epochs=0"]
        plain = run(f"further/plain/seed{s}", pretrain(
            "further_mae_eurosat.yaml", seed, [f"model.weights={w0}"]))
        sd = run(f"further/selfdistill/seed{s}", pretrain(
            "further_selfdistill_eurosat.yaml", seed, [f"model.weights={w0}",
                                                       f"objective.teacher_weights={plain}/encoder.safetensors"]))
        for arm, r in (("none", init), ("plain", plain), ("selfdistill", sd)):
            key = f"further/{arm}/seed{s}"
            sc.add(key + "/frozen", lambda r=r: score(r, data))
            for shots in ("30", "all"):
                ft = run(f"further/finetune/{arm}_{shots}_seed{s}",
                         finetune_cmd(r / "encoder.safetensors", shots, s))
                sc.add(f"{key}/finetune_{shots}", lambda ft=ft: {
                    "accuracy": mer._find_acc(json.loads((ft / "results.json").read_text()))})


def study_unip(args, run: Runner, sc: Scores) -> None:
    data = eval_sets(("cifar10", "eurosat"))
    teacher = run("unip/teacher_mae", pretrain("mae_cifar10.yaml", SMALL_VIT, [
        "data.limit=20000", f"trainer.max_steps={args.init_steps}", "trainer.seed=0",
        "monitor.every_epochs=0", "trainer.checkpoint_every=200"]))
    sc.add("unip/teacher_mae/grey", lambda: score(teacher, data, grey_input=True))
    common = ["data.limit=20000", "monitor.every_epochs=0", f"trainer.checkpoint_every={args.steps}",
              f"objective.teacher_weights={teacher}/encoder.safetensors"]
    for s in args.seeds:
        seed = [f"trainer.seed={s}"]
        arms = {"unip": pretrain("unip_cifar10.yaml", common, seed, [f"trainer.max_steps={args.steps}"]),
                "random": pretrain("unip_cifar10.yaml", common, seed, RANDOM)}
        for arm, cmd in arms.items():
            r = run(f"unip/{arm}/seed{s}", cmd)
            sc.add(f"unip/{arm}/seed{s}/grey", lambda r=r: score(r, data, grey_input=True))


def report(out: Path) -> str:
    """Markdown tables (mean ± std over seeds, in %) of every study recorded under ``out``."""
    import re
    import statistics

    scores = json.loads((out / "scores.json").read_text()) if (out / "scores.json").is_file() else {}
    runs = json.loads((out / "runs.json").read_text()) if (out / "runs.json").is_file() else {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for key, vals in scores.items():
        m = re.match(r"(\w+)/(\w+)/seed(\d+)(/\w+)?$", key)
        if m:
            groups.setdefault((m[1], m[2] + (m[4] or "")), []).append(vals)
    lines = []
    for study in dict.fromkeys(k[0] for k in groups):
        arms = [a for s, a in groups if s == study]
        metrics = sorted({k for a in arms for v in groups[(study, a)] for k in v})
        lines += [f"### {study}", "", "| arm | seeds | " + " | ".join(metrics) + " | CPU-s |",
                  "|---|---:|" + "---:|" * (len(metrics) + 1)]
        for arm in arms:
            vals = groups[(study, arm)]
            cells = []
            for k in metrics:
                xs = [100 * v[k] for v in vals if k in v]
                cells.append(f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}"
                             if len(xs) > 1 else (f"{xs[0]:.1f}" if xs else "–"))
            base = arm.split("/")[0]
            cpu = [r["cpu_s"] for k, r in runs.items() if re.match(rf"{study}/{base}/seed\d+$", k)]
            lines.append(f"| {arm} | {len(vals)} | " + " | ".join(cells) +
                         f" | {statistics.mean(cpu):.0f} |" if cpu else
                         f"| {arm} | {len(vals)} | " + " | ".join(cells) + " | – |")
        lines.append("")
    return "\n".join(lines)


STUDIES = {"multitask": study_multitask, "m3i": study_m3i, "further": study_further,
           "unip": study_unip}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", choices=sorted(STUDIES), default=None)
    ap.add_argument("--report", action="store_true", help="print the tables of OUT and exit")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=100, help="optimiser steps of each compared arm")
    ap.add_argument("--batch", type=int, default=128, help="multitask: batch size of every arm")
    ap.add_argument("--init-steps", type=int, default=600,
                    help="further: theta_init's MAE steps; unip: the teacher's MAE steps")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.report or args.study is None:
        print(report(out))
        return
    STUDIES[args.study](args, Runner(out), Scores(out))


if __name__ == "__main__":
    main()
