"""T2I-SupCon part (a) (issue 23, papers.md #40): does SupCon in the image-text pre-training help
the text GAN? The T2I-SupCon GAN (configs/gan/mnist_t2i_supcon.yaml, part (b) on) with its captions
embedded by the text tower of (i) the plain MNIST CLIP and (ii) the SupCon-pre-trained one.

    python benchmarks/t2i_supcon_pretrain_runs.py clip                 # both CLIPs + zero-shot
    python benchmarks/t2i_supcon_pretrain_runs.py train [--seeds 0 1 2] # GAN runs, one at a time
    python benchmarks/t2i_supcon_pretrain_runs.py probe                 # what the caption embeddings keep
    python benchmarks/t2i_supcon_pretrain_runs.py report                # table, JSON, sheets

``clip`` trains runs/clip/mnist_digits_supcon (configs/clip/mnist_digits_supcon.yaml) and, when
missing, runs/clip/mnist_digits (or copies it from ``--plain-from``, a finished run of the same
config); then zero-shot on MNIST test → RUN/zeroshot.json. ``train`` runs
``fmlab gan train --config configs/gan/mnist_t2i_supcon.yaml --set caption.encoder=clip:RUN
--set trainer.seed=S`` into runs/textgan/t2i_supcon_a_<arm>_s<S>, alternating the arms seed by
seed, one thread, one process. ``probe`` embeds the GAN's ~1,000 distinct training captions with
MiniLM and both text towers and writes, per encoder, how far same-digit captions cluster
(mean cosine within vs across digits) and how well a linear probe (5-fold logistic regression)
still reads the thickness and slant words — what SupCon pre-training keeps for the GAN. ``report`` writes docs/results/textgan/supcon_a.json, the
mean ± std table and each arm's seed-0 caption sheet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from textgan_runs import METRICS, ROOT, _final, _fmlab  # noqa: E402

ARMS = {"plain": "mnist_digits", "supcon": "mnist_digits_supcon"}
CLIPS = ROOT / "runs" / "clip"
RUNS = ROOT / "runs" / "textgan"
OUT = ROOT / "docs" / "results" / "textgan"
CLASS_NAMES = "zero,one,two,three,four,five,six,seven,eight,nine"
COPY = ("clip_model.json", "config.yaml", "encoder.safetensors", "metrics.jsonl")


def _zeroshot(run: Path) -> None:
    log = run / "zeroshot.log"
    rc = _fmlab(["clip", "zeroshot", "--model", str(run), "--data", "mnist", "--split", "test",
                 "--templates", str(ROOT / "configs" / "clip" / "mnist_digits_templates.json"),
                 "--class-names", CLASS_NAMES, "--no-db"], log)
    rows = [ln.split() for ln in log.read_text().splitlines() if len(ln.split()) == 2]
    out = {k: float(v) for k, v in rows if k in ("acc1", "acc5", "mean_per_class_recall")}
    (run / "zeroshot.json").write_text(json.dumps(out) + "\n")
    print(f"{run.name}: zeroshot rc={rc} {out}", flush=True)


def clip(plain_from: Path | None) -> None:
    for arm, name in ARMS.items():
        run = CLIPS / name
        if (run / "clip_model.json").is_file():
            continue
        if arm == "plain" and plain_from is not None:
            run.mkdir(parents=True, exist_ok=True)
            for f in COPY:
                shutil.copy(plain_from / f, run / f)
            print(f"{name}: copied from {plain_from}", flush=True)
            continue
        rc = _fmlab(["clip", "train", "--config", str(ROOT / "configs" / "clip" / f"{name}.yaml"),
                     "--out", str(run), "--set", "trainer.progress=false"], CLIPS / f"{name}.log")
        print(f"{name}: clip train rc={rc}", flush=True)
    for name in ARMS.values():
        _zeroshot(CLIPS / name)


def train(seeds: list[int]) -> None:
    for s in seeds:
        for arm, name in ARMS.items():
            run = RUNS / f"t2i_supcon_a_{arm}_s{s}"
            args = ["gan", "train"] + (["--resume", str(run)] if run.exists() else
                                       ["--config", str(ROOT / "configs" / "gan" / "mnist_t2i_supcon.yaml"),
                                        "--out", str(run)])
            args += ["--set", f"caption.encoder=clip:runs/clip/{name}", "--set", f"trainer.seed={s}",
                     "--set", "trainer.progress=false"]
            rc = _fmlab(args, RUNS / f"{run.name}.log")
            print(f"{run.name}: rc={rc} {_final(run) if rc == 0 else ''}", flush=True)


def _probe_one(caps) -> dict:
    """Class clustering and attribute decodability of the distinct captions' embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    first = {c: i for i, c in reversed(list(enumerate(caps.captions)))}
    rows = np.array(sorted(first.values()))
    z = caps.emb[rows] / np.linalg.norm(caps.emb[rows], axis=1, keepdims=True)
    y = caps.labels[rows]
    cos, same = z @ z.T, y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    out = {"n_captions": int(len(rows)), "cos_same_digit": float(cos[same & off].mean()),
           "cos_other_digit": float(cos[~same].mean())}
    for a in ("thickness", "slant"):
        clf = LogisticRegression(max_iter=2000)
        out[f"{a}_probe_acc"] = float(cross_val_score(clf, z, caps.bins[a][rows], cv=5).mean())
    return out


