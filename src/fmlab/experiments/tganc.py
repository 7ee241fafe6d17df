"""The TGANs-C experiment: caption → clip GAN on the ``video`` source (papers.md #42, reduced).

Training clips: one digit of the *train* split bouncing over ``data.frames`` frames, captioned
"a fast 4 moving up and to the right"; captions embedded by ``data.encoder`` (MiniLM, cached).
The objective is :class:`fmlab.gan.video_objective.TGANCObjective` on the engine (checkpoints,
exact ``--resume``). Evaluation (:func:`evaluate_tganc`): clips are generated for the captions of
clips rendered from the *test* split's digits and judged by two held-out clip classifiers trained
on real training clips only (digit, direction; cached under ``$FMLAB_CACHE/tganc``), plus the
frame-to-frame jitter of generated and real clips.

Files: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``generator.safetensors``,
``results.json``, ``samples.png`` (one row per caption, frames left to right).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fmlab.errors import ConfigError
from fmlab.experiments.tganc_config import TGANCConfig
from fmlab.gan.matching import MatchingAwareLoss
from fmlab.gan.video import FrameDiscriminator, MotionDiscriminator, VideoDiscriminator, VideoGenerator
from fmlab.gan.video_data import render_clips
from fmlab.gan.video_objective import TGANCObjective

__all__ = ["build_tganc", "clip_set", "run_tganc"]


def clip_set(cfg: TGANCConfig, split: str, n: int, seed: int) -> dict[str, Any]:
    """``n`` captioned clips of ``data.source``'s ``split`` digits (see :func:`render_clips`)."""
    from fmlab.data.labelled import grey_pool

    images, labels = grey_pool(cfg.data.source, split, cfg.data.data_root)
    d = cfg.data
    return render_clips(images, labels, n, seed, frames=d.frames, size=d.size,
                        object_size=d.object_size)


def build_tganc(cfg: TGANCConfig, e_dim: int) -> TGANCObjective:
    """G and the discriminators of ``cfg`` (seeded from ``trainer.seed``)."""
    torch.manual_seed(cfg.trainer.seed)
    m, d, g = cfg.model, cfg.data, cfg.gan
    G = VideoGenerator(m.z_dim, e_dim, m.c_dim, d.frames, d.size, 1, m.g_ch)
    kw = dict(e_dim=e_dim, c_dim=m.c_dim, channels=1, ch=m.d_ch, sn=m.d_sn,
              mbstd=m.d_mbstd)
    motion = MotionDiscriminator(**kw) if g.coherence == "motion" else None
    return TGANCObjective(G, VideoDiscriminator(**kw), FrameDiscriminator(**kw),
                          MatchingAwareLoss(g.base, g.mismatch, g.flip_p), g.coherence,
                          g.coherence_weight, motion)


def _train_source(cfg: TGANCConfig) -> tuple[Any, int]:
    from fmlab.engine import TensorSource
    from fmlab.experiments.textgan_data import embed_captions

    clips = clip_set(cfg, "train", cfg.data.clips, seed=cfg.trainer.seed)
    n = min(cfg.data.limit, cfg.data.clips) if cfg.data.limit else cfg.data.clips
    emb = torch.from_numpy(embed_captions(clips["captions"][:n], cfg.data.encoder))
    frames = torch.from_numpy(clips["frames"][:n])
    ids = torch.from_numpy(clips["caption_ids"][:n])
    return TensorSource(frames, ids, frames=frames, caption_emb=emb, caption_ids=ids), emb.shape[1]


def run_tganc(cfg: TGANCConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) ``cfg`` into ``out``, save the generator, evaluate; the results record."""
    from safetensors.torch import save_file

    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import latest_checkpoint
    from fmlab.engine.config import save_config
    from fmlab.experiments.tganc_eval import evaluate_tganc
    from fmlab.utils.io import atomic_path, write_json

    out = Path(out)
    if not resume and latest_checkpoint(out) is not None:
        raise ConfigError(f"{out} already holds a run with checkpoints; continue it with "
                          f"--resume {out} or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")  # the engine rewrites it (the same) at the start
    source, e_dim = _train_source(cfg)
    obj = build_tganc(cfg, e_dim)
    optim = {"g": cfg.optim_g, "d": cfg.optim_d}
    fit = Trainer(obj, source, cfg.trainer, optim, cfg.schedule, run_dir=out, config=cfg).fit(
        resume=out if resume else None)
    with atomic_path(out / "generator.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in obj.G.state_dict().items()}, str(tmp))
    rec = {"name": cfg.name, "seed": cfg.trainer.seed, "steps": fit.step,
           "coherence": cfg.gan.coherence, "mismatch": cfg.gan.mismatch,
           "train_clips": len(source), **evaluate_tganc(cfg, obj.G, out)}
    write_json(out / "results.json", rec)
    return rec
