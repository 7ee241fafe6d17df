"""GenDA study: adaptor-only vs full fine-tuning from ONE target image, several targets and seeds.

1. ``--make-targets DIR`` writes the one-shot targets (32×32 grey PNG), all made from MNIST
   test image 0 (a "7") except the font one:
      invert.png  255 − x (black digit on white; target_domain invert)
      bold.png    3×3 grey dilation (thick strokes; target_domain bold)
      font.png    "7" in DejaVu Serif Bold (a printed style never seen in training; no domain
                  map, so its recall is against the plain source samples)
2. ``--source RUN`` runs ``fmlab gan adapt`` for every target × method × seed and writes

      OUT/<target>_<method>_s<seed>/   the adapt outputs (report.json, grids, generator)
      OUT/summary.md, OUT/summary.json mean ± std over seeds per target and method

    FMLAB_DATA=/work/shared/data python benchmarks/genda_runs.py --make-targets \
        docs/results/genda/targets
    FMLAB_DATA=/work/shared/data python benchmarks/genda_runs.py --source runs/style \
        --targets docs/results/genda/targets --seeds 0,1,2 --out runs/genda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

TARGETS = {"invert": "invert", "bold": "bold", "font": "none"}   # name -> target_domain
METHODS = ("adaptor", "full", "full@100")   # method[@steps]; no @: the config's steps
METRICS = ("likeness", "diversity", "precision", "recall", "intensity")
# the committed font.png was drawn with Debian's fonts-dejavu copy; matplotlib's bundled copy (a
# different DejaVu release, so the glyph can differ by a pixel) serves where Debian's is absent
DEBIAN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf")


def target_font() -> Path:
    """DejaVu Serif Bold: Debian's file when installed, else the one in the matplotlib wheel."""
    if DEBIAN_FONT.is_file():
        return DEBIAN_FONT
    from fmlab.data.synthetic.fontdigits import font_dir

    return font_dir() / "DejaVuSerif-Bold.ttf"


def make_targets(out: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from fmlab.gan.genda import bold, invert
    from fmlab.gan.grid import to_uint8
    from fmlab.gan.prep import to_gan_input

    root = Path(os.environ.get("FMLAB_DATA", "/work/shared/data"))
    digit = np.load(root / "mnist" / "mnist.npz")["x_test"][:1]          # (1, 28, 28), a 7
    d32 = to_uint8(to_gan_input(digit, channels=1, size=32))[..., 0]    # as the GAN sees MNIST
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(invert(d32)[0]).save(out / "invert.png")
    Image.fromarray(bold(d32)[0]).save(out / "bold.png")
    im = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(im).text((16, 16), "7", fill=255, anchor="mm",
                            font=ImageFont.truetype(str(target_font()), 26))
    im.save(out / "font.png")
    print(f"wrote {', '.join(f'{t}.png' for t in TARGETS)} to {out}")


def run_one(source: str, target: Path, domain: str, method: str, seed: int, out: Path,
            extra: list[str]) -> dict:
    if not (out / "report.json").is_file():
        name, _, steps = method.partition("@")
        cmd = ["fmlab", "gan", "adapt", "--config", "configs/gan/genda_mnist.yaml",
               "--generator", source, "--target", str(target), "--target-domain", domain,
               "--method", name, "--seed", str(seed), "--out", str(out), *extra]
        cmd += ["--steps", steps] if steps else []
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads((out / "report.json").read_text())


def mean_std(v: list[float]) -> str:
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def summarise(rows: dict, out: Path) -> None:
    lines = ["| target | generator | " + " | ".join(METRICS) + " | CPU-min/run |",
             "|---|---|" + "---|" * (len(METRICS) + 1)]
    summary = {}
    for t, by_method in rows.items():
        first = next(iter(by_method.values()))[0]
        src = first["metrics"]["source"]
        ref = first["reference_intensity"]
        lines.append(f"| {t} | source (ψ=1) | "
                     + " | ".join(f"{src[m]:.3f}" for m in METRICS) + " | – |")
        lines.append(f"| {t} | T(source) / target | – | – | – | – | {ref['mapped_source']:.3f}"
                     f" / {ref['target']:.3f} | – |")
        for method, reps in by_method.items():
            vals = {m: [r["metrics"]["adapted"][m] for r in reps] for m in METRICS}
            cpu = statistics.mean(r["cpu_seconds"] for r in reps) / 60
            summary[f"{t}/{method}"] = {m: {"mean": statistics.mean(v),
                                            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                            "values": v} for m, v in vals.items()}
            lines.append(f"| {t} | {method} (n={len(reps)}) | "
                         + " | ".join(mean_std(vals[m]) for m in METRICS) + f" | {cpu:.2f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))


def figures(rows: dict, targets: Path, runs: Path, dest: Path, methods: list[str],
            seed: int) -> None:
    """One PNG per target: the target (×4), then the source, and each method's 64-sample grid
    (seed ``seed``), side by side with 8 px gaps."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    for t in rows:
        first = runs / f"{t}_{methods[0].replace('@', '')}_s{seed}"
        panels = [np.asarray(Image.open(first / "samples_source.png").convert("L"))]
        panels += [np.asarray(Image.open(runs / f"{t}_{m.replace('@', '')}_s{seed}"
                                         / "samples_adapted.png").convert("L")) for m in methods]
        h = panels[0].shape[0]
        tgt = np.asarray(Image.open(targets / f"{t}.png").convert("L"))
        big = np.kron(tgt, np.ones((4, 4), np.uint8))
        col = np.full((h, big.shape[1]), 128, np.uint8)
        col[:big.shape[0]] = big
        row = [col]
        for p in panels:
            row += [np.full((h, 8), 255, np.uint8), p]
        Image.fromarray(np.concatenate(row, 1)).save(dest / f"panel_{t}.png")
    print(f"wrote panels: target | source | {' | '.join(methods)} to {dest}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-targets", default=None, help="write the target PNGs here and stop")
    p.add_argument("--source", help="the source style generator run directory")
    p.add_argument("--targets", default="docs/results/genda/targets")
    p.add_argument("--names", default=",".join(TARGETS), help="comma list of targets")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of method[@steps]")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--figures", default=None, help="also write panel_<target>.png here")
    p.add_argument("--out", default="runs/genda")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    if args.make_targets:
        make_targets(Path(args.make_targets))
        return 0
    if not args.source:
        sys.exit("give --source RUN (or --make-targets DIR)")
    extra = [a for s in args.overrides for a in ("--set", s)]
    out = Path(args.out)
    rows: dict = {}
    for t in args.names.split(","):
        for method in args.methods.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                tag = method.replace("@", "")
                rep = run_one(args.source, Path(args.targets) / f"{t}.png", TARGETS[t], method,
                              seed, out / f"{t}_{tag}_s{seed}", extra)
                rows.setdefault(t, {}).setdefault(method, []).append(rep)
    summarise(rows, out)
    if args.figures:
        figures(rows, Path(args.targets), out, Path(args.figures), args.methods.split(","),
                int(args.seeds.split(",")[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
