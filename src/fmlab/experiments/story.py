"""The story-continuation experiment (StoryDALL-E, reduced; papers.md #48).

``stage: pretrain`` — styled single frames with full captions ("a thick red seven") from the
training digits; (1) a VQ-VAE (``RUN_DIR/vq``), (2) the text-to-image transformer on the frames'
codes (``RUN_DIR/t2i``). ``stage: adapt`` — training stories from the training digits; every
frame f ≥ 1 is an example (caption "then a four", target codes of frame f, source = codes of
frame 0); the pre-trained transformer is prepared for ``method``
(:func:`fmlab.story.objective.prepare_adaptation`) and trained (``RUN_DIR/model``), then
evaluated on test stories drawn from the *test* digits (:mod:`fmlab.experiments.story_eval`).

Every stage runs on the engine with its own checkpoints, so ``--resume`` continues the stage that
was cut and skips finished ones. Files: ``config.yaml``, ``vq/``, ``t2i/`` or ``model/``
(``weights.safetensors`` + ``model.json``), ``results.json`` (adapt), ``story_sheet.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError
from fmlab.experiments.story_config import StoryConfig
from fmlab.story.data import frame_captions, render_stories
from fmlab.story.objective import StoryObjective, prepare_adaptation
from fmlab.story.transformer import StoryTransformer
from fmlab.story.vqvae import VQVAE, VQVAEObjective

__all__ = ["digits_pool", "frame_codes", "load_stage", "run_story", "story_examples", "to_unit"]


def digits_pool(cfg: StoryConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Grey digits (N, H, W) uint8 and labels of ``data.source``'s split."""
    from fmlab.data.labelled import grey_pool

    return grey_pool(cfg.data.source, split, cfg.data.data_root)


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _save(module: torch.nn.Module, folder: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from fmlab.utils.io import atomic_path, write_json

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "weights.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
    write_json(folder / "model.json", meta)


def load_stage(folder: Path, module: torch.nn.Module) -> torch.nn.Module:
    """Load ``folder/weights.safetensors`` into ``module`` (strict)."""
    from safetensors.torch import load_file

    file = Path(folder) / "weights.safetensors"
    if not file.is_file():
        raise ConfigError(f"init: {folder} has no weights.safetensors (run the pretrain stage first)")
    module.load_state_dict(load_file(str(file)))
    return module


def _fit(obj: torch.nn.Module, source: Any, cfg: StoryConfig, trainer: Any, optim: Any,
         run_dir: Path, resume: bool) -> None:
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import latest_checkpoint

    again = resume and latest_checkpoint(run_dir) is not None
    Trainer(obj, source, trainer, optim, cfg.schedule, run_dir=run_dir).fit(
        resume=run_dir if again else None)


def _limit(n: int, cfg: StoryConfig) -> int:
    return min(n, cfg.data.limit) if cfg.data.limit else n


def frame_codes(vq: VQVAE, frames: np.ndarray, batch: int = 500) -> torch.Tensor:
    """VQ codes (N, h·w) of uint8 RGB frames (N, H, W, 3)."""
    vq.eval()
    with torch.no_grad():
        return torch.cat([vq.encode(to_unit(frames[i:i + batch])).flatten(1)
                          for i in range(0, len(frames), batch)])


def _pretrain(cfg: StoryConfig, out: Path, resume: bool) -> dict[str, Any]:
    from dataclasses import replace

    from fmlab.engine import OptimConfig, TensorSource
    from fmlab.experiments.textgan_data import embed_captions

    images, labels = digits_pool(cfg, "train")
    s = render_stories(images, labels, cfg.data.singles, seed=cfg.trainer.seed, frames=1)
    n = _limit(cfg.data.singles, cfg)
    frames = s["frames"][:n, 0]
    torch.manual_seed(cfg.trainer.seed)
    v = cfg.vq
    vq = VQVAE(3, v.codes, v.dim, v.ch, v.beta)
    if not (out / "vq" / "weights.safetensors").is_file():
        vt = replace(cfg.trainer, max_steps=v.steps, batch_size=v.batch_size)
        _fit(VQVAEObjective(vq), TensorSource(to_unit(frames)), cfg, vt,
             OptimConfig(lr=v.lr), out / "vq_run", resume)
        _save(vq, out / "vq", {"codes": v.codes, "dim": v.dim, "ch": v.ch, "beta": v.beta})
    load_stage(out / "vq", vq)
    codes = frame_codes(vq, frames)
    caps = frame_captions(s["digits"][:n, 0], s["colour"][:n], s["thickness"][:n])
    emb = torch.from_numpy(embed_captions(caps, cfg.data.encoder))
    model = _transformer(cfg, codes.shape[1], emb.shape[1], vq.codes, cross=False)
    _fit(StoryObjective(model), TensorSource(codes, codes=codes, caption_emb=emb), cfg,
         cfg.trainer, cfg.optim, out / "t2i_run", resume)
    _save(model, out / "t2i", {"tokens": codes.shape[1], "e_dim": emb.shape[1]})
    return {"stage": "pretrain", "singles": n, "codes_used": int(codes.unique().numel())}


def _transformer(cfg: StoryConfig, tokens: int, e_dim: int, codes: int, cross: bool
                 ) -> StoryTransformer:
    m = cfg.model
    return StoryTransformer(codes, tokens, e_dim, m.d, m.layers, m.heads, m.prompts, cross=cross)


def _pretrained(cfg: StoryConfig) -> tuple[StoryConfig, VQVAE, StoryTransformer]:
    from fmlab.experiments.story_config import load_story_config

    init = Path(str(cfg.init))
    if not (init / "config.yaml").is_file():
        raise ConfigError(f"init: {init} is not a story pretrain run (no config.yaml)")
    pre = load_story_config(init / "config.yaml")
    meta = json.loads((init / "t2i" / "model.json").read_text())
    v = pre.vq
    vq = load_stage(init / "vq", VQVAE(3, v.codes, v.dim, v.ch, v.beta)).eval()
    t2i = load_stage(init / "t2i", _transformer(pre, meta["tokens"], meta["e_dim"], v.codes, False))
    return pre, vq, t2i


def story_examples(cfg: StoryConfig, vq: VQVAE, split: str, n: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per frame f ≥ 1 of ``n`` stories of ``split``'s digits: (source codes, target codes, caption)."""
    images, labels = digits_pool(cfg, split)
    s = render_stories(images, labels, n, seed=seed, frames=cfg.data.frames)
    codes = frame_codes(vq, s["frames"].reshape(-1, *s["frames"].shape[2:])).view(n, cfg.data.frames, -1)
    src = codes[:, :1].expand(-1, cfg.data.frames - 1, -1).reshape(-1, codes.shape[2])
    tgt = codes[:, 1:].reshape(-1, codes.shape[2])
    caps = frame_captions(s["digits"][:, 1:].ravel())
    return src, tgt, caps


def _adapt(cfg: StoryConfig, out: Path, resume: bool) -> dict[str, Any]:
    from fmlab.engine import TensorSource
    from fmlab.experiments.story_eval import evaluate_stories
    from fmlab.experiments.textgan_data import embed_captions

    pre, vq, model = _pretrained(cfg)
    src, tgt, caps = story_examples(cfg, vq, "train", cfg.data.stories, seed=cfg.trainer.seed)
    n = _limit(len(tgt), cfg)
    emb = torch.from_numpy(embed_captions(caps[:n], cfg.data.encoder))
    prepare_adaptation(model, cfg.method)
    _fit(StoryObjective(model), TensorSource(tgt[:n], codes=tgt[:n], caption_emb=emb,
                                             source_codes=src[:n]),
         cfg, cfg.trainer, cfg.optim, out / "adapt_run", resume)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _save(model, out / "model", {"method": cfg.method, "trainable": trainable})
    res = evaluate_stories(cfg, vq, model, out)
    return {"stage": "adapt", "method": cfg.method, "examples": n, "trainable": trainable, **res}


def run_story(cfg: StoryConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run the config's stage into ``out``; returns (and writes) its record."""
    from fmlab.engine.config import save_config
    from fmlab.utils.io import write_json

    out = Path(out)
    if not resume and (out / "results.json").is_file():
        raise ConfigError(f"{out} already holds a finished story run; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    rec = _pretrain(cfg, out, resume) if cfg.stage == "pretrain" else _adapt(cfg, out, resume)
    rec = {"name": cfg.name, "seed": cfg.trainer.seed, "init": cfg.init, **rec}
    write_json(out / "results.json", rec)
    return rec
