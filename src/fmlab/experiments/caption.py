"""Workflow of ``fmlab caption train`` and ``fmlab caption eval`` (CgT-GAN, papers.md #14, reduced).

Stages (each an engine run with ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``--resume``):

1. ``clip``: the mini image-text model on the paired ``clip`` block → ``clip.safetensors`` +
   ``clip.json`` (vocabulary, model spec, data section);
2. ``lm``: the reference word LM on the ``lm`` block's captions → ``lm.safetensors`` + ``lm.json``;
3. ``cgt``: the captioner on the ``images`` block (embeddings of the frozen image tower, computed
   once) and the ``corpus`` sentences → ``captioner.safetensors`` (decoder + its frozen mini-CLIP:
   a self-contained run) + ``captioner.json``.

``eval`` decodes the test images greedily and reports BLEU-4 and CIDEr-D against the held-out
reference phrasings, per-word perplexity of the captions under the reference LM, and how often the
caption's number word is the image's class.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.caption.data import CaptionSplits, attribute_accuracy, build_caption_splits, digit_word_of
from fmlab.caption.models import CaptionDecoder, MiniClip, TextDiscriminator
from fmlab.errors import ConfigError
from fmlab.experiments.caption_config import CaptionDataConfig, CaptionTrainConfig
from fmlab.utils.io import write_json

__all__ = ["CaptionerBundle", "evaluate_captioner", "load_captioner", "load_clip", "load_splits",
           "run_caption_train"]


class Rows:
    """An engine source over aligned tensors (any names; ``get_batch`` returns the rows)."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return {k: t[idx] for k, t in self.tensors.items()}


@lru_cache(maxsize=2)
def _splits_cached(key: str) -> CaptionSplits:
    from fmlab.data import open_source

    d = CaptionDataConfig(**json.loads(key))
    src = open_source(d.source, d.data_root)
    tr, te = src.split("train"), src.split("test")
    return build_caption_splits(tr.get_batch(np.arange(len(tr))), tr.labels, te.get_batch(np.arange(len(te))),
                                te.labels, d.sizes(), d.test_images, d.split_seed)


def load_splits(data: CaptionDataConfig) -> CaptionSplits:
    """The captioned blocks of ``data`` (cached per process: several runs share one build)."""
    return _splits_cached(json.dumps(asdict(data), sort_keys=True))


def _encode(vocab: Any, captions: list[str], max_len: int) -> torch.Tensor:
    ids = vocab.encode_batch(captions)
    if ids.shape[1] > max_len:
        raise ConfigError(f"data.max_len: captions have up to {ids.shape[1]} tokens (EOS included), "
                          f"max_len is {max_len}")
    return torch.nn.functional.pad(ids, (0, max_len - ids.shape[1]))


def _read_info(run: str | Path, name: str, kind: str) -> dict:
    path = Path(run) / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"{run}: no {name}.json (not a finished fmlab caption train run of stage "
                          f"{kind.rsplit('.', 1)[-1]})")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("kind") != kind:
        raise ConfigError(f"{path}: not a {kind} file")
    return info


def _load_weights(module: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))
    return module.eval().requires_grad_(False)


def load_clip(run: str | Path) -> tuple[MiniClip, Any, dict]:
    """``(frozen mini image-text model, WordVocab, clip.json)`` of a clip-stage run."""
    from fmlab.multimodal.vlgpt_text import WordVocab

    info = _read_info(run, "clip", "fmlab.caption.clip")
    vocab = WordVocab(info["vocab"])
    clip = MiniClip(vocab.size, **info["clip_model"])
    return _load_weights(clip, Path(run) / "clip.safetensors"), vocab, info


def _same_data(cfg: CaptionTrainConfig, info: dict) -> None:
    ours = asdict(cfg.data)
    diff = [k for k in ours if k != "data_root" and ours[k] != info["data"].get(k)]
    if diff:
        raise ConfigError(f"data.{diff[0]}: {ours[diff[0]]!r} differs from the clip run's "
                          f"{info['data'].get(diff[0])!r} ({cfg.clip}); the blocks must be the same")


def _fit(obj: nn.Module, src: Rows, cfg: CaptionTrainConfig, out: Path, resume: bool, optim: Any = None):
    from fmlab.engine import Trainer

    trainer = Trainer(obj, src, cfg.trainer, optim or cfg.optim, cfg.schedule, run_dir=out, config=cfg)
    return trainer.fit(resume=out if resume else None)


