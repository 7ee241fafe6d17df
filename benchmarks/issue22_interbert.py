"""Issue 22 (InterBERT): pre-training vs none, span vs token masking, on canvas retrieval.

Per seed: a dual encoder (CLIP), two InterBERT pre-trainings (span / token masking), three ITM
fine-tunings with the dual encoder's hard negatives (from each pre-training, and from random
init), then ``fmlab clip retrieval`` on the canvas test split: the dual encoder alone and the
dual encoder's top-10 re-ranked by each fine-tuned fusion encoder. Every step is a ``fmlab``
command (recorded with its CPU seconds); finished steps are skipped on a rerun.

    python benchmarks/issue22_interbert.py --out runs/issue22_interbert --seeds 0 1 2
    python benchmarks/issue22_interbert.py --out runs/issue22_interbert --report docs/results/interbert
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = "canvas?objects=mnist&size=32&max_objects=2&n_train=2000&n_test=300&seed=3"
CFG = "configs/clip/interbert_canvas"
K = 10
METRICS = ("text_to_image_R@1", "text_to_image_R@5", "image_to_text_R@1", "image_to_text_R@5")
ARMS = {"dual": "dual encoder alone", "ft_scratch": "re-rank: no pre-training",
        "ft_token": "re-rank: pre-trained, token masking", "ft_span": "re-rank: pre-trained, span masking"}


def commands(out: Path, s: int) -> list[tuple[str, list[str]]]:
    """The ordered ``fmlab`` commands of seed ``s`` (key, argv)."""
    r = lambda name: str(out / name / f"seed{s}")  # noqa: E731
    seed = ["--set", f"trainer.seed={s}", "--set", "trainer.progress=false"]
    ft = [*seed, "--set", f"loss.interbert.seed={s}", "--set", f"loss.interbert.dual={r('dual')}"]
    cmds = [("dual", ["clip", "train", "--config", f"{CFG}_dual.yaml", "--out", r("dual"), *seed]),
            ("pre_span", ["clip", "train", "--config", f"{CFG}.yaml", "--out", r("pre_span"), *seed,
                          "--set", f"loss.interbert.seed={s}"]),
            ("pre_token", ["clip", "train", "--config", f"{CFG}.yaml", "--out", r("pre_token"), *seed,
                           "--set", f"loss.interbert.seed={s}",
                           "--set", "loss.interbert.span_mask=false"]),
            ("ft_scratch", ["clip", "train", "--config", f"{CFG}_finetune.yaml", "--out", r("ft_scratch"), *ft])]
    for arm in ("span", "token"):
        cmds.append((f"ft_{arm}", ["clip", "train", "--config", f"{CFG}_finetune.yaml", "--out",
                                   r(f"ft_{arm}"), *ft, "--set", f"loss.interbert.init={r('pre_' + arm)}"]))
    ev = ["clip", "retrieval", "--model", r("dual"), "--data", DATA, "--split", "test"]
    cmds.append(("eval_dual", ev))
    for arm in ("scratch", "token", "span"):
        cmds.append((f"eval_ft_{arm}", [*ev, "--rerank", r(f"ft_{arm}"), "--rerank-k", str(K)]))
    return cmds


def run_cli(args: list[str], log: Path) -> tuple[float, str]:
    """``fmlab ARGS`` in a child process, one thread: (CPU seconds, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "fmlab", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"fmlab {' '.join(args)} failed (rc {proc.returncode}); see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def run(out: Path, seeds: list[int]) -> None:
    record = out / "results.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    for s in seeds:
        for key, argv in commands(out, s):
            name = f"{key}/seed{s}"
            if name in done:
                continue
            cpu, stdout = run_cli(argv, out / "logs" / f"{key}_seed{s}.log")
            metrics = {m: float(v) for m, v in re.findall(r"^(\S+R@\d+)\s+([0-9.]+)$", stdout, re.M)}
            done[name] = {"argv": ["fmlab", *argv], "cpu_s": round(cpu, 1), "metrics": metrics}
            record.write_text(json.dumps(done, indent=1))
            print(f"{name}: {cpu:.0f} CPU-s {metrics or ''}", flush=True)


def table(done: dict) -> tuple[str, dict]:
    stats: dict = {}
    lines = ["| arm | " + " | ".join(METRICS) + " | seeds |", "|---" * (len(METRICS) + 2) + "|"]
    for arm, label in ARMS.items():
        rows = [v["metrics"] for k, v in done.items() if k.startswith(f"eval_{arm}/")]
        if not rows:
            continue
        vals = np.array([[r[m] for m in METRICS] for r in rows]) * 100
        stats[arm] = (vals.mean(0), vals.std(0, ddof=1) if len(rows) > 1 else np.zeros(len(METRICS)))
        cells = [f"{m:.1f} ± {sd:.1f}" for m, sd in zip(*stats[arm])]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(rows)} |")
    return "\n".join(lines), stats


def itm_table(out: Path) -> str:
    """Last logged ITM loss / accuracy of each fine-tuning (and pre-training) arm, mean ± std."""
    lines = ["| run | final ITM loss | final ITM accuracy | seeds |", "|---|---|---|---|"]
    for arm in ("pre_span", "pre_token", "ft_scratch", "ft_token", "ft_span"):
        last = [json.loads((f / "metrics.jsonl").read_text().splitlines()[-1])["logs"]
                for f in sorted((out / arm).glob("seed*")) if (f / "metrics.jsonl").is_file()]
        if last:
            loss, acc = np.array([x["itm"] for x in last]), np.array([x["itm_acc"] for x in last])
            sd = (lambda v: v.std(ddof=1) if len(v) > 1 else 0.0)  # noqa: E731
            lines.append(f"| {arm} | {loss.mean():.3f} ± {sd(loss):.3f} | {acc.mean():.3f} ± {sd(acc):.3f} | {len(last)} |")
    return "\n".join(lines)


def plot(stats: dict, path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(stats)
    for i, (arm, (mean, sd)) in enumerate(stats.items()):
        x = np.arange(len(METRICS)) + (i - (len(stats) - 1) / 2) * width
        ax.bar(x, mean, width, yerr=sd, capsize=3, label=ARMS[arm])
    ax.set_xticks(np.arange(len(METRICS)), [m.replace("_", " ") for m in METRICS])
    ax.set_ylabel("recall (%), canvas test (300)")
    ax.set_title(f"InterBERT re-ranking of a dual encoder's top-{K} (mean ± std, {seeds} seeds)")
    ax.set_ylim(0, 112)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/issue22_interbert"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--report", type=Path, default=None, help="write table.md + PNG here instead of running")
    a = p.parse_args()
    if a.report is None:
        run(a.out, a.seeds)
        return
    done = json.loads((a.out / "results.json").read_text())
    text, stats = table(done)
    a.report.mkdir(parents=True, exist_ok=True)
    (a.report / "table.md").write_text(text + "\n")
    cpu = {k.split("/")[0]: [] for k in done}
    for k, v in done.items():
        cpu[k.split("/")[0]].append(v["cpu_s"])
    (a.report / "cpu.md").write_text("\n".join(f"| {k} | {np.mean(v):.0f} |" for k, v in cpu.items()) + "\n")
    (a.report / "itm.md").write_text(itm_table(a.out) + "\n")
    plot(stats, a.report / "interbert_rerank.png", len(cpu.get("eval_dual", [])))
    print(text)


if __name__ == "__main__":
    main()
