"""Issue 21, X-CLIP video: X-CLIP vs mean pooling on motion and appearance labels, full data and few-shot,
on MNIST and on a user's npz pool; every seed in sequence, single-threaded.

Each run is exactly ``fmlab video train --config configs/video/<config>.yaml --out RUN --set ...`` followed
by ``fmlab video eval --model RUN --db DB`` (the same functions, called in-process). Results are appended
to ``OUT/results.json`` after every run (a rerun skips the runs already there) and summarised as
mean +- std over seeds in ``OUT/table.md``; ``--figure`` draws test clips with true and predicted labels.

    python benchmarks/issue21_video.py --out docs/results/video --runs /tmp/video-runs
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _pools import shapes_pool

POOLS = {"mnist": "video?objects=mnist&n_train=4000&n_test=1000&seed=0",
         "shapes": "video?objects=npz:{shapes}&n_train=4000&n_test=1000&seed=0"}
# experiment -> (configs compared, extra --set overrides, the target metric)
EXPERIMENTS = {
    "motion": (("xclip_motion", "meanpool_motion"), (), "acc_direction"),
    "appearance": (("xclip_appearance", "meanpool_appearance"), (), "acc_appearance"),
    "motion_16shot": (("xclip_motion", "meanpool_motion"), ("data.shots=16", "trainer.max_steps=300"),
                      "acc_direction"),
    "appearance_16shot": (("xclip_appearance", "meanpool_appearance"), ("data.shots=16", "trainer.max_steps=300"),
                          "acc_appearance"),
    # ablation: X-CLIP without video-specific prompting (messages + MIT only)
    "motion_noprompts": (("xclip_motion",), ("model.prompts=false",), "acc_direction"),
    "motion_16shot_noprompts": (("xclip_motion",), ("data.shots=16", "trainer.max_steps=300", "model.prompts=false"),
                                "acc_direction"),
}
SHOWN = ("acc_direction", "acc_direction_axis", "acc_appearance", "probe_appearance", "probe_direction",
         "probe_speed")


def run_one(config: str, pool: str, seed: int, sets: tuple[str, ...], run_dir: Path, db: Path) -> dict:
    """Train + eval one run; returns its metrics, CPU seconds and the equivalent commands."""
    from fmlab.experiments.video import load_video_config, run_video_train
    from fmlab.experiments.video_eval import run_video_eval

    overrides = ["data.source=" + POOLS[pool].format(shapes=shapes_pool()), f"trainer.seed={seed}", *sets]
    cfg = load_video_config(Path("configs/video") / f"{config}.yaml", overrides)
    c0, w0 = time.process_time(), time.perf_counter()
    run_video_train(cfg, run_dir)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - w0
    metrics = run_video_eval(run_dir, db=db)
    sets_txt = " ".join(f"--set '{s}'" for s in overrides)
    return {"config": config, "pool": pool, "seed": seed, "sets": list(sets), "metrics": metrics,
            "train_cpu_s": train_cpu, "train_wall_s": train_wall,
            "total_cpu_s": time.process_time() - c0,
            "command": f"fmlab video train --config configs/video/{config}.yaml --out RUN {sets_txt} && "
                       f"fmlab video eval --model RUN --db DB"}


def summarise(results: list[dict]) -> str:
    """Markdown: one row per (experiment, pool, config), mean +- std over seeds."""
    lines = ["| experiment | pool | method | n seeds | " + " | ".join(SHOWN) + " | train CPU s/run |",
             "|---" * (len(SHOWN) + 5) + "|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["experiment"], r["pool"], r["config"]), []).append(r)
    for (exp, pool, config), rs in groups.items():
        cells = []
        for k in SHOWN:
            vals = [r["metrics"][k] for r in rs if k in r["metrics"]]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "–")
        cpu = np.mean([r["train_cpu_s"] for r in rs])
        method = config.split("_")[0] + (" (no prompts)" if "model.prompts=false" in rs[0]["sets"] else "")
        lines.append(f"| {exp} | {pool} | {method} | {len(rs)} | " + " | ".join(cells)
                     + f" | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def figure(runs: Path, out: Path, pool: str = "mnist", n: int = 8) -> None:
    """Test clips (every other frame) with the true direction and both models' predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from fmlab.data import open_source
    from fmlab.data.synthetic.video import DIRECTIONS
    from fmlab.experiments.video_eval import load_video_model

    preds, clips = {}, None
    for config in ("xclip_motion", "meanpool_motion"):
        obj, meta = load_video_model(runs / f"motion-{pool}-{config}-s0")
        r = open_source(meta["source"]).split("test").render(np.arange(n))
        clips, true = r["images"], r["directions"][:, 0]
        with torch.no_grad():
            preds[config] = obj.logits(torch.as_tensor(clips)).argmax(1).numpy()
    frames = list(range(0, clips.shape[1], 2))
    fig, axes = plt.subplots(n, len(frames), figsize=(1.3 * len(frames) + 3.2, 1.35 * n))
    for i in range(n):
        for j, t in enumerate(frames):
            ax = axes[i, j]
            ax.imshow(clips[i, t], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"frame {t}", fontsize=8)
        x, m = DIRECTIONS[preds["xclip_motion"][i]], DIRECTIONS[preds["meanpool_motion"][i]]
        axes[i, -1].text(1.08, 0.5, f"true: {DIRECTIONS[true[i]]}\nX-CLIP: {x} {'✓' if x == DIRECTIONS[true[i]] else '✗'}"
                         f"\nmean-pool: {m} {'✓' if m == DIRECTIONS[true[i]] else '✗'}",
                         transform=axes[i, -1].transAxes, fontsize=7, va="center")
    fig.suptitle(f"test clips ({pool}, seed 0): direction, X-CLIP vs mean pooling", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/video")
    p.add_argument("--runs", default="/tmp/video-runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--plan", nargs="+", default=["motion:mnist", "appearance:mnist", "motion_16shot:mnist",
                                                 "motion:shapes", "appearance:shapes",
                                                 "appearance_16shot:mnist", "motion_16shot:shapes",
                                                 "appearance_16shot:shapes"],
                   help="experiment:pool items, run in this order")
    p.add_argument("--deadline", default=None, help="UTC HH:MM after which no new run starts")
    p.add_argument("--figure-only", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else []
    done = {(r["experiment"], r["pool"], r["config"], r["seed"]) for r in results}
    for item in [] if args.figure_only else args.plan:
        exp, pool = item.split(":")
        configs, sets, _ = EXPERIMENTS[exp]
        for seed in args.seeds:
            for config in configs:
                if (exp, pool, config, seed) in done:
                    continue
                if args.deadline and time.strftime("%H:%M", time.gmtime()) >= args.deadline:
                    print("deadline reached; stopping", flush=True)
                    break
                run_dir = runs / f"{exp}-{pool}-{config}-s{seed}"
                if run_dir.exists():
                    import shutil

                    shutil.rmtree(run_dir)
                rec = run_one(config, pool, seed, sets, run_dir, out / "video.db")
                rec["experiment"] = exp
                results.append(rec)
                store.write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(summarise(results))
                m = rec["metrics"]
                print(f"{exp} {pool} {config} s{seed}: " + ", ".join(f"{k}={m[k]:.3f}" for k in SHOWN if k in m)
                      + f" ({rec['train_cpu_s']:.0f} CPU s)", flush=True)
    (out / "table.md").write_text(summarise(results))
    if (runs / "motion-mnist-xclip_motion-s0").is_dir() and (runs / "motion-mnist-meanpool_motion-s0").is_dir():
        figure(runs, out / "clips_mnist.png")
    if (runs / "motion-shapes-xclip_motion-s0").is_dir() and (runs / "motion-shapes-meanpool_motion-s0").is_dir():
        figure(runs, out / "clips_shapes.png", pool="shapes")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
