"""Issue 22 (part 3), VL-GPT (reduced) must-show on MNIST (docs/results/vlgpt/README.md).

Per seed S (0, 1, 2), each a child process on one thread, skipped when its output exists (the driver
resumes)::

    fmlab vlgpt tokenizer --config configs/vlgpt/tokenizer_mnist.yaml --out OUT/tok_sS --set trainer.seed=S
    fmlab vlgpt train --config configs/vlgpt/mnist.yaml --out OUT/full_sS --set tokenizer=OUT/tok_sS \\
        --set trainer.seed=S
    fmlab vlgpt train --config configs/vlgpt/mnist.yaml --out OUT/ablation_sS --set tokenizer=OUT/tok_sS \\
        --set trainer.seed=S --set objective.image_loss_weight=0
    fmlab vlgpt eval --model OUT/ARM_sS --classifier lenet5_mnist --limit 500 --json OUT/ARM_sS/eval.json \\
        [--sheet OUT/sheet_ARM.png for seed 0]

Then ``OUT/results.json``, ``OUT/table.md`` (mean +- std over seeds; wall and CPU seconds per run) and
``OUT/vlgpt_metrics.png``.

    FMLAB_DATA=/work/shared/data python benchmarks/issue22_vlgpt.py --out runs/vlgpt_i22
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"full": [], "ablation": ["--set", "objective.image_loss_weight=0"]}
METRICS = ["caption_perplexity", "unigram_perplexity", "caption_class_acc", "t2i_embed_class_acc",
           "t2i_classifier_acc", "recon_classifier_acc", "real_classifier_acc", "t2i_embedding_mse"]


# the drivers' one "run fmlab in a child process, one thread, return its CPU seconds" helper
_spec = importlib.util.spec_from_file_location("mer", Path(__file__).with_name("mim_eurosat_runs.py"))
_mer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mer)


def fmlab(args: list[str], log: Path) -> dict:
    """Run ``fmlab ARGS`` on one thread; its wall and CPU seconds; exits on failure."""
    t = time.perf_counter()
    cpu = _mer.run_cli(args, log)
    secs = {"wall": time.perf_counter() - t, "cpu": cpu}
    print(f"{log.stem}: {secs['wall']:.0f} s wall, {secs['cpu']:.0f} CPU-s", flush=True)
    return secs


def run_seed(out: Path, seed: int, limit: int, seconds: dict) -> None:
    tok = out / f"tok_s{seed}"
    if not (tok / "tokenizer.json").is_file():
        seconds[tok.name] = fmlab(["vlgpt", "tokenizer", "--config", str(ROOT / "configs/vlgpt/tokenizer_mnist.yaml"),
                                   "--out", str(tok), "--set", f"trainer.seed={seed}"], out / f"{tok.name}.log")
    for arm, extra in ARMS.items():
        run = out / f"{arm}_s{seed}"
        if not (run / "vlgpt.json").is_file():
            seconds[run.name] = fmlab(["vlgpt", "train", "--config", str(ROOT / "configs/vlgpt/mnist.yaml"),
                                       "--out", str(run), "--set", f"tokenizer={tok}",
                                       "--set", f"trainer.seed={seed}", *extra], out / f"{run.name}.log")
        if not (run / "eval.json").is_file():
            sheet = ["--sheet", str(out / f"sheet_{arm}.png")] if seed == 0 else []
            fmlab(["vlgpt", "eval", "--model", str(run), "--classifier", "lenet5_mnist", "--limit", str(limit),
                   "--json", str(run / "eval.json"), *sheet], out / f"{run.name}_eval.log")


def summarise(out: Path, seeds: list[int], seconds: dict) -> dict:
    res: dict = {"seeds": seeds, "arms": {}, "seconds": seconds}
    lines = ["| metric | " + " | ".join(ARMS) + " |", "|---|" + "---|" * len(ARMS)]
    for arm in ARMS:
        evals = [json.loads((out / f"{arm}_s{s}" / "eval.json").read_text()) for s in seeds]
        res["arms"][arm] = {m: [e[m] for e in evals] for m in METRICS if m in evals[0]}
    for m in METRICS:
        cells = []
        for arm in ARMS:
            v = res["arms"][arm].get(m)
            cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if v and len(v) > 1 else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    print("\n".join(lines))
    return res


def plot(out: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    ppl = [("unigram baseline", res["arms"]["full"]["unigram_perplexity"]),
           ("VL-GPT full", res["arms"]["full"]["caption_perplexity"]),
           ("no image loss", res["arms"]["ablation"]["caption_perplexity"])]
    a.bar(range(3), [np.mean(v) for _, v in ppl], yerr=[np.std(v, ddof=1) for _, v in ppl], capsize=4,
          color=["grey", "tab:blue", "tab:orange"])
    a.set_xticks(range(3), [n for n, _ in ppl])
    a.set_ylabel("caption perplexity (per word, test)")
    a.set_title("image → text (lower is better)")
    keys = [("t2i_classifier_acc", "LeNet-5 on drawn image"), ("t2i_embed_class_acc", "nearest class (embedding)")]
    x = np.arange(len(keys))
    for i, (arm, colour) in enumerate((("full", "tab:blue"), ("ablation", "tab:orange"))):
        vals = [res["arms"][arm][k] for k, _ in keys]
        b.bar(x + (i - 0.5) * 0.38, [np.mean(v) for v in vals], 0.38, yerr=[np.std(v, ddof=1) for v in vals],
              capsize=4, color=colour, label="VL-GPT full" if arm == "full" else "no image loss (λ=0)")
    b.axhline(0.1, color="k", ls="--", lw=1, label="chance 1/10")
    b.set_xticks(x, [n for _, n in keys])
    b.set_ylim(0, 1.3)
    b.set_ylabel("class accuracy of caption → image")
    b.set_title("text → image (higher is better)")
    b.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"VL-GPT (reduced) on MNIST, mean ± std over seeds {res['seeds']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "vlgpt_metrics.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/vlgpt_i22"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--limit", type=int, default=500, help="test images evaluated")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    sec_file = args.out / "seconds.json"
    seconds = json.loads(sec_file.read_text()) if sec_file.is_file() else {}
    for s in seeds:
        run_seed(args.out, s, args.limit, seconds)
        sec_file.write_text(json.dumps(seconds, indent=2), encoding="utf-8")
    plot(args.out, summarise(args.out, seeds, seconds))


if __name__ == "__main__":
    main()
