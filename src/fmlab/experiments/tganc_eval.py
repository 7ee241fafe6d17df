"""Scores of a caption → clip generator: does the clip show the caption's digit moving the caption's
way, and how smooth is it?

- ``digit_accuracy`` / ``direction_accuracy``: held-out :class:`~fmlab.gan.video_data.ClipClassifier`
  s (trained on real *training* clips only, cached) read the caption's digit / direction
  (:func:`fmlab.metrics.text_image.attribute_agreement`), chance 0.1 / 0.125;
- ``jitter``: mean |x_{t+1} − x_t| of the clips on a [0, 1] scale
  (:func:`fmlab.metrics.text_image.frame_jitter`) — with ``real_jitter`` of the real test clips
  of the same captions as the reference (a generated clip of noise flickers far more);
- ``real_*``: the classifiers on those real clips (the ceiling).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.metrics.text_image import attribute_agreement, frame_jitter

__all__ = ["clip_classifier", "evaluate_tganc", "evaluate_tganc_run", "write_clip_sheet"]


def _fit_classifier(cfg: Any, target: str, steps: int) -> torch.nn.Module:
    from fmlab.engine import TensorSource, Trainer, TrainerConfig
    from fmlab.engine.config import OptimConfig
    from fmlab.engine.objectives import ClassificationObjective
    from fmlab.experiments.tganc import clip_set
    from fmlab.gan.video_objective import clips_to_gan

    clips = clip_set(cfg, "train", 6000, seed=7919)  # its own clips, never the GAN's seeds
    y = torch.from_numpy(clips["labels" if target == "digit" else "directions"])
    torch.manual_seed(0)
    net = _judge(target)
    x = clips_to_gan(torch.from_numpy(clips["frames"]))
    tc = TrainerConfig(max_steps=steps, batch_size=64, log_every=max(steps, 1), progress=False,
                       tensorboard=False, seed=0)
    Trainer(ClassificationObjective(net), TensorSource(x, y), tc, OptimConfig(lr=2e-3)).fit()
    return net.eval()


def _judge(target: str) -> torch.nn.Module:
    """The digit is appearance (a per-frame CNN), the direction is motion (3D convolutions)."""
    from fmlab.gan.video_data import ClipClassifier, FrameClassifier

    return FrameClassifier(10) if target == "digit" else ClipClassifier(8)


def clip_classifier(cfg: Any, target: str) -> torch.nn.Module:
    """The held-out ``digit`` or ``direction`` classifier for ``cfg``'s clips (trained once, cached
    under ``$FMLAB_CACHE/tganc`` by the clip settings and steps)."""
    from safetensors.torch import load_file, save_file

    from fmlab.engine.config import config_to_dict
    from fmlab.utils.io import atomic_path, cache_dir, sha256_json

    d = config_to_dict(cfg.data)
    key = sha256_json({"target": target, "arch": "frame-cnn" if target == "digit" else "clip-3d",
                       "steps": cfg.eval.classifier_steps,
                       **{k: d[k] for k in ("source", "frames", "size", "object_size")}})[:20]
    path = cache_dir() / "tganc" / f"clip-{target}-{key}.safetensors"
    if path.is_file():
        net = _judge(target)
        net.load_state_dict(load_file(str(path)))
        return net.eval()
    net = _fit_classifier(cfg, target, cfg.eval.classifier_steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(net.state_dict(), str(tmp))
    return net


@torch.no_grad()
def _predict(net: torch.nn.Module, x: torch.Tensor, batch: int = 250) -> np.ndarray:
    return torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()
def _generate(G: Any, emb: torch.Tensor, seed: int, batch: int = 250) -> torch.Tensor:
    G.eval()
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([G(G.sample_z(len(emb[i:i + batch]), gen), emb[i:i + batch])
                      for i in range(0, len(emb), batch)])


def evaluate_tganc(cfg: Any, G: Any, out: Path | None, split: str = "test") -> dict[str, float]:
    """Scores of ``G`` on the captions of ``eval.n`` clips of ``split``'s digits; writes
    ``out/samples.png`` (``out`` None: no sheet)."""
    from fmlab.experiments.tganc import clip_set
    from fmlab.experiments.textgan_data import embed_captions
    from fmlab.gan.video_objective import clips_to_gan

    test = clip_set(cfg, split, cfg.eval.n, seed=cfg.eval.seed)
    emb = torch.from_numpy(embed_captions(test["captions"], cfg.data.encoder))
    fake = _generate(G, emb, cfg.eval.seed)
    real = clips_to_gan(torch.from_numpy(test["frames"]))
    digit, direction = clip_classifier(cfg, "digit"), clip_classifier(cfg, "direction")
    res = {}
    for name, x in (("", fake), ("real_", real)):
        res[f"{name}digit_accuracy"] = attribute_agreement(_predict(digit, x), test["labels"])
        res[f"{name}direction_accuracy"] = attribute_agreement(_predict(direction, x),
                                                               test["directions"])
        res[f"{name}jitter"] = frame_jitter((x + 1) / 2)
    if out is not None:
        k = cfg.eval.sheet_rows
        write_clip_sheet(fake[:k], test["captions"][:k], out / "samples.png")
    return res


def write_clip_sheet(clips: torch.Tensor, captions: list[str], path: Path) -> Path:
    """One row per clip (frames left to right) with its caption above the row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.utils.io import atomic_path

    x = ((clips.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()[:, :, 0]
    rows, frames = x.shape[:2]
    fig, axes = plt.subplots(rows, frames, figsize=(0.8 * frames, 1.0 * rows), squeeze=False,
                             gridspec_kw={"wspace": 0.04, "hspace": 0.45})
    for r in range(rows):
        for t in range(frames):
            ax = axes[r, t]
            ax.imshow(x[r, t], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_title(captions[r], fontsize=7, loc="left")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.96, bottom=0.02)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def evaluate_tganc_run(run: Path, ref: str, n: int | None, seed: int,
                       data_root: str | None = None,
                       classifier_steps: int | None = None) -> dict[str, float]:
    """``fmlab gan eval --generator RUN`` for a TGANs-C run: its generator on the captions of clips
    rendered from ``ref`` (``SOURCE:SPLIT``); ``classifier_steps`` overrides the run's judge
    training (``--judge-steps``: re-score old runs with a better-trained judge)."""
    from safetensors.torch import load_file

    from fmlab.data import parse_split_spec
    from fmlab.errors import ConfigError
    from fmlab.experiments.tganc_config import load_tganc_config
    from fmlab.gan.video import VideoGenerator

    cfg = load_tganc_config(run / "config.yaml")
    source, split = parse_split_spec(ref)
    cfg.data.source, cfg.data.data_root = source, data_root or cfg.data.data_root
    cfg.eval.n, cfg.eval.seed = int(n or cfg.eval.n), int(seed)
    if classifier_steps is not None:
        if classifier_steps < 1:
            raise ConfigError(f"--judge-steps: {classifier_steps} must be >= 1")
        cfg.eval.classifier_steps = int(classifier_steps)
    file = run / "generator.safetensors"
    if not file.is_file():
        raise ConfigError(f"--generator: {run} has no generator.safetensors (train it first)")
    state = load_file(str(file))
    m, d = cfg.model, cfg.data
    G = VideoGenerator(m.z_dim, state["project.fc.weight"].shape[1], m.c_dim, d.frames, d.size, 1,
                       m.g_ch)
    G.load_state_dict(state)
    return evaluate_tganc(cfg, G, None, split or "test")
