"""Issue 18 comparisons of TEXT-DATA: ELECTRA vs MLM at equal pre-training compute (SST-2 and
ChemProt fine-tuning), and every encoder objective (MLM, ELECTRA, ERNIE) vs the same model from
random initialisation (SST-2). Writes docs/results/text/ tables and a picture.

    python benchmarks/text_encoder_runs.py corpus      # runs/text/corpus_mix.jsonl + tokenizer
    python benchmarks/text_encoder_runs.py pretrain    # 3 objectives x 3 seeds (skips done runs)
    python benchmarks/text_encoder_runs.py finetune    # the fine-tunes (skips done runs)
    python benchmarks/text_encoder_runs.py report      # tables + PNG

Pre-training corpus (unlabelled, train splits only, never copied into the repo): 20,000 SST-2
train phrases (seeded subset), the 4,144 distinct ChemProt train sentences (markers kept) and
the 2,126 medabs train abstracts, shuffled with seed 0 (702k words), under runs/text/.
Every objective uses one shared WordPiece tokenizer (4,000 tokens) trained on that corpus, the
same encoder size (hidden 128, 2 layers, 2 heads; ERNIE adds its task layer), block 128, batch 32
and the same number of steps (equal compute: per step ELECTRA and MLM measured within noise,
see the README).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "text"
CORPUS = RUNS / "corpus_mix.jsonl"
TOK = RUNS / "tok_mix"
STEPS = 80
SEEDS = (0, 1, 2)
OBJECTIVES = ("mlm", "electra", "ernie")
# ERNIE's knowledge masking costs several times MLM's step on this shared CPU: one pre-training
# seed, fine-tuned with seeds 1, 2, 3 (the README says so)
PRETRAIN_SEEDS = {"mlm": SEEDS, "electra": SEEDS, "ernie": (0,)}
CONFIG = {"mlm": "configs/text/mlm_shakespeare.yaml",
          "electra": "configs/text/electra_shakespeare.yaml",
          "ernie": "configs/text/ernie_chemprot.yaml"}
# fine-tuning budgets: about a CPU minute each on an idle core
TASKS = {"sst2": ["--fraction", "0.03", "--set", "trainer.epochs=3", "--set", "data.max_length=64"],
         "chemprot": ["--fraction", "0.25", "--set", "trainer.epochs=3",
                      "--set", "data.max_length=96"]}
COMMON = ["--set", "optim.lr=5e-4", "--no-db"]
FMLAB = [sys.executable, "-m", "fmlab"]


def _run(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode


def corpus() -> None:
    from fmlab.data.text import load_text

    docs = (load_text("sst2", "train", limit=20000).texts
            + list(dict.fromkeys(load_text("chemprot", "train").texts))
            + load_text("medabs", "train").texts)
    import random

    random.Random(0).shuffle(docs)
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    with open(CORPUS, "w") as f:
        for t in docs:
            f.write(json.dumps({"text": t}) + "\n")
    _run(FMLAB + ["text", "tokenizer", "--data", f"jsonl:{CORPUS}", "--split", "all",
                  "--vocab-size", "4000", "--out", str(TOK), "--measure", "sst2",
                  "--measure", "chemprot"], RUNS / "logs" / "tokenizer.log")


def pretrain_cmd(obj: str, seed: int) -> list[str]:
    return FMLAB + ["text", "pretrain", "--config", CONFIG[obj], "--out",
                    str(RUNS / "pt" / f"{obj}_s{seed}"),
                    "--set", f"data.source=jsonl:{CORPUS}", "--set", "data.split=all",
                    "--set", f"tokenizer.path={TOK}", "--set", f"trainer.max_steps={STEPS}",
                    "--set", f"trainer.seed={seed}", "--set", "trainer.checkpoint_every=0",
                    "--set", "trainer.log_every=25", "--set", "trainer.progress=false",
                    "--set", "schedule.warmup_steps=8"]


def pretrain(workers: int = 3) -> None:
    jobs = [(o, s) for s in SEEDS for o in OBJECTIVES if s in PRETRAIN_SEEDS[o]
            and not (RUNS / "pt" / f"{o}_s{s}" / "model" / "config.json").is_file()]
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(lambda j: _run(pretrain_cmd(*j), RUNS / "logs" / f"pt_{j[0]}_s{j[1]}.log"),
                    jobs))


def finetune_jobs() -> list[tuple[str, list[str]]]:
    """(output folder, command) of every fine-tune: each pre-trained seed once (fine-tune seed =
    pre-train seed + 1), and the random-init baseline of each architecture with seeds 1,2,3."""
    jobs = []
    for task, extra in TASKS.items():
        objs = ("mlm", "electra") if task == "chemprot" else OBJECTIVES
        for o in objs:
            for s in PRETRAIN_SEEDS[o]:
                out = RUNS / "ft" / f"{task}_{o}_s{s}"
                ft_seeds = str(s + 1) if len(PRETRAIN_SEEDS[o]) > 1 else "1,2,3"
                jobs.append((str(out), FMLAB + ["text", "finetune", "--model",
                                                str(RUNS / "pt" / f"{o}_s{s}" / "model"),
                                                "--task", task, "--out", str(out),
                                                "--seeds", ft_seeds, *extra, *COMMON]))
        if task == "sst2":
            for o in OBJECTIVES:
                out = RUNS / "ft" / f"{task}_random-{o}"
                jobs.append((str(out), FMLAB + ["text", "finetune", "--model",
                                                f"random:{RUNS / 'pt' / f'{o}_s0' / 'model'}",
                                                "--task", task, "--out", str(out),
                                                "--seeds", "1,2,3", *extra, *COMMON]))
    return jobs


def finetune(workers: int = 3) -> None:
    def ready(cmd: list[str]) -> bool:  # the pre-trained model exists
        model = cmd[cmd.index("--model") + 1].removeprefix("random:")
        return (Path(model) / "config.json").is_file()

    jobs = [j for j in finetune_jobs() if not (Path(j[0]) / "results.json").is_file()
            and not Path(j[0] + ".log").is_file() and ready(j[1])]
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(lambda j: _run(j[1], Path(j[0] + ".log")), jobs))


def _records(pattern: str) -> list[dict]:
    recs = []
    for p in sorted((RUNS / "ft").glob(pattern)):
        if (p / "results.json").is_file():
            recs += json.loads((p / "results.json").read_text())
    return recs


def _pretrain_seconds(obj: str) -> list[float]:
    out = []
    for s in SEEDS:
        p = RUNS / "pt" / f"{obj}_s{s}" / "metrics.jsonl"
        if p.is_file():
            rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
            rate = [r["images_per_s"] for r in rows if "images_per_s" in r]
            if rate:
                out.append(float(np.mean(rate)))
    return out


def report() -> None:
    rows = {}
    for task in TASKS:
        for o in OBJECTIVES:
            for init in ("pretrained", "random"):
                pat = f"{task}_{o}_s*" if init == "pretrained" else f"{task}_random-{o}"
                recs = _records(pat)
                if recs:
                    acc = np.array([r["accuracy"] for r in recs]) * 100
                    f1 = np.array([r["macro_f1"] for r in recs]) * 100
                    rows[(task, o, init)] = (acc.mean(), acc.std(), f1.mean(), f1.std(), len(recs),
                                             recs[0]["n_train"], recs[0]["n_test"])
    out = {"|".join(k): v for k, v in rows.items()}
    out["blocks_per_s"] = {o: _pretrain_seconds(o) for o in OBJECTIVES}
    dest = ROOT / "docs" / "results" / "text"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "encoder_runs.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    for (task, o, init), v in sorted(rows.items()):
        print(f"| {task} | {o} | {init} | {v[0]:.2f} ± {v[1]:.2f} | {v[2]:.2f} ± {v[3]:.2f} | "
              f"{v[4]} | {v[5]} | {v[6]} |")
    print("blocks/s during pre-training:", out["blocks_per_s"])
    _plot(rows, dest / "encoder_runs.png")


def _plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, task in zip(axes, TASKS, strict=True):
        labels, means, stds, colors = [], [], [], []
        for o in OBJECTIVES:
            for init, c in (("pretrained", "tab:blue"), ("random", "tab:gray")):
                if (task, o, init) in rows:
                    v = rows[(task, o, init)]
                    labels.append(f"{o}\n{'pre-trained' if init == 'pretrained' else 'random init'}")
                    means.append(v[0])
                    stds.append(v[1])
                    colors.append(c)
        ax.bar(range(len(means)), means, yerr=stds, color=colors, capsize=4)
        ax.set_xticks(range(len(means)), labels, fontsize=7)
        ax.set_ylabel("test accuracy % (mean ± std, 3 seeds)")
        ax.set_title(f"{task}: fine-tuned encoders ({STEPS}-step pre-training)")
        lo = min(means) - max(stds) - 5 if means else 0
        ax.set_ylim(max(0, lo), max(means) + max(stds) + 3 if means else 100)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    {"corpus": corpus, "pretrain": pretrain, "finetune": finetune, "report": report}[sys.argv[1]]()
