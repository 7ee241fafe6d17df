"""Issue 22 (part 1): LightCLIP's ablation and PLIP's identity contrast / colourisation on MNIST
canvases (docs/results/clip_objectives). Every arm is one ``fmlab clip train`` command in a child
process (one thread), skipped when its ``encoder.safetensors`` exists, so the driver resumes; then
every run is evaluated with global embeddings only (what ``fmlab clip retrieval|zeroshot`` do,
plus same-identity and colour-query mAP from :mod:`fmlab.multimodal.plip_eval`).

    FMLAB_DATA=/work/shared/data python benchmarks/issue22_lightplip.py --out runs/issue22_lightplip
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results" / "clip_objectives"
TEST = "canvas?objects=mnist&size=32&max_objects=2&n_train=2000&n_test=500&seed=0"
TEMPLATES = ["a {}", "there is a {}", "a picture of a {}"]
LC = "configs/clip/lightclip_canvas.yaml"
PL = "configs/clip/plip_canvas.yaml"
LCC = "configs/clip/lightclip_cifar10.yaml"


def _sets(**kv: object) -> list[str]:
    out: list[str] = []
    for k, v in kv.items():
        out += ["--set", f"loss.{k.replace('__', '.')}={str(v).lower()}"]
    return out


ARMS: dict[str, tuple[str, list[str]]] = {
    # LightCLIP's ablation: CLIP loss -> + soft labels -> + token alignment -> + fused MLM
    "clip": (LC, _sets(lightclip__soft_labels=False, lightclip__token_align=False, lightclip__mlm=False)),
    "lc_soft": (LC, _sets(lightclip__token_align=False, lightclip__mlm=False)),
    "lc_soft_token": (LC, _sets(lightclip__mlm=False)),
    "lightclip": (LC, []),
    # PLIP: identity-level contrast, + colourisation, + attribute prediction (the instance-level
    # CLIP baseline is "clip" above: the same loss)
    "ivlc": (PL, _sets(plip__colourise=False, plip__attributes=False)),
    "ivlc_tic": (PL, _sets(plip__attributes=False)),
    "plip": (PL, []),
    # generic (templated) captions: CIFAR-10, a JPEG copy; zero-shot only (no image-text test split)
    "cifar_clip": (LCC, _sets(lightclip__soft_labels=False)),
    "cifar_soft": (LCC, []),
}


# the drivers' one "run fmlab in a child process, one thread, return its CPU seconds" helper
_spec = importlib.util.spec_from_file_location("mer", Path(__file__).with_name("mim_eurosat_runs.py"))
_mer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mer)
fmlab = _mer.run_cli


def train(out: Path, arm: str, seed: int) -> dict:
    run = out / arm / f"seed{seed}"
    info = out / arm / f"seed{seed}.json"
    if info.is_file() and (run / "encoder.safetensors").is_file():
        return json.loads(info.read_text())
    config, extra = ARMS[arm]
    if config == LCC:  # a random image-tower init: seed it too
        extra = [*extra, "--set", f'model.image_kwargs={{"seed": {seed}}}']
    cmd = ["clip", "train", "--config", config, *extra, "--set", f"trainer.seed={seed}",
           "--set", "trainer.progress=false", "--out", str(run)]
    run.parent.mkdir(parents=True, exist_ok=True)
    cpu = fmlab(cmd, out / arm / f"seed{seed}.log")
    rec = {"command": "fmlab " + " ".join(cmd), "cpu_s": cpu}
    info.write_text(json.dumps(rec))
    print(f"{arm} seed {seed}: {cpu:.0f} CPU s", flush=True)
    return rec


def evaluate(run: Path) -> dict:
    """Retrieval R@k, zero-shot accuracy, same-identity and colour-query mAP on the test split
    (CIFAR-10 runs: zero-shot accuracy on its test split only). The model is loaded once and
    handed to the functions behind ``fmlab clip retrieval|zeroshot`` (same numbers)."""
    from fmlab.data import open_source
    from fmlab.data.synthetic.canvas import COLOURS
    from fmlab.multimodal.evaluate import retrieval_evaluate, zeroshot_evaluate
    from fmlab.multimodal.io import load_image_text_model
    from fmlab.multimodal.plip_eval import colour_query_retrieval, identity_retrieval

    model = load_image_text_model(str(run))
    if run.parent.name.startswith("cifar"):
        src = open_source("cifar10")
        return {"zeroshot_acc1": zeroshot_evaluate(model, src.split("test"), src.class_names,
                                                   ["a photo of a {}."])["acc1"]}
    src = open_source(TEST)
    split = src.split("test")
    out = {k: v for k, v in retrieval_evaluate(model, split).items() if "R@" in k and "chance" not in k}
    out["zeroshot_acc1"] = zeroshot_evaluate(model, split, src.class_names, TEMPLATES)["acc1"]
    out.update(identity_retrieval(model, split))
    out.update(colour_query_retrieval(model, split, COLOURS))
    return out


LIGHTCLIP_ARMS = ["clip", "lc_soft", "lc_soft_token", "lightclip"]
PLIP_ARMS = ["clip", "ivlc", "ivlc_tic", "plip"]
METRICS = ["text_to_image_R@1", "text_to_image_R@5", "image_to_text_R@1", "image_to_text_R@5",
           "zeroshot_acc1", "identity_mAP", "colour_mAP", "colour_only_mAP", "cpu_s"]


def summarise(results: dict) -> dict:
    """arm -> metric -> (mean, std over seeds, n) (std with ddof=1)."""
    import numpy as np

    out: dict = {}
    for key, rec in results.items():
        arm = key.split("/")[0]
        for m in METRICS:
            if m not in rec:
                continue
            out.setdefault(arm, {}).setdefault(m, []).append(rec[m])
    return {a: {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                for m, v in ms.items()} for a, ms in out.items()}


def table(summary: dict, arms: list[str], metrics: list[str]) -> str:
    lines = ["| arm | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for a in arms:
        if a in summary:
            cells = [f"{summary[a][m][0]:.3f} ± {summary[a][m][1]:.3f}" if m != "cpu_s"
                     else f"{summary[a][m][0]:.0f}" for m in metrics]
            lines.append(f"| {a} | {summary[a][metrics[0]][2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report() -> None:
    """tables.md and lightplip.png (per-seed points, mean bars) from results.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results = json.loads((DOCS / "results.json").read_text())
    summary = summarise(results)
    lc = ["text_to_image_R@1", "text_to_image_R@5", "image_to_text_R@1", "image_to_text_R@5", "zeroshot_acc1", "cpu_s"]
    pl = ["identity_mAP", "colour_mAP", "colour_only_mAP", "text_to_image_R@1", "zeroshot_acc1", "cpu_s"]
    text = ("## LightCLIP ablation\n\n" + table(summary, LIGHTCLIP_ARMS, lc)
            + "\n\n## PLIP\n\n" + table(summary, PLIP_ARMS, pl) + "\n")
    if "cifar_clip" in summary:
        text += ("\n## Generic captions (CIFAR-10, a JPEG copy)\n\n"
                 + table(summary, ["cifar_clip", "cifar_soft"], ["zeroshot_acc1", "cpu_s"]) + "\n")
    (DOCS / "tables.md").write_text(text)
    panels = [("LightCLIP ablation: text→image R@1", LIGHTCLIP_ARMS, "text_to_image_R@1"),
              ("LightCLIP ablation: zero-shot acc@1 (first object)", LIGHTCLIP_ARMS, "zeroshot_acc1"),
              ("PLIP: same-identity text→image mAP", PLIP_ARMS, "identity_mAP"),
              ("PLIP: colour-query mAP (\"a red 7\")", PLIP_ARMS, "colour_mAP")]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, (title, arms, m) in zip(axes, panels):
        arms = [a for a in arms if a in summary]
        for i, a in enumerate(arms):
            vals = [r[m] for k, r in results.items() if k.split("/")[0] == a]
            ax.bar(i, summary[a][m][0], yerr=summary[a][m][1], color="#9ecae1", capsize=4)
            ax.scatter([i] * len(vals), vals, color="k", s=10, zorder=3)
        chance = {"identity_mAP": "chance_identity_mAP", "colour_mAP": "chance_colour_mAP"}.get(m)
        if chance:
            level = float(np.mean([r[chance] for r in results.values() if chance in r]))
            ax.axhline(level, ls="--", color="grey", lw=1, label=f"chance {level:.3f}")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(arms)), arms, rotation=25, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0.0, None)
    seeds = sorted({v["zeroshot_acc1"][2] for v in summary.values()})
    fig.suptitle(f"MNIST canvas 32 px, ResNet-20 + locked MiniLM, 150 steps x 64, {'/'.join(map(str, seeds))} "
                 "seeds per arm (bars: mean ± std; dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "lightplip.png", dpi=110)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/issue22_lightplip"))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--report", action="store_true", help="only write tables.md and the PNG")
    args = ap.parse_args()
    if args.report:
        return report()
    seeds = [int(s) for s in args.seeds.split(",")]
    results_file = DOCS / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for s in seeds:  # seed-major: an interrupted study still has every arm of the first seeds
        for arm in args.arms.split(","):
            key = f"{arm}/seed{s}"
            rec = train(args.out, arm, s)
            if key not in results:
                results[key] = {**rec, **evaluate(args.out / arm / f"seed{s}")}
                DOCS.mkdir(parents=True, exist_ok=True)
                tmp = results_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
                tmp.replace(results_file)
                print(key, {k: round(v, 3) for k, v in results[key].items() if isinstance(v, float)}, flush=True)


if __name__ == "__main__":
    main()
