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


def _ms(vals: list[float]) -> str:
    import statistics

    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


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
    args = ap.parse_args()
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
