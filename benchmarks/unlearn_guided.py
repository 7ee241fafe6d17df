"""Guided Adapt-then-Unlearn on the MNIST MLP-GAN: anchor + negative push + chosen stopping step.

Per digit × seed: the guide CNN (trained on MNIST train, cached) splits 5,000 samples of G₀;
one θ_N (EWC adaptation, 400 steps) and every setting from the same θ_G / θ_N. Each setting is
``name:key=value,...`` with keys ``kind`` (nl2|el2|il2|none), ``g`` (γ), ``a`` (anchor weight),
``n`` (negative-push weight), ``sel`` (validate every k steps, 0 = keep the last step), ``fall``
(validation share fall that counts as removed), ``steps``, ``lrg``, ``lrd``, ``conf`` (anchor
confidence), ``nthr`` (p_target that also makes a latent negative), ``online`` (1: fresh latents
every step, 0: the fixed latent sets), ``aug`` (DiffAugment policy of the push's second view,
``+``-separated, e.g. ``translation+cutout``), ``margin`` (push margin on p_target; 0 = the
−log(1 − p) push). Metrics: the unchanged protocol (LeNet-5 share on 5,000 samples of a fixed z, FID-pos
with LeNet f6 features) against ``--reference`` (tuning: mnist:train with z seed 777; the
reported runs: mnist:test with z seed 12345).

Tuning (digits 3 and 5, MNIST train only):
    python benchmarks/unlearn_guided.py --digits 3,5 --seeds 100 --reference mnist:train \\
        --eval-seed 777 --settings "..." --out runs/unlearn_guided_tune
Evaluation of the default (digits 1, 7, 9 × seeds 0, 1, 2, test images):
    python benchmarks/unlearn_guided.py --digits 1,7,9 --seeds 0,1,2 --settings default \\
        --out runs/unlearn_guided_eval
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

KEYS = {"kind": str, "g": float, "a": float, "n": float, "sel": int, "fall": float,
        "steps": int, "lrg": float, "lrd": float, "conf": float, "nthr": float,
        "online": int, "aug": str, "margin": float}


def default_setting() -> dict:
    """The shipped defaults of ``fmlab gan unlearn`` in this script's keys."""
    from fmlab.experiments.unlearn_config import load_unlearn_config

    c = load_unlearn_config(None, [], {"generator": "G", "target_class": 0, "out": "o"})
    return {"kind": c.repulsion, "g": c.gamma, "a": c.guided.anchor_weight,
            "n": c.guided.negative_weight, "sel": c.guided.select_every,
            "fall": c.guided.select_min_fall, "steps": c.unlearn.steps, "lrg": c.unlearn.lr_g,
            "lrd": c.unlearn.lr_d, "conf": c.guided.anchor_confidence,
            "nthr": c.guided.negative_threshold, "online": int(c.guided.online),
            "aug": c.guided.push_augment, "margin": c.guided.push_margin}


def parse_settings(text: str) -> list[tuple[str, dict]]:
    """``name:k=v,...;name2:...`` (or ``default``) → [(name, setting)] on top of the defaults."""
    out = []
    for item in [t.strip() for t in text.split(";") if t.strip()]:
        name, _, rest = item.partition(":")
        s = default_setting()
        for kv in [x for x in rest.split(",") if x.strip()]:
            k, _, v = kv.partition("=")
            if k.strip() not in KEYS:
                raise SystemExit(f"setting {name}: unknown key {k!r}; known {sorted(KEYS)}")
            s[k.strip()] = KEYS[k.strip()](v.replace("+", ","))
        out.append((name, s))
    return out