def _last_logs(res: Any) -> dict[str, float]:
    last = res.history[-1] if res.history else {}
    return {k: float(v) for k, v in last.get("logs", {}).items()}


def _run_clip(cfg: CaptionTrainConfig, out: Path, resume: bool) -> dict:
    from fmlab.caption.objectives import ClipObjective
    from fmlab.engine.checkpoint import save_weights
    from fmlab.multimodal.vlgpt_text import WordVocab

    sp = load_splits(cfg.data)
    vocab = WordVocab.from_captions(sp.captions["clip"] + sp.captions["corpus"] + sp.captions["lm"])
    torch.manual_seed(cfg.trainer.seed)
    clip = MiniClip(vocab.size, cfg.clip_model.dim, cfg.clip_model.width)
    src = Rows(images=torch.as_tensor(sp.images["clip"]),
               caption_ids=_encode(vocab, sp.captions["clip"], cfg.data.max_len))
    res = _fit(ClipObjective(clip), src, cfg, out, resume)
    save_weights(clip, out / "clip.safetensors")
    write_json(out / "clip.json", {"kind": "fmlab.caption.clip", "vocab": vocab.words,
                                   "clip_model": asdict(cfg.clip_model), "data": asdict(cfg.data),
                                   "step": res.step})
    return {"step": res.step, **_last_logs(res)}


def _run_lm(cfg: CaptionTrainConfig, out: Path, resume: bool) -> dict:
    from fmlab.caption.objectives import LMObjective
    from fmlab.engine.checkpoint import save_weights

    _, vocab, info = load_clip(cfg.clip)
    _same_data(cfg, info)
    sp = load_splits(cfg.data)
    torch.manual_seed(cfg.trainer.seed)
    lm = CaptionDecoder(vocab.size, 1, cfg.captioner.hidden, cfg.captioner.embed, cfg.data.max_len)
    ids = _encode(vocab, sp.captions["lm"], cfg.data.max_len)
    res = _fit(LMObjective(lm), Rows(caption_ids=ids), cfg, out, resume)
    save_weights(lm, out / "lm.safetensors")
    write_json(out / "lm.json", {"kind": "fmlab.caption.lm", "vocab": vocab.words,
                                 "captioner": asdict(cfg.captioner), "max_len": cfg.data.max_len,
                                 "clip": str(cfg.clip), "step": res.step})
    return {"step": res.step, **_last_logs(res)}


