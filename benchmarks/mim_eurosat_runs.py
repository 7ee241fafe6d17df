"""Issue 16, part 2 (docs/results/mim-eurosat): SatMAE++ vs MAE, CroCo vs MAE, DINO+iBOT+KoLeo vs
DINO vs CLIP, each vs the same ViT at random init. Small CPU budgets, several seeds.

Stage ``pretrain`` runs the shipped configs through the CLI (``fmlab pretrain`` / ``fmlab clip
train``), one thread, ``--set trainer.seed=S``; the random-init encoders are the same configs
exported after one step at ``optim.lr=0`` (the init ``fmlab pretrain`` draws from that seed).
Stage ``eval`` scores the frozen encoders:

* EuroSAT linear probe: L2 logistic regression (``fmlab.adapt.LinearProbe``, C chosen on 500
  held-out train images) on standardised trunk features of all 3,000 train images, accuracy on
  the 1,000 test images; kNN (k=20, cosine, T=0.07) beside it. CLIP: its image trunk's features
  (before the projection), the same dimension as the others.
* EuroSAT 10 %-label fine-tune (MAE / SatMAE++ / random): ``fmlab finetune --method full
  --shots 30`` (30 images per class = 10 % of the train split) with the method's default recipe.
* Warp regression (CroCo / MAE / random, CIFAR-10 JPEG copy): pairs (x, warp(x)) from
  :class:`fmlab.data.pairs.RandomWarp` with the training bounds, frozen features f1, f2 of both,
  an MLP regressor (sklearn, 256 hidden, early stopping) on standardised [f1, f2, f1 * f2] from
  4,000 train-split pairs predicting (tx, ty, angle, log_scale); R^2 on 1,000 test-split pairs.
  Also a CIFAR linear probe (4,000 train / 1,000 test images).

Usage::

    FMLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/mim_eurosat_runs.py \\
        --stage pretrain --groups satmae,croco,dino --seeds 1,2,3 --out runs/mim
    ... --stage eval (same arguments) writes OUT/results.json and OUT/summary.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "configs" / "pretrain"
RANDOM = ["--set", "optim.lr=0", "--set", "trainer.max_steps=1", "--set", "monitor.every_epochs=0",
          "--set", "schedule.warmup_steps=0"]
MAE_CIFAR_MATCH = ["--set", "model.kwargs={embed_dim: 128, depth: 4, num_heads: 4}",
                   "--set", "trainer.max_steps=150", "--set", "trainer.batch_size=64",
                   "--set", "data.limit=10000", "--set", "optim.lr=0.0015",
                   "--set", "schedule.warmup_steps=20", "--set", "trainer.checkpoint_every=50",
                   "--set", "monitor.max_train=2000", "--set", "monitor.max_val=500"]
# name -> (group, command builder); every run is `<command> --out RUN --set trainer.seed=S`
JOBS = {
    "mae16": ("satmae", ["pretrain", "--config", str(CFG / "mae_eurosat.yaml")]),
    "satmae16": ("satmae", ["pretrain", "--config", str(CFG / "satmae_eurosat.yaml")]),
    "random16": ("satmae", ["pretrain", "--config", str(CFG / "mae_eurosat.yaml"), *RANDOM]),
    "croco": ("croco", ["pretrain", "--config", str(CFG / "croco_cifar10.yaml")]),
    "mae32": ("croco", ["pretrain", "--config", str(CFG / "mae_cifar10.yaml"), *MAE_CIFAR_MATCH]),
    "random32": ("croco", ["pretrain", "--config", str(CFG / "croco_cifar10.yaml"), *RANDOM]),
    "dino": ("dino", ["pretrain", "--config", str(CFG / "dino_eurosat.yaml")]),
    "ibot": ("dino", ["pretrain", "--config", str(CFG / "ibot_eurosat.yaml")]),
    "random32e": ("dino", ["pretrain", "--config", str(CFG / "dino_eurosat.yaml"), *RANDOM]),
    "clip": ("dino", ["clip", "train", "--config", str(ROOT / "configs/clip/clip_eurosat.yaml")]),
}


def run_cli(args: list[str], log: Path) -> float:
    """Run ``fmlab ARGS`` in a child process; returns its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "fmlab", *args], stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"fmlab {' '.join(args)} failed (rc {rc}); see {log}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pretrain(out: Path, names: list[str], seeds: list[int]) -> None:
    record = out / "pretrain.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    for name in names:
        for s in seeds:
            key = f"{name}/seed{s}"
            run = out / name / f"seed{s}"
            if key in done:
                continue
            cmd = [*JOBS[name][1], "--out", str(run), "--set", f"trainer.seed={s}"]
            if cmd[0] == "pretrain":
                cmd += ["--set", "trainer.progress=false"]
            run.parent.mkdir(parents=True, exist_ok=True)
            cpu = run_cli(cmd, out / name / f"seed{s}.log")
            done[key] = {"command": "fmlab " + " ".join(_rel(c) for c in cmd), "cpu_s": round(cpu, 1)}
            record.write_text(json.dumps(done, indent=1))
            print(f"{key}: {cpu:.0f} CPU-s", flush=True)