def probe() -> None:
    from fmlab.data import open_source
    from fmlab.experiments.textgan_data import caption_images, fit_binner

    split = open_source("mnist").split("train")
    images = np.asarray(split.get_batch(np.arange(20000)))
    images = images[..., 0] if images.ndim == 4 else images
    labels = np.asarray(split.labels)[:20000]
    binner = fit_binner(images)
    out = {}
    for enc in ("text:minilm", *(f"clip:runs/clip/{n}" for n in ARMS.values())):
        out[enc] = _probe_one(caption_images(images, labels, binner, 0, enc))
        print(enc, out[enc], flush=True)
    (RUNS / "t2i_supcon_a_probe.json").write_text(json.dumps(out, indent=1) + "\n")


def _cell(v: np.ndarray, prec: int) -> str:
    return f"{v.mean():.{prec}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{prec}f}"


def report(seeds: list[int]) -> None:
    from fmlab.utils.io import write_json

    res = {arm: {str(s): _final(RUNS / f"t2i_supcon_a_{arm}_s{s}") for s in seeds} for arm in ARMS}
    res = {arm: {s: r for s, r in runs.items() if r} for arm, runs in res.items()}
    zs = {arm: json.loads((CLIPS / n / "zeroshot.json").read_text())
          if (CLIPS / n / "zeroshot.json").is_file() else {} for arm, n in ARMS.items()}
    pr = RUNS / "t2i_supcon_a_probe.json"
    write_json(OUT / "supcon_a.json", {"final": res, "clip_zeroshot": zs,
                                       "caption_probe": json.loads(pr.read_text()) if pr.is_file() else {}})
    lines = ["| caption encoder | seeds | " + " | ".join(METRICS) + " | train CPU-min | CLIP zero-shot acc@1 |",
             "|---|---|" + "---|" * (len(METRICS) + 2)]
    for arm, runs in res.items():
        cells = [_cell(np.array([r[m] for r in runs.values()], dtype=float),
                       1 if m == "fid" else 2 if m == "is" else 3) for m in METRICS]
        cpu = _cell(np.array([r["train_cpu_s"] for r in runs.values()]) / 60, 2)
        acc = zs[arm].get("acc1", float("nan"))
        lines.append(f"| clip:runs/clip/{ARMS[arm]} | {len(runs)} | " + " | ".join(cells)
                     + f" | {cpu} | {acc:.4f} |")
        for s, r in runs.items():
            print(f"- {arm} seed {s}: " + ", ".join(f"{m} {r[m]:.3g}" for m in METRICS), flush=True)
        sheets = sorted((RUNS / f"t2i_supcon_a_{arm}_s0" / "samples").glob("step_*.png"))
        if sheets:
            shutil.copy(sheets[-1], OUT / f"sheet_supcon_a_{arm}.png")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=("clip", "train", "probe", "report"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--plain-from", type=Path, default=None,
                    help="a finished run of configs/clip/mnist_digits.yaml to copy instead of training")
    a = ap.parse_args()
    {"clip": lambda: clip(a.plain_from), "train": lambda: train(a.seeds), "probe": probe,
     "report": lambda: report(a.seeds)}[a.what]()


if __name__ == "__main__":
    main()