@torch.no_grad()
def _embed_images(clip: MiniClip, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    x = torch.as_tensor(images)
    return torch.cat([clip.encode_image(x[i:i + batch]) for i in range(0, len(x), batch)])


def _run_cgt(cfg: CaptionTrainConfig, out: Path, resume: bool) -> dict:
    from fmlab.caption.objectives import CgTObjective
    from fmlab.engine.checkpoint import save_weights

    clip, vocab, info = load_clip(cfg.clip)
    _same_data(cfg, info)
    sp = load_splits(cfg.data)
    feats = _embed_images(clip, sp.images["images"])  # frozen tower: once, not every step
    torch.manual_seed(cfg.trainer.seed)
    decoder = CaptionDecoder(vocab.size, feats.shape[1], cfg.captioner.hidden, cfg.captioner.embed,
                             cfg.data.max_len)
    r = cfg.reward
    disc = TextDiscriminator(vocab.size, r.disc_hidden) if r.lam < 1.0 else None
    obj = CgTObjective(decoder, clip, disc, _encode(vocab, sp.captions["corpus"], cfg.data.max_len),
                       r.semantic, r.lam, r.tau, r.top_k, r.warmup_steps, r.warmup_noise)
    res = _fit(obj, Rows(feats=feats), cfg, out, resume, optim={"g": cfg.optim, "d": cfg.optim_d})
    save_weights(nn.ModuleDict({"clip": clip, "decoder": decoder}), out / "captioner.safetensors")
    write_json(out / "captioner.json", {"kind": "fmlab.caption.captioner", "vocab": vocab.words,
                                        "clip_model": info["clip_model"], "captioner": asdict(cfg.captioner),
                                        "reward": asdict(r), "data": asdict(cfg.data),
                                        "clip": str(cfg.clip), "step": res.step})
    return {"step": res.step, **_last_logs(res)}


def run_caption_train(cfg: CaptionTrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Run the stage ``cfg.stage`` into ``out``; returns its last logs, ``step`` and ``seconds``."""
    t0, out = time.perf_counter(), Path(out)
    run = {"clip": _run_clip, "lm": _run_lm, "cgt": _run_cgt}[cfg.stage]
    return {**run(cfg, out, resume), "seconds": time.perf_counter() - t0}


class CaptionerBundle:
    """A trained captioner: ``encoder`` (h: images in [0, 1] → embedding), ``decoder``, ``vocab``."""

    def __init__(self, clip: MiniClip, decoder: CaptionDecoder, vocab: Any, info: dict) -> None:
        self.clip, self.decoder, self.vocab, self.info = clip, decoder, vocab, info

    def encoder(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)

    @torch.no_grad()
    def greedy_ids(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder.sample(self.encoder(images), greedy=True)[0]

    def caption(self, images: torch.Tensor | np.ndarray) -> list[str]:
        ids = self.greedy_ids(torch.as_tensor(images))
        return [self.vocab.decode(row.tolist()) for row in ids]


def load_captioner(run: str | Path) -> CaptionerBundle:
    """The frozen captioner of a ``cgt`` run."""
    from fmlab.multimodal.vlgpt_text import WordVocab

    info = _read_info(run, "captioner", "fmlab.caption.captioner")
    vocab = WordVocab(info["vocab"])
    clip = MiniClip(vocab.size, **info["clip_model"])
    c = info["captioner"]
    decoder = CaptionDecoder(vocab.size, info["clip_model"]["dim"], c["hidden"], c["embed"], info["data"]["max_len"])
    _load_weights(nn.ModuleDict({"clip": clip, "decoder": decoder}), Path(run) / "captioner.safetensors")
    return CaptionerBundle(clip, decoder, vocab, info)


def load_lm(run: str | Path) -> tuple[CaptionDecoder, list[str]]:
    """``(reference LM, its vocabulary words)`` of an ``lm`` run."""
    from fmlab.multimodal.vlgpt_text import WordVocab

    info = _read_info(run, "lm", "fmlab.caption.lm")
    c = info["captioner"]
    lm = CaptionDecoder(WordVocab(info["vocab"]).size, 1, c["hidden"], c["embed"], info["max_len"])
    return _load_weights(lm, Path(run) / "lm.safetensors"), info["vocab"]


@torch.no_grad()
def lm_perplexity(lm: CaptionDecoder, ids: torch.Tensor) -> float:
    """Per-token perplexity of caption ids (EOS included) under the reference LM."""
    logp, mask = lm.token_logp(torch.zeros(len(ids), 1), ids)
    return math.exp(-float(logp.sum() / mask.sum().clamp_min(1.0)))


def evaluate_captioner(run: str | Path, lm_run: str | Path | None, limit: int = 0) -> dict:
    """BLEU-4, CIDEr-D, reference-LM perplexity and digit-word accuracy on the test images."""
    from fmlab.experiments.caption_config import CaptionDataConfig
    from fmlab.metrics.captioning import caption_scores

    bundle = load_captioner(run)
    sp = load_splits(CaptionDataConfig(**bundle.info["data"]))
    n = len(sp.labels["test"]) if limit <= 0 else min(limit, len(sp.labels["test"]))
    ids = bundle.greedy_ids(torch.as_tensor(sp.images["test"][:n]))
    caps = [bundle.vocab.decode(r.tolist()) for r in ids]
    out: dict[str, Any] = {"run": str(run), "images": n,
                           **caption_scores(caps, sp.references[:n])}
    if lm_run:
        lm, words = load_lm(lm_run)
        if words != bundle.vocab.words:
            raise ConfigError(f"--lm {lm_run}: its vocabulary differs from the captioner's")
        out["perplexity"] = lm_perplexity(lm, ids)
    digits = np.array([digit_word_of(c) for c in caps])
    out["digit_acc"] = float((digits == sp.labels["test"][:n]).mean())
    for k, v in attribute_accuracy(caps, {a: w[:n] for a, w in sp.test_words.items()}).items():
        out[f"{k}_acc"] = v
    out["distinct_captions"] = len(set(caps))
    out["examples"] = [[sp.references[i][0], caps[i]] for i in range(min(8, n))]
    return out


def caption_sheet(bundle: CaptionerBundle, images: np.ndarray, path: str | Path, title: str) -> None:
    """A PNG grid of images with their greedy captions (wrapped under each image)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = bundle.caption(images)
    cols = 4
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.1 * rows))
    for ax, img, cap in zip(np.atleast_1d(axes).ravel(), images, caps):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title("\n".join(textwrap.wrap(cap, 26)), fontsize=8)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from fmlab.utils.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