def _rel(arg: str) -> str:
    arg = arg.replace(str(ROOT) + "/", "")
    return f"'{arg}'" if " " in arg else arg


class Runner:
    """Runs ``fmlab`` commands once each and records them (command, CPU seconds) in
    ``OUT/runs.json``, atomically, so a killed driver resumes without redoing finished runs.

    ``runner(key, args)`` runs into ``OUT/key``: the string ``{OUT}`` in ``args`` is replaced by
    that path, or, when no argument holds it, ``--out OUT/key`` is appended (commands such as
    ``fmlab adapt spectrum`` have no ``--out``). The log is ``OUT/key.log``.
    """

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "runs.json"
        self.done = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, key: str, args: list[str]) -> Path:
        dest = self.out / key
        if key not in self.done:
            from fmlab.utils.io import write_json

            full = ([a.replace("{OUT}", str(dest)) for a in args] if any("{OUT}" in a for a in args)
                    else [*args, "--out", str(dest)])
            dest.parent.mkdir(parents=True, exist_ok=True)
            cpu = run_cli(full, dest.parent / f"{dest.name}.log")
            self.done[key] = {"command": "fmlab " + " ".join(_rel(c) for c in full), "cpu_s": round(cpu, 1)}
            write_json(self.path, self.done)
            print(f"{key}: {cpu:.0f} CPU-s", flush=True)
        return dest


# --------------------------------------------------------------------------- evaluation


def load_encoder(run: Path):
    """The trained image trunk of a pretrain run (encoder.safetensors) or a clip train run."""
    from fmlab.models import create_backbone

    if (run / "clip_model.json").is_file():
        from fmlab.multimodal.io import load_image_text_model

        return load_image_text_model(run).image.eval()
    meta = json.loads((run / "encoder.json").read_text())
    return create_backbone(meta["architecture"], weights=run / "encoder.safetensors").eval()


@torch.no_grad()
def encode(bb, images, batch: int = 250) -> torch.Tensor:
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
    return torch.cat([bb.encode(x[i:i + batch]).float() for i in range(0, len(x), batch)])


def probe(xtr, ytr, xte, yte, n_val: int = 500) -> dict:
    from fmlab.adapt import KNN, LinearProbe

    perm = np.random.default_rng(0).permutation(len(xtr))
    xtr, ytr = xtr[perm], ytr[perm]
    knn = float((KNN(k=20, temperature=0.07).fit(xtr, ytr).predict(xte) == yte).mean())
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    lp = LinearProbe(C=None, max_iter=200).fit(ztr[n_val:], ytr[n_val:], ztr[:n_val], ytr[:n_val])
    return {"linear": float((lp.predict(zte) == yte).mean()), "knn": knn}


