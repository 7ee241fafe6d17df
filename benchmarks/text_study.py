"""Issue 18 studies: UL2 mixture vs span corruption vs causal LM, and ERNIE knowledge masking vs
token masking, at equal pre-training budget, several seeds.

    python benchmarks/text_study.py ul2   --seeds 0,1,2 --steps 300 --out runs/text_study
    python benchmarks/text_study.py ernie --seeds 0,1,2 --steps 300 --out runs/text_study

Each arm is one ``fmlab text pretrain`` command (printed and saved beside its numbers), then the
held-out probes of :mod:`fmlab.text.probes` on the corpus's test split:

Both studies use CPU-sized models (hidden 64, 2 heads) at lr 3e-3, 15 warm-up steps; the
budget is ``--steps`` optimiser steps (equal tokens for every arm).

* ul2: Tiny Shakespeare, one unigram tokenizer (2,000 tokens, trained per seed on the train
  split, identical across arms), blocks of 64, batch 16. Arms: ``ul2`` and ``t5`` (T5, 2+2
  layers) and ``clm`` (GPT-2, 4 layers: the same depth). Probes: infilling loss (span corruption
  15 %, μ = 3; encoder-decoders only; UL2 reads [NLU]) and continuation loss (second half of a
  block given the first; UL2 reads [S2S]).
* ernie: ChemProt TRAIN texts, WordPiece 3,000, blocks of 64, batch 16. Arms: ``ernie``
  (knowledge masking + NLG branch, 2 shared + 1 + 1 layers), ``ernie_token`` (the same unified
  model with token masking: isolates the masking) and ``mlm`` (a 3-layer BERT, token masking).
  Probes: entity cloze on ChemProt test (each marked entity masked whole) and token cloze.

Results: ``OUT/<study>_results.json`` (one row per run, with its command and CPU seconds).

Classification after fine-tuning (``--finetune TASK``): every pre-trained arm/seed found under
the ``--runs`` folders (comma list of earlier ``--out`` folders) is fine-tuned with
``fmlab text finetune`` (fine-tune seed = pre-training seed + 1), and each arm's architecture from
random initialisation with seeds 1, 2, 3; ``--ft-set`` passes the recipe (``--set`` values):

    python benchmarks/text_study.py ul2 --finetune sst2 --runs runs/ts_ul2_s0,runs/ts_ul2_s1 \
        --ft-fraction 0.03 --ft-set trainer.epochs=3,data.max_length=64,optim.lr=5e-4 --out runs/ft_ul2
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ARMS = {
    "ul2": {
        "ul2": ("ul2_shakespeare", []),
        "t5": ("t5_shakespeare", []),
        "clm": ("clm_shakespeare", ["model.layers=4"]),
    },
    "ernie": {
        "ernie": ("ernie_chemprot", []),
        "ernie_token": ("ernie_chemprot", ["objective.masking=token"]),
        "mlm": ("mlm_chemprot", []),
    },
}
COMMON = {
    "ul2": ["data.block_size=64", "trainer.batch_size=16", "tokenizer.kind=unigram",
            "tokenizer.vocab_size=2000", "schedule.warmup_steps=15", "optim.lr=0.003", "model.hidden=64"],
    "ernie": ["data.block_size=64", "trainer.batch_size=16", "tokenizer.vocab_size=3000",
              "schedule.warmup_steps=15", "optim.lr=0.003", "model.hidden=64"],
}


def pretrain_command(study: str, arm: str, seed: int, steps: int, out: Path) -> list[str]:
    config, extra = ARMS[study][arm]
    sets = [*COMMON[study], *extra, f"trainer.seed={seed}", f"trainer.max_steps={steps}",
            "trainer.progress=false", "trainer.tensorboard=false", "trainer.checkpoint_every=0"]
    return (["fmlab", "text", "pretrain", "--config", f"configs/text/{config}.yaml",
             "--out", str(out)] + [a for s in sets for a in ("--set", s)])


def probe(study: str, arm: str, run: Path, n_blocks: int, n_texts: int) -> dict:
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from fmlab.data.text import load_text
    from fmlab.text import probes
    from fmlab.text.packing import pack_blocks

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(run / "model")
    if study == "ul2":
        test = load_text("shakespeare", "test")
        blocks = pack_blocks(test.texts, tok, 64)[:n_blocks]
        if arm == "clm":
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(run / "model")
            return {"continuation": probes.continuation_loss(model, tok, blocks)}
        model = AutoModelForSeq2SeqLM.from_pretrained(run / "model")
        modes = ("[NLU]", "[S2S]") if arm == "ul2" else (None, None)
        return {"infill": probes.infill_loss(model, tok, blocks, mode_token=modes[0]),
                "continuation": probes.continuation_loss(model, tok, blocks, mode_token=modes[1])}
    test = load_text("chemprot", "test")
    model = AutoModelForMaskedLM.from_pretrained(run / "model")
    blocks = pack_blocks(test.texts, tok, 64)[:n_blocks]
    return {"entity_cloze": probes.entity_cloze(model, tok, test.texts[:n_texts]),
            "token_cloze": probes.token_cloze(model, tok, blocks)}


METRICS = {
    "ul2": [("infill", "loss", "infilling loss ↓"), ("infill", "acc", "infilling acc ↑"),
            ("continuation", "loss", "continuation loss ↓"), ("continuation", "ppl", "continuation ppl ↓")],
    "ernie": [("entity_cloze", "token_acc", "entity-cloze token acc ↑"),
              ("entity_cloze", "entity_acc", "whole-entity acc ↑"),
              ("token_cloze", "token_acc", "token-cloze acc ↑")],
}


def report(study: str, rows: list[dict]) -> str:
    """Markdown table: mean ± std over seeds per arm (n = seeds), plus the final training loss."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    head = [m[2] for m in METRICS[study]] + ["final train loss"]
    lines = ["| arm | seeds | " + " | ".join(head) + " |", "|---" * (len(head) + 2) + "|"]
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        cells = []
        for probe_name, key, _ in METRICS[study]:
            vals = [r["probes"][probe_name][key] for r in rs if probe_name in r["probes"]]
            cells.append(_ms(vals))
        cells.append(_ms([r["pretrain"]["last_loss"] for r in rs]))
        lines.append(f"| {arm} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(vals: list[float], digits: int = 4, pop: bool = False) -> str:
    """mean ± std (sample std; ``pop``: population std, as ``fmlab text finetune`` reports)."""
    import statistics

    if not vals:
        return "n/a"
    sd = (statistics.pstdev(vals) if pop else statistics.stdev(vals)) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def _plot_finetune(rows: list[dict], arms: list[str], path: Path, title: str) -> None:
    """Bars: mean test accuracy per arm and init (error bar = population std), dots = runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * 2 * len(arms), 3.6))
    x, labels = 0, []
    for arm in arms:
        for init, color in (("pretrained", "tab:blue"), ("random", "tab:gray")):
            acc = [100 * r["accuracy"] for r in rows if r["arm"] == arm and r["init"] == init]
            if not acc:
                continue
            ax.bar(x, np.mean(acc), yerr=np.std(acc), color=color, capsize=4)
            ax.plot([x] * len(acc), acc, "k.", ms=5)
            labels.append(f"{arm}\n{'pre-trained' if init == 'pretrained' else 'random init'}"
                          f"\n(n={len(acc)})")
            x += 1
    ax.set_xticks(range(x), labels, fontsize=7)
    ax.set_ylabel("test accuracy %")
    lo = min(100 * r["accuracy"] for r in rows) if rows else 0
    ax.set_ylim(max(0, lo - 8), None)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def finetune_study(args: argparse.Namespace) -> int:
    """``--finetune TASK``: fine-tune each found pre-trained run and each arm from random init."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = args.arms.split(",") if args.arms else list(ARMS[args.study])
    recipe = [a for kv in args.ft_set.split(",") if kv for a in ("--set", kv)]
    if args.ft_fraction:
        recipe += ["--fraction", str(args.ft_fraction)]
    rows = []
    for arm in arms:
        runs = sorted(r for d in args.runs.split(",") for r in
                      (Path(d) / args.study).glob(f"{arm}_s*") if (r / "model").is_dir())
        jobs = [(f"{arm}_s{r.name.rsplit('_s', 1)[1]}", str(r / "model"),
                 str(int(r.name.rsplit("_s", 1)[1]) + 1)) for r in runs]
        if runs and not args.ft_no_random:
            jobs.append((f"{arm}_random", f"random:{runs[0] / 'model'}", "1,2,3"))
        for name, model, seeds in jobs:
            dest = out / f"{args.finetune}_{name}"
            cmd = ["fmlab", "text", "finetune", "--model", model, "--task", args.finetune,
                   "--out", str(dest), "--seeds", seeds, "--no-db", *recipe]
            if not (dest / "results.json").is_file():
                p = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True)
                if p.returncode != 0:
                    print(p.stderr[-2000:], file=sys.stderr)
                    return 1
            for r in json.loads((dest / "results.json").read_text()):
                rows.append({"arm": arm, "init": r["init"], "seed": r["seed"], "command":
                             shlex.join(cmd), "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]})
            print(name, [round(r["accuracy"], 4) for r in rows if r["command"] == shlex.join(cmd)],
                  flush=True)
    (out / f"{args.study}_finetune_{args.finetune}.json").write_text(json.dumps(rows, indent=1))
    _plot_finetune(rows, arms, out / f"{args.study}_finetune_{args.finetune}.png",
                   f"{args.study} study: {args.finetune} test accuracy after fine-tuning")
    print("| arm | init | n | accuracy % | macro-F1 % |\n|---|---|---|---|---|")
    for arm in arms:
        for init in ("pretrained", "random"):
            rs = [r for r in rows if r["arm"] == arm and r["init"] == init]
            if rs:
                print(f"| {arm} | {init} | {len(rs)} | "
                      f"{_ms([100 * r['accuracy'] for r in rs], 2, pop=True)} | "
                      f"{_ms([100 * r['macro_f1'] for r in rs], 2, pop=True)} |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(ARMS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--arms", default=None, help="comma-separated subset of the arms")
    ap.add_argument("--out", default="runs/text_study")
    ap.add_argument("--probe-blocks", type=int, default=200)
    ap.add_argument("--probe-texts", type=int, default=600)
    ap.add_argument("--report", action="store_true", help="print the table of OUT's results")
    ap.add_argument("--finetune", default=None, help="fine-tune the --runs arms on this task")
    ap.add_argument("--runs", default="", help="comma list of pre-training --out folders")
    ap.add_argument("--ft-set", default="", help="comma list of KEY=VALUE for fmlab text finetune")
    ap.add_argument("--ft-fraction", type=float, default=None, help="--fraction of the train split")
    ap.add_argument("--ft-no-random", action="store_true", help="skip the random-init fine-tunes")
    args = ap.parse_args()
    if args.finetune:
        return finetune_study(args)
    out = Path(args.out)
    if args.report:
        print(report(args.study, json.loads((out / f"{args.study}_results.json").read_text())))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / f"{args.study}_results.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["arm"], r["seed"]) for r in rows}
    arms = args.arms.split(",") if args.arms else list(ARMS[args.study])
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in arms:
            if (arm, seed) in done:
                continue
            run = out / args.study / f"{arm}_s{seed}"
            cmd = pretrain_command(args.study, arm, seed, args.steps, run)
            t0 = time.process_time()
            start = time.time()
            p = subprocess.run([sys.executable, "-m", "fmlab", *cmd[1:]], capture_output=True,
                               text=True)
            cpu = time.process_time() - t0  # this process; the child's below
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            import resource

            child_cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            row = {"study": args.study, "arm": arm, "seed": seed, "steps": args.steps,
                   "command": shlex.join(cmd), "wall_s": time.time() - start,
                   "children_cpu_s_cumulative": child_cpu + cpu,
                   "pretrain": json.loads((run / "pretrain.json").read_text()),
                   "probes": probe(args.study, arm, run, args.probe_blocks, args.probe_texts)}
            rows.append(row)
            results_path.write_text(json.dumps(rows, indent=1))
            print(arm, seed, json.dumps(row["probes"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
