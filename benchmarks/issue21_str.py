"""Issue 21, DPTR must-show: ORP vs no-ORP pre-training vs a decoder from scratch, at 10/100/1000 labelled strings.

One process, single-threaded, runs in sequence what these commands run (see docs/results/str/README.md)::

    fmlab str align    --config configs/str/align.yaml        --out RUNS/align  --set data.source=ALIGN_SPEC
    fmlab str pretrain --config configs/str/pretrain_orp.yaml --out RUNS/orp_sS --set towers=RUNS/align \\
        --set trainer.seed=S --set data.source=SPEC
    fmlab str finetune --config configs/str/finetune.yaml --init RUNS/orp_sS|RUNS/noorp_sS|none \\
        --out RUNS/ft_... --set towers=RUNS/align --set trainer.seed=S --set data.limit=M --set data.source=SPEC_S
    fmlab str eval --model RUNS/ft_... --db RUNS/results.db

SPEC_S is the strings source with ``seed=S`` (so each seed has its own labelled strings and test strings);
the towers are aligned once per pool (seed 1000 strings, never a labelled one). Writes
``OUT/results.json`` and ``OUT/table.md`` (mean +- std over seeds, CPU seconds per run).

Usage::

    python benchmarks/issue21_str.py --objects mnist --out runs/str_mnist
    python benchmarks/issue21_str.py --objects npz:runs/pools/shapes.npz  # examples/make_shapes_pool.py --out runs/pools/shapes.npz --out runs/str_shapes
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
INITS = ("orp", "noorp", "none")


def spec(objects: str, seed: int, n_train: int = 20000, n_test: int = 500) -> str:
    return f"strings?objects={objects}&n_train={n_train}&n_test={n_test}&seed={seed}"


def _timed(fn, *args, **kw) -> tuple[dict, float]:
    t0 = time.process_time()
    out = fn(*args, **kw)
    return out, time.process_time() - t0


def run(objects: str, out: Path, seeds: list[int], sizes: list[int], db: Path, extra: list[str],
        towers: Path | None = None, inits: tuple[str, ...] = INITS, align_extra: tuple[str, ...] = ()) -> list[dict]:
    from fmlab.experiments import str as wf
    from fmlab.experiments.str_config import AlignConfig, FinetuneConfig, PretrainConfig, load_str_config

    cfg_dir = ROOT / "configs" / "str"
    align = towers or out / "align"
    if not (align / "towers.json").is_file():
        cfg = load_str_config(cfg_dir / "align.yaml", AlignConfig,
                              [f"data.source={spec(objects, 1000, 50000)}", *align_extra])
        res, cpu = _timed(wf.run_align, cfg, align)
        print(f"align: {res} cpu {cpu:.0f}s", flush=True)
    rows = []
    results_path = out / "results.json"
    if results_path.is_file():
        rows = json.loads(results_path.read_text())
    done = {(r["seed"], r["init"], r["limit"]) for r in rows}
    for seed in seeds:
        for init in [i for i in ("orp", "noorp") if i in inits]:
            run_dir = out / f"{init}_s{seed}"
            if not (run_dir / "str_model.json").is_file():
                cfg = load_str_config(cfg_dir / f"pretrain_{init}.yaml", PretrainConfig, [
                    f"towers={align}", f"trainer.seed={seed}", f"data.source={spec(objects, seed)}", *extra])
                res, cpu = _timed(wf.run_pretrain, cfg, run_dir)
                (run_dir / "cpu_seconds.txt").write_text(f"{cpu:.1f}\n")
                print(f"pretrain {init} s{seed}: {res} cpu {cpu:.0f}s", flush=True)
            if (seed, init, 0) not in done:  # zero-shot: the pre-trained decoder on image tokens
                ev = wf.run_str_eval(run_dir, db=db)
                rows.append({"seed": seed, "init": init, "limit": 0, "sequence_acc": ev["sequence_acc"],
                             "char_acc": ev["char_acc"], "cpu_s": float((run_dir / "cpu_seconds.txt").read_text())})
                results_path.write_text(json.dumps(rows, indent=1))
        for limit in sizes:
            for init in inits:
                if (seed, init, limit) in done:
                    continue
                run_dir = out / f"ft_{init}_n{limit}_s{seed}"
                init_arg = "none" if init == "none" else str(out / f"{init}_s{seed}")
                cfg = load_str_config(cfg_dir / "finetune.yaml", FinetuneConfig, [
                    f"init={init_arg}", f"towers={align}", f"trainer.seed={seed}", f"data.limit={limit}",
                    f"data.source={spec(objects, seed)}"])
                res, cpu = _timed(wf.run_finetune, cfg, run_dir)
                ev = wf.run_str_eval(run_dir, db=db)
                rows.append({"seed": seed, "init": init, "limit": limit, "sequence_acc": ev["sequence_acc"],
                             "char_acc": ev["char_acc"], "cpu_s": cpu, "loss": res.get("loss")})
                print(f"finetune {init} n{limit} s{seed}: seq {ev['sequence_acc']:.3f} char {ev['char_acc']:.3f} "
                      f"cpu {cpu:.0f}s", flush=True)
                results_path.write_text(json.dumps(rows, indent=1))
    return rows


def _ms(vals: list[float]) -> str:
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * statistics.mean(vals):.1f} ± {100 * sd:.1f}"


def table(rows: list[dict], objects: str) -> str:
    names = {"orp": "DPTR (pre-trained with ORP)", "noorp": "pre-trained, no ORP", "none": "decoder from scratch"}
    lines = [f"Pool `{objects}`: sequence / character accuracy (%), mean ± std over seeds; "
             "limit 0 = the pre-trained decoder read image tokens with no fine-tuning (zero-shot).", "",
             "| labelled strings | decoder init | seq acc | char acc | seeds | CPU s / run |",
             "|---:|---|---:|---:|---:|---:|"]
    for limit in sorted({r["limit"] for r in rows}):
        for init in INITS:
            sel = [r for r in rows if r["limit"] == limit and r["init"] == init]
            if not sel:
                continue
            cpu = statistics.mean(r["cpu_s"] for r in sel)
            lines.append(f"| {limit} | {names[init]} | {_ms([r['sequence_acc'] for r in sel])} | "
                         f"{_ms([r['char_acc'] for r in sel])} | {len(sel)} | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def figure(runs: dict[str, Path], data: str, out_png: Path, n: int = 6) -> None:
    """The first ``n`` test strings of ``data`` with each run's greedy transcription (green: exact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.experiments import str as wf

    sp, vocab, _ = wf.open_strings(data, split="test")
    rendered = sp.render(list(range(n)))
    preds = {name: wf.run_str_eval(run, data, limit=n)["examples"] for name, run in runs.items()}
    def spaced(text: str) -> str:  # symbols separated, so multi-letter class names stay readable
        return " ".join(vocab.symbols[k] for k in vocab.split(text)) if text else "(empty)"

    fig, axes = plt.subplots(n, 1, figsize=(7, 1.9 * n))
    for i, ax in enumerate(axes):
        ax.imshow(rendered["images"][i], cmap="gray")
        ax.set_xticks([]), ax.set_yticks([])
        true = rendered["texts"][i]
        lines = [f"true: {spaced(true)}"] + [
            f"{name}: {spaced(preds[name][i][1])}  {'(exact)' if preds[name][i][1] == true else ''}" for name in runs]
        ax.set_title("\n".join(lines), fontsize=7.5, loc="left", family="monospace")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", default="mnist", help="pool: mnist or npz:PATH")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--set", dest="extra", action="append", default=[], help="extra pretrain override")
    p.add_argument("--align-set", dest="align_extra", action="append", default=[], help="extra align override")
    p.add_argument("--towers", type=Path, default=None, help="reuse this align run (default: OUT/align, made once)")
    p.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS, help="decoder inits to run")
    p.add_argument("--figure", type=Path, default=None,
                   help="only draw test strings with the seed-0, 100-string models' transcriptions into this PNG")
    args = p.parse_args()
    if args.figure is not None:
        runs = {name: args.out / f"ft_{init}_n100_s0" for name, init in
                (("DPTR", "orp"), ("no-ORP", "noorp"), ("scratch", "none"))}
        figure(runs, spec(args.objects, 0), args.figure)
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args.objects, args.out, args.seeds, args.sizes, args.out / "results.db", args.extra, args.towers,
               tuple(args.inits), tuple(args.align_extra))
    (args.out / "table.md").write_text(table(rows, args.objects))
    print(table(rows, args.objects))


if __name__ == "__main__":
    main()