def run_setting(G, D, pos, theta_n, guide, ref, digit, seed, s, ev):
    """One stage 2 from θ_G with setting ``s``; returns (G after, metrics, selection)."""
    from fmlab.experiments.unlearn import unlearn_positives
    from fmlab.gan.unlearn import StageConfig
    from fmlab.gan.unlearn.guided import GuidedConfig, build_guided

    gcfg = GuidedConfig(anchor_weight=s["a"], negative_weight=s["n"], select_every=s["sel"],
                        select_min_fall=s["fall"], anchor_confidence=s["conf"],
                        negative_threshold=s["nthr"], online=bool(s["online"]),
                        push_augment=s["aug"], push_margin=s["margin"])
    terms, select = build_guided(G, guide, ref, digit, gcfg, seed, ev.seed)
    cfg = StageConfig(steps=s["steps"], lr_g=s["lrg"], lr_d=s["lrd"])
    kind = s["kind"]
    anchors = None if kind == "none" else [theta_n]
    Gu = unlearn_positives(G, D, pos, anchors, cfg, "nl2" if kind == "none" else kind, s["g"],
                           seed, terms, select)[0]
    return Gu, ev(Gu), (select.summary() if select is not None else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", default="1,7,9")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--settings", default="default")
    ap.add_argument("--reference", default="mnist:test")
    ap.add_argument("--eval-seed", type=int, default=12345)
    ap.add_argument("--n-eval", type=int, default=5000)
    ap.add_argument("--out", default="runs/unlearn_guided")
    ap.add_argument("--merge", nargs="+", default=None, metavar="ROWS_JSON",
                    help="only tabulate these rows.json files (and plot with --plot)")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="with --merge: the trade-off figure (--old: issue-8 rows to compare)")
    ap.add_argument("--old", default=None, help="issue-8 rows.json (unlearn_runs.py) for --plot")
    ap.add_argument("--grid", default=None, metavar="PNG",
                    help="only draw before/after grids of the saved seed-0 generators in --out")
    a = ap.parse_args()
    if a.grid:
        draw_grid(Path(a.out), Path(a.grid))
        return
    if a.merge:
        rows = [r for p in a.merge for r in json.loads(Path(p).read_text())]
        print(table(rows))
        if a.plot:
            plot(rows, json.loads(Path(a.old).read_text()) if a.old else [], Path(a.plot))
        return

    import torch
    from safetensors.torch import save_file

    from fmlab.experiments.unlearn import (Evaluator, adapt_negatives, load_classifier,
                                           prepare_guide)
    from fmlab.gan import create_discriminator, to_gan_input
    from fmlab.gan.io import load_generator
    from fmlab.gan.unlearn import StageConfig, split_by_class
    from fmlab.gan.unlearn.guided import GuidedConfig, guide_classifier_fn

    root = os.environ["FMLAB_DATA"]
    w = Path(root) / "weights" / "mnist_small"
    G, _ = load_generator(w / "G--300.ckpt", "mlp")
    D = create_discriminator("mlp", weights=w / "D--300.ckpt")
    bb = load_classifier("lenet5_mnist", None, root)
    settings = parse_settings(a.settings)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()}", flush=True)
    for digit in [int(x) for x in a.digits.split(",")]:
        guide, ref, acc = prepare_guide(GuidedConfig(select_every=1), root, digit)
        ev = Evaluator(bb, digit, a.reference, root, a.n_eval, seed=a.eval_seed)
        before = ev(G)
        print(f"digit {digit}: guide acc {acc:.3f}; share {before['target_share']:.4f}, "
              f"FID-pos {before['fid_positives']:.1f}", flush=True)
        for seed in [int(x) for x in a.seeds.split(",")]:
            t0 = time.process_time()
            sp = split_by_class(G, guide_classifier_fn(guide), digit, 5000, seed)
            neg, pos = to_gan_input(sp.negatives), to_gan_input(sp.positives)
            theta_n, _ = adapt_negatives(G, D, neg, StageConfig(steps=400), 1.0, 32, seed)
            t_adapt = time.process_time() - t0
            for name, s in settings:
                t = time.process_time()
                Gu, m, sel = run_setting(G, D, pos, theta_n, guide, ref, digit, seed, s, ev)
                r = {"digit": digit, "seed": seed, "name": name, "setting": s,
                     "share_before": before["target_share"], "share_after": m["target_share"],
                     "fidpos_before": before["fid_positives"], "fidpos_after": m["fid_positives"],
                     "fid_before": before["fid"], "fid_after": m["fid"],
                     "cpu_s": time.process_time() - t + t_adapt, "selection": sel}
                rows.append(r)
                ds = 100 * (r["share_after"] / r["share_before"] - 1)
                df = 100 * (r["fidpos_after"] / r["fidpos_before"] - 1)
                chosen = sel["chosen_step"] if sel else s["steps"]
                print(f"digit {digit} seed {seed} {name:12s} share {ds:+.1f} % FID-pos {df:+.1f} %"
                      f" (step {chosen}, {r['cpu_s']:.0f} s CPU)"
                      + (" MEETS" if ds <= -90 and df <= 25 else ""), flush=True)
                (out / "rows.json").write_text(json.dumps(rows, indent=1))
                if a.reference.endswith(":test") and seed == 0:
                    save_file(Gu.state_dict(), str(out / f"G_digit{digit}_{name}_seed{seed}"
                                                   ".safetensors"))
    print(f"wrote {out}/rows.json")


def _changes(rows: list[dict]):
    import numpy as np

    ds = np.array([r["share_after"] / r["share_before"] - 1 for r in rows]) * 100
    df = np.array([r["fidpos_after"] / r["fidpos_before"] - 1 for r in rows]) * 100
    return ds, df