def warp_pairs(images: np.ndarray, bb, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """[f1, f2, f1 * f2] features of (x, warp(x)) pairs and the warp targets (tx, ty, a, log s)."""
    from fmlab.data.pairs import RandomWarp

    warp = RandomWarp(0.25, 0.26, 0.2, 0.0)
    x = bb.prepare(torch.from_numpy(images))
    v2, params = warp(x, torch.Generator().manual_seed(seed))
    f1, f2 = encode(bb, x), encode(bb, v2)
    return torch.cat([f1, f2, f1 * f2], 1), params[:, :4].numpy()


def warp_r2(bb, tr_images, te_images) -> dict:
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    ztr, ytr = warp_pairs(tr_images, bb, 0)
    zte, yte = warp_pairs(te_images, bb, 1)
    sc = StandardScaler().fit(ztr.numpy())
    mlp = MLPRegressor(hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, max_iter=300, random_state=0)
    ys = yte.std(0)
    mlp.fit(sc.transform(ztr.numpy()), ytr / ys)
    pred = mlp.predict(sc.transform(zte.numpy())) * ys
    per = [float(r2_score(yte[:, j], pred[:, j])) for j in range(4)]
    return {"warp_r2": float(np.mean(per)), "warp_r2_tx_ty_angle_logs": per}


def finetune(run: Path, seed: int, out: Path) -> tuple[float, str]:
    dest = out / "finetune" / f"{run.parent.name}_seed{seed}"
    cmd = ["finetune", "--backbone", "vit_tiny_cifar", "--weights", str(run / "encoder.safetensors"),
           "--data", "eurosat", "--method", "full", "--shots", "30", "--seeds", str(seed),
           "--out", str(dest), "--no-db"]
    if not (dest / "results.json").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        run_cli(cmd, dest.with_suffix(".log"))
    res = json.loads((dest / "results.json").read_text())
    return _find_acc(res), "fmlab " + " ".join(_rel(c) for c in cmd)


def _find_acc(res) -> float:
    """The test accuracy in a finetune results.json (first 'accuracy'/'test_acc' number found)."""
    if isinstance(res, dict):
        for k in ("test_accuracy", "accuracy", "test_acc", "acc"):
            if isinstance(res.get(k), (int, float)):
                return float(res[k])
        for v in res.values():
            got = _find_acc(v)
            if got == got:
                return got
    if isinstance(res, list):
        for v in res:
            got = _find_acc(v)
            if got == got:
                return got
    return float("nan")


def evaluate(out: Path, names: list[str], seeds: list[int], do_finetune: bool) -> dict:
    from fmlab.data import open_source

    rec_path = out / "eval.json"
    results = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    euro = open_source("eurosat")
    etr, ete = euro.split("train"), euro.split("test")
    e_x = (etr.decode(np.arange(len(etr))), ete.decode(np.arange(len(ete))))
    cif = None
    for name in names:
        group = JOBS[name][0]
        for s in seeds:
            key = f"{name}/seed{s}"
            run = out / name / f"seed{s}"
            if key in results or not (run / "encoder.safetensors").is_file():
                continue
            bb = load_encoder(run)
            r: dict = {}
            if group in ("satmae", "dino"):
                r.update(probe(encode(bb, e_x[0]), etr.labels, encode(bb, e_x[1]), ete.labels))
            if group == "satmae" and do_finetune:
                r["finetune10"], r["finetune_command"] = finetune(run, s, out)
            if group == "croco":
                if cif is None:
                    c = open_source("cifar10")
                    ctr, cte = c.split("train"), c.split("test")
                    idx = np.random.default_rng(0).permutation(len(ctr))[-4000:]  # unseen order tail
                    cif = (ctr.decode(idx), ctr.labels[idx], cte.decode(np.arange(1000)),
                           cte.labels[:1000])
                r.update(warp_r2(bb, cif[0], cif[2]))
                r.update({f"cifar_{k}": v for k, v in
                          probe(encode(bb, cif[0]), cif[1], encode(bb, cif[2]), cif[3]).items()})
            results[key] = r
            rec_path.write_text(json.dumps(results, indent=1))
            print(key, {k: v for k, v in r.items() if not k.endswith("command")}, flush=True)
    return results


def summarise(out: Path) -> None:
    runs = json.loads((out / "pretrain.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    metrics = ("linear", "knn", "finetune10", "warp_r2", "cifar_linear", "cifar_knn")
    rows, table = {}, {}
    for key, r in ev.items():
        name = key.split("/")[0]
        for m in metrics:
            if m in r:
                rows.setdefault(name, {}).setdefault(m, []).append(r[m])
        rows.setdefault(name, {}).setdefault("cpu_s", []).append(runs.get(key, {}).get("cpu_s"))
    lines = ["| run | seeds | pre-train CPU-s | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for name, ms in rows.items():
        cells = []
        for m in metrics:
            v = ms.get(m, [])
            cells.append(f"{100 * statistics.mean(v):.1f} ± {100 * statistics.stdev(v):.1f}"
                         if len(v) > 1 else (f"{100 * v[0]:.1f}" if v else ""))
            table.setdefault(name, {})[m] = v
        cpu = [c for c in ms["cpu_s"] if c is not None]
        lines.append(f"| {name} | {len(ms.get('linear', ms.get('warp_r2', [])))} | "
                     f"{statistics.mean(cpu):.0f} | " + " | ".join(cells) + " |" if cpu else
                     f"| {name} | | | " + " | ".join(cells) + " |")
    cmds = sorted({v["command"].replace(f"trainer.seed={k.split('/seed')[1]}", "trainer.seed=S")
                   .replace(f"/seed{k.split('/seed')[1]}", "/seedS") for k, v in runs.items()})
    text = ("Metrics in % (R^2 x 100 for warp_r2), mean ± std over seeds.\n\n" + "\n".join(lines)
            + "\n\nCommands (S = seed):\n\n" + "\n".join(f"    {c}" for c in cmds) + "\n")
    (out / "summary.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"table": table, "runs": runs, "eval": ev}, indent=1))
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("pretrain", "eval", "summary"), required=True)
    ap.add_argument("--groups", default="satmae,croco,dino")
    ap.add_argument("--names", default="", help="comma list of job names (default: all in groups)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default="runs/mim")
    ap.add_argument("--no-finetune", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    groups = a.groups.split(",")
    names = a.names.split(",") if a.names else [n for n, (g, _) in JOBS.items() if g in groups]
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.stage == "pretrain":
        pretrain(out, names, seeds)
    elif a.stage == "eval":
        evaluate(out, names, seeds, not a.no_finetune)
        summarise(out)
    else:
        summarise(out)


if __name__ == "__main__":
    main()
