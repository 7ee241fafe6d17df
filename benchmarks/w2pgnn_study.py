"""W2PGNN study: feasibility score vs the measured fine-tuning gain of a GraphCL-pre-trained GIN.

For every (pre-training set, downstream dataset) pair among the staged TU datasets (pre-train on
one or two of MUTAG / PROTEINS / ENZYMES, fine-tune on a third) and every seed:

* feasibility = ``fmlab graph feasibility`` (k-means seed = seed);
* gain = test accuracy of ``fmlab graph finetune`` from the GraphCL encoder pre-trained with that
  seed minus the same run from a random init (same split seed, trainer seed and head init).

Resumable: each run writes OUT/<run>/results.json (or encoder.safetensors) and is skipped when it
exists. Summary: OUT/summary.json (per pair: feasibility and gain mean/std over seeds; Spearman
rank correlation of the seed-mean feasibility and gain over the pairs) and OUT/scatter.png.

    FMLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/w2pgnn_study.py \
        --out runs/w2pgnn --seeds 0 1 2 [--pretrain-steps 300 --finetune-steps 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fmlab.experiments.graph import run_feasibility, run_graph_finetune, run_graph_pretrain
from fmlab.experiments.graph_config import load_graph_config
from fmlab.utils.io import atomic_path, write_json

DATASETS = ("MUTAG", "PROTEINS", "ENZYMES")
PRETRAIN_SETS = ("MUTAG", "PROTEINS", "ENZYMES", "PROTEINS,ENZYMES", "MUTAG,ENZYMES", "MUTAG,PROTEINS")


def pairs() -> list[tuple[str, str]]:
    return [(p, d) for p in PRETRAIN_SETS for d in DATASETS if d not in p.split(",")]


def _pretrain(out: Path, pre: str, seed: int, steps: int) -> Path:
    run = out / f"pre_{pre.replace(',', '+')}_s{seed}"
    if not (run / "encoder.safetensors").is_file():
        cfg = load_graph_config("configs/graph/graphcl.yaml", "pretrain",
                                [f"data.pretrain={pre}", f"trainer.seed={seed}", f"trainer.max_steps={steps}"])
        run_graph_pretrain(cfg, run, resume=(run / "checkpoints").is_dir())
    return run


def _finetune(out: Path, down: str, init: str, tag: str, seed: int, steps: int) -> dict:
    run = out / f"ft_{down}_{tag}_s{seed}"
    if (run / "results.json").is_file():
        return json.loads((run / "results.json").read_text())
    cfg = load_graph_config("configs/graph/finetune.yaml", "finetune",
                            [f"data.downstream={down}", f"data.split_seed={seed}", f"trainer.seed={seed}",
                             f"init_seed={seed}", f"init={init}", f"trainer.max_steps={steps}"])
    return run_graph_finetune(cfg, run, resume=(run / "checkpoints").is_dir())


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    with np.errstate(invalid="ignore"):
        return float(spearmanr(a, b).statistic)


def _bootstrap(records: list[dict], draws: int = 2000) -> dict:
    """Spearman of the seed-mean feasibility and gain when the seeds are resampled with replacement
    (seeded): how much the pair-level correlation owes to which seeds were run."""
    seeds = sorted({r["seed"] for r in records})
    table = {(r["pretrain"], r["downstream"], r["seed"]): r for r in records}
    f = np.array([[table[(p, d, s)]["feasibility"] for s in seeds] for p, d in pairs()])
    g = np.array([[table[(p, d, s)]["gain"] for s in seeds] for p, d in pairs()])
    rng = np.random.default_rng(0)
    rhos = []
    for _ in range(draws):
        idx = rng.integers(0, len(seeds), len(seeds))
        rhos.append(_spearman(f[:, idx].mean(1).tolist(), g[:, idx].mean(1).tolist()))
    rhos = np.array([r for r in rhos if np.isfinite(r)])
    lo, mid, hi = np.percentile(rhos, [2.5, 50, 97.5])
    return {"median": mid, "ci95": [lo, hi], "fraction_positive": float((rhos > 0).mean()), "draws": draws}


def summarise(records: list[dict], out: Path) -> dict:
    rows = []
    for pre, down in pairs():
        rs = [r for r in records if r["pretrain"] == pre and r["downstream"] == down]
        f, g = np.array([r["feasibility"] for r in rs]), np.array([r["gain"] for r in rs])
        rows.append({"pretrain": pre, "downstream": down, "seeds": len(rs),
                     "feasibility_mean": f.mean(), "feasibility_std": f.std(ddof=1) if len(f) > 1 else 0.0,
                     "gain_mean": g.mean(), "gain_std": g.std(ddof=1) if len(g) > 1 else 0.0,
                     "acc_pretrained": float(np.mean([r["acc_pretrained"] for r in rs])),
                     "acc_scratch": float(np.mean([r["acc_scratch"] for r in rs]))})
    rho = _spearman([r["feasibility_mean"] for r in rows], [r["gain_mean"] for r in rows])
    per_seed = {}
    for s in sorted({r["seed"] for r in records}):
        rs = sorted((r for r in records if r["seed"] == s), key=lambda r: (r["pretrain"], r["downstream"]))
        per_seed[s] = _spearman([r["feasibility"] for r in rs], [r["gain"] for r in rs])
    # the score mostly moves with the downstream dataset; within one downstream dataset it ranks
    # the candidate pre-training sets — the use the paper proposes (selecting pre-training data)
    within = {d: _spearman([r["feasibility_mean"] for r in rows if r["downstream"] == d],
                           [r["gain_mean"] for r in rows if r["downstream"] == d]) for d in DATASETS}
    summary = {"pairs": rows, "spearman_seed_means": rho, "spearman_per_seed": per_seed,
               "spearman_within_downstream": within,
               "spearman_all_runs": _spearman([r["feasibility"] for r in records], [r["gain"] for r in records]),
               "spearman_seed_bootstrap": _bootstrap(records)}
    write_json(out / "summary.json", summary)
    _plot(rows, rho, out / "scatter.png")
    return summary


def _plot(rows: list[dict], rho: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    colors = {"MUTAG": "tab:blue", "PROTEINS": "tab:orange", "ENZYMES": "tab:green"}
    for i, r in enumerate(rows):
        ax.errorbar(r["feasibility_mean"], 100 * r["gain_mean"], xerr=r["feasibility_std"],
                    yerr=100 * r["gain_std"], fmt="o", color=colors[r["downstream"]], capsize=3)
        ax.annotate(f"{r['pretrain'].replace(',', '+')}→{r['downstream']}",
                    (r["feasibility_mean"], 100 * r["gain_mean"]), fontsize=7,
                    xytext=(6, 6 if i % 2 else -11), textcoords="offset points")
    for d, c in colors.items():
        ax.plot([], [], "o", color=c, label=f"downstream {d}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("W2PGNN feasibility (mean ± std over seeds)")
    ax.set_ylabel("gain: test accuracy points\n(pre-trained − scratch, mean ± std)")
    ax.set_title(f"Feasibility vs measured gain: Spearman ρ = {rho:.2f} over {len(rows)} pairs")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def sensitivity(out: Path, seeds: list[int]) -> list[dict]:
    """Spearman of feasibility vs the measured seed-mean gain for other graphon resolutions K and
    basis counts k (k-means seed 0; the gains are those in OUT/records.json): is the sign of the
    correlation an artefact of one setting?"""
    recs = [r for r in json.loads((out / "records.json").read_text()) if r["seed"] in seeds]
    gains = [float(np.mean([r["gain"] for r in recs if (r["pretrain"], r["downstream"]) == pd])) for pd in pairs()]
    rows = []
    for res in (8, 16, 32):
        for k in (1, 2, 4, 8):
            feas = [run_feasibility(p, d, resolution=res, bases=k, seed=0)["score"] for p, d in pairs()]
            rows.append({"resolution": res, "bases": k, "spearman": _spearman(feas, gains),
                         "feasibility": [round(f, 4) for f in feas]})
            print(json.dumps(rows[-1]), flush=True)
    write_json(out / "sensitivity.json", rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/w2pgnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--summary-only", action="store_true", help="re-summarise OUT/records.json")
    ap.add_argument("--sensitivity", action="store_true",
                    help="feasibility at K in 8,16,32 and k in 1,2,4,8 against the recorded gains")
    args = ap.parse_args()
    if args.sensitivity:
        sensitivity(Path(args.out), args.seeds)
        return
    if args.summary_only:
        recs = json.loads((Path(args.out) / "records.json").read_text())
        print(json.dumps(summarise([r for r in recs if r["seed"] in args.seeds], Path(args.out)), indent=1))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    records = []
    for seed in args.seeds:
        for pre, down in pairs():
            feas = run_feasibility(pre, down, seed=seed)["score"]
            enc = _pretrain(out, pre, seed, args.pretrain_steps)
            acc_p = _finetune(out, down, str(enc), f"from_{pre.replace(',', '+')}", seed, args.finetune_steps)
            acc_s = _finetune(out, down, "", "scratch", seed, args.finetune_steps)
            records.append({"pretrain": pre, "downstream": down, "seed": seed, "feasibility": feas,
                            "acc_pretrained": acc_p["accuracy"], "acc_scratch": acc_s["accuracy"],
                            "gain": acc_p["accuracy"] - acc_s["accuracy"]})
            print(json.dumps(records[-1]), flush=True)
        write_json(out / "records.json", records)
    s = summarise(records, out)
    print(f"Spearman(feasibility, gain) over {len(s['pairs'])} pairs = {s['spearman_seed_means']:.3f}; "
          f"per seed {s['spearman_per_seed']}")


if __name__ == "__main__":
    main()