def table(rows: list[dict]) -> str:
    """Per setting and digit (and all digits): share / FID-pos change, mean ± std over seeds,
    and the runs meeting both targets (share −90 % or more, FID-pos +25 % or less)."""
    lines = ["| setting | digit | runs | share after | share change | FID-pos change | "
             "chosen step | runs meeting both |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["name"] for r in rows):
        sel = [r for r in rows if r["name"] == name]
        digits = sorted({r["digit"] for r in sel})
        for d in digits + (["all"] if len(digits) > 1 else []):
            rs = [r for r in sel if d == "all" or r["digit"] == d]
            ds, df = _changes(rs)
            sh = [100 * r["share_after"] for r in rs]
            steps = [r["selection"]["chosen_step"] if r["selection"] else r["setting"]["steps"]
                     for r in rs]
            ok = int(((ds <= -90) & (df <= 25)).sum())
            lines.append(f"| {name} | {d} | {len(rs)} | {_pm(sh, 2)} % | {_pm(ds, 1)} % | "
                         f"{_pm(df, 1)} % | {'/'.join(str(s) for s in steps)} | {ok}/{len(rs)} |")
    return "\n".join(lines)


def _pm(v, nd: int) -> str:
    import numpy as np

    v = np.asarray(v, dtype=float)
    return f"{v.mean():.{nd}f} ± {v.std():.{nd}f}"


def plot(rows: list[dict], old: list[dict], png: Path) -> None:
    """Share change vs FID-pos change: every run of ``rows`` (per digit) and the mean of each
    issue-8 setting (NL2 γ sweep, fine-tune) from ``old``, with the target box."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    keys = sorted({(r["variant"], r["gamma"] if r["gamma"] is not None else -1) for r in old})
    for variant in ("finetune", "nl2"):
        pts = [_changes([r for r in old if (r["variant"], r["gamma"] if r["gamma"] is not None
                                            else -1) == k]) for k in keys if k[0] == variant]
        if pts:
            xs, ys = [p[0].mean() for p in pts], [p[1].mean() for p in pts]
            ax.plot(xs, ys, "s--" if variant == "nl2" else "s", color="grey", alpha=0.7,
                    label=f"issue 8 {variant} (mean of 9 runs{', γ sweep' if variant == 'nl2' else ''})")
    for name in dict.fromkeys(r["name"] for r in rows):
        for d, marker in zip(sorted({r["digit"] for r in rows}), "ov^Ds"):
            rs = [r for r in rows if r["name"] == name and r["digit"] == d]
            if rs:
                ds, df = _changes(rs)
                ax.scatter(ds, df, marker=marker, label=f"{name}: digit {d} (each seed)")
        ds, df = _changes([r for r in rows if r["name"] == name])
        ax.errorbar(ds.mean(), df.mean(), xerr=ds.std(), yerr=df.std(), fmt="k*", ms=12,
                    label=f"{name}: mean ± std")
    lo, hi = ax.get_ylim()
    lo, hi = min(-10.0, lo), max(35.0, hi)
    ax.axvline(-90, color="grey", ls=":", lw=0.8)
    ax.axhline(25, color="grey", ls=":", lw=0.8)
    ax.fill_between([-100, -90], lo, 25, color="green", alpha=0.1, label="target")
    ax.set_xlim(-100, float(np.clip(ax.get_xlim()[1], -40, 0)))
    ax.set_ylim(lo, hi)
    ax.set_xlabel("target-digit share, change vs pre-trained G (%)")
    ax.set_ylabel("FID-pos (lenet5_mnist), change (%)")
    ax.set_title("Adapt-then-Unlearn on the MNIST MLP-GAN, digits 1/7/9 (test images)",
                 fontsize=9)
    ax.legend(fontsize=6.5, loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def draw_grid(run: Path, png: Path) -> None:
    """Before / after sample grids (same 48 z, seed 0) for every saved generator in ``run``."""
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.torch import load_file

    from fmlab.gan import sample_grid
    from fmlab.gan.io import load_generator

    w = Path(os.environ["FMLAB_DATA"]) / "weights" / "mnist_small"
    G0, _ = load_generator(w / "G--300.ckpt", "mlp")
    files = sorted(run.glob("G_digit*_seed0.safetensors"))
    fig, axes = plt.subplots(len(files), 2, figsize=(7, 3.6 * len(files)), squeeze=False)
    with tempfile.TemporaryDirectory() as tmp:
        before = sample_grid(G0, 48, Path(tmp) / "b.png", seed=0, nrow=8)
        for row, f in zip(axes, files):
            G, _ = load_generator(w / "G--300.ckpt", "mlp")
            G.load_state_dict(load_file(str(f)))
            after = sample_grid(G, 48, Path(tmp) / "a.png", seed=0, nrow=8)
            name = f.stem.replace("G_", "")
            for ax, img, title in ((row[0], before, "pre-trained G"), (row[1], after, name)):
                ax.imshow(img.squeeze(), cmap="gray")
                ax.set_title(title, fontsize=9)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
