"""VL-GPT (reduced) workflow behind ``fmlab vlgpt``: tokenizer, the causal VL model, caption, generate.

1. ``tokenizer``: :class:`~fmlab.multimodal.vlgpt_tokenizer.TokenizerObjective` on the training images
   (pixel MSE through K continuous embeddings of a frozen tower). Writes ``tokenizer.safetensors``
   (tokenizer with its frozen tower + detokenizer) and ``tokenizer.json``.
2. ``train``: the frozen tokenizer embeds the first ``data.limit`` training images ONCE (it is frozen,
   so this equals embedding them every step); :class:`~fmlab.multimodal.vlgpt.VLGPTObjective` trains
   the causal transformer on those embeddings and the images' captions (templated for labelled
   sources), in both orders. Writes ``vlgpt.safetensors`` (model + tokenizer + detokenizer: the run
   is self-contained) and ``vlgpt.json`` (specs, vocabulary, unigram counts' source).

Run directories also hold ``config.yaml``, ``metrics.jsonl`` and ``checkpoints/`` (``--resume``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.experiments.vlgpt_config import TokenizerSpec, TokenizerTrainConfig, VLGPTDataConfig, VLGPTSpec, \
    VLGPTTrainConfig
from fmlab.utils.io import write_json

__all__ = ["VLGPTBundle", "build_source", "load_tokenizer", "load_vlgpt", "run_tokenizer", "run_vlgpt_train"]


class _Limited:
    """The first ``limit`` samples of an engine source (its other attributes pass through)."""

    def __init__(self, source: Any, limit: int) -> None:
        self.source, self.n = source, min(limit, len(source)) if limit else len(source)

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict:
        return self.source.get_batch(indices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


class CachedCells:
    """Stage-1 source: the base batches plus the frozen tower's precomputed ``cells`` ``(N, h*w, C)``."""

    def __init__(self, source: Any, cells: torch.Tensor) -> None:
        self.source, self.cells = source, cells

    def __len__(self) -> int:
        return len(self.cells)

    def get_batch(self, indices: np.ndarray) -> dict:
        b = self.source.get_batch(indices)
        return {"images": b["images"], "cells": self.cells[torch.as_tensor(np.asarray(indices, dtype=np.int64))]}


class EmbeddedPairs:
    """Stage-2 source: precomputed image embeddings ``(N, K, D)`` with the base source's captions."""

    def __init__(self, source: Any, embeddings: torch.Tensor) -> None:
        self.source, self.embeddings, self.captions = source, embeddings, source.captions

    def __len__(self) -> int:
        return len(self.embeddings)

    def get_batch(self, indices: np.ndarray) -> dict:
        b = self.source.get_batch(indices)
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return {"image_tokens": self.embeddings[idx], "caption_ids": b["caption_ids"], "labels": b["labels"]}


def build_source(cfg: VLGPTDataConfig, split: str | None = None, limit: int | None = None):
    """The captioned source of ``cfg`` (``split`` defaults to ``cfg.split``), cut to its first ``limit``."""
    from fmlab.experiments.clip import ClipDataConfig, build_train_source

    clip_cfg = ClipDataConfig(source=cfg.source, split=split or cfg.split, classes=list(cfg.classes),
                              templates=list(cfg.templates), data_root=cfg.data_root)
    return _Limited(build_train_source(clip_cfg), cfg.limit if limit is None else limit)


def _image_geometry(src: Any) -> tuple[int, int]:
    """``(size, channels)`` of the source's images (square, multiple of 4)."""
    img = src.get_batch(np.arange(1))["images"]
    size, channels = int(img.shape[1]), (1 if img.ndim == 3 else int(img.shape[3]))
    if img.shape[1] != img.shape[2] or size % 4:
        raise ConfigError(f"data.source: images of {tuple(img.shape[1:3])} px; the detokenizer needs square "
                          "images whose side is a multiple of 4 (MNIST 28, CIFAR 32)")
    return size, channels


def build_tokenizer(spec: TokenizerSpec, size: int, channels: int):
    """``(tokenizer, detokenizer)`` of a spec (the tower loaded from ``spec.tower_weights``)."""
    from fmlab.models import create_backbone
    from fmlab.multimodal.vlgpt_tokenizer import ImageDetokenizer, ImageTokenizer

    weights = os.path.expandvars(spec.tower_weights) if spec.tower_weights else None
    tower = create_backbone(spec.tower, weights, seed=0)
    if not callable(getattr(getattr(tower, "trunk", None), "forward_map", None)):
        raise ConfigError(f"tokenizer.tower: {spec.tower} has no feature map (trunk.forward_map); "
                          "use resnet20_cifar or another resnet_cifar")
    tok = ImageTokenizer(tower, spec.num_tokens, spec.embed_dim, spec.width, spec.layers, spec.heads)
    return tok, ImageDetokenizer(spec.num_tokens, spec.embed_dim, size, channels, spec.decoder_width)


def _last(res: Any, keys: tuple[str, ...]) -> dict:
    last = res.history[-1] if res.history else {}
    flat = {**last.get("logs", {}), **{k: v for k, v in last.items() if k != "logs"}}
    return {k: float(flat[k]) for k in keys if k in flat}


def run_tokenizer(cfg: TokenizerTrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Stage 1: train the tokenizer/detokenizer; write ``tokenizer.safetensors`` + ``tokenizer.json``."""
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import save_weights
    from fmlab.multimodal.vlgpt_tokenizer import TokenizerObjective

    t0, out = time.perf_counter(), Path(out)
    src = build_source(cfg.data)
    size, channels = _image_geometry(src)
    torch.manual_seed(cfg.trainer.seed)
    tok, det = build_tokenizer(cfg.tokenizer, size, channels)
    obj = TokenizerObjective(tok, det)
    if cfg.cache_cells:  # the frozen tower runs once per image instead of once per step
        src = CachedCells(src, _map_batches(tok.cells, src))
    res = Trainer.from_config(obj, src, cfg, run_dir=out).fit(resume=out if resume else None)
    save_weights(nn.ModuleDict({"tokenizer": tok, "detokenizer": det}), out / "tokenizer.safetensors")
    write_json(out / "tokenizer.json", {"kind": "fmlab.vlgpt.tokenizer", "tokenizer": asdict(cfg.tokenizer),
                                        "size": size, "channels": channels, "data": asdict(cfg.data),
                                        "step": res.step})
    return {"step": res.step, **_last(res, ("loss", "psnr")), "seconds": time.perf_counter() - t0}


def _read_json(path: Path, kind: str, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what}: {path.parent} has no {path.name}")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("kind") != kind:
        raise ConfigError(f"{what}: {path} is not a {kind} file")
    return info


def _load_weights(module: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def load_tokenizer(run: str | Path):
    """``(tokenizer, detokenizer, info)`` of a tokenizer run, frozen and in eval mode."""
    run = Path(run)
    info = _read_json(run / "tokenizer.json", "fmlab.vlgpt.tokenizer", "tokenizer")
    spec = TokenizerSpec(**{**info["tokenizer"], "tower_weights": None})  # the file holds the tower too
    tok, det = build_tokenizer(spec, info["size"], info["channels"])
    _load_weights(nn.ModuleDict({"tokenizer": tok, "detokenizer": det}), run / "tokenizer.safetensors")
    return tok.eval().requires_grad_(False), det.eval().requires_grad_(False), info


@torch.no_grad()
def _map_batches(fn: Any, src: Any, batch_size: int = 256) -> torch.Tensor:
    """``fn(images)`` of every image of ``src``, concatenated."""
    return torch.cat([fn(src.get_batch(np.arange(i, min(i + batch_size, len(src))))["images"])
                      for i in range(0, len(src), batch_size)])


def embed_images(tokenizer: nn.Module, src: Any, batch_size: int = 256) -> torch.Tensor:
    """``(len(src), K, D)`` embeddings of every image of ``src`` (the frozen tokenizer, in eval mode)."""
    return _map_batches(tokenizer, src, batch_size)


def run_vlgpt_train(cfg: VLGPTTrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Stage 2: the causal VL transformer on the frozen tokenizer's embeddings of captioned images."""
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import save_weights
    from fmlab.multimodal.vlgpt import VLGPT, VLGPTObjective
    from fmlab.multimodal.vlgpt_text import WordVocab

    t0, out = time.perf_counter(), Path(out)
    tok, det, tinfo = load_tokenizer(cfg.tokenizer)
    src = build_source(cfg.data)
    size, channels = _image_geometry(src)
    if (size, channels) != (tinfo["size"], tinfo["channels"]):
        raise ConfigError(f"data.source: images {size} px x {channels} ch differ from the tokenizer's "
                          f"{tinfo['size']} px x {tinfo['channels']} ch")
    vocab = WordVocab.from_captions(src.captions)
    torch.manual_seed(cfg.trainer.seed)
    model = VLGPT(vocab.size, tok.num_tokens, tok.embed_dim, **asdict(cfg.model))
    obj = VLGPTObjective(model, vocab.encode_batch(src.captions), cfg.objective.image_loss_weight,
                         cfg.objective.image_loss)
    train = EmbeddedPairs(src, embed_images(tok, src))
    res = Trainer.from_config(obj, train, cfg, run_dir=out).fit(resume=out if resume else None)
    save_weights(nn.ModuleDict({"model": model, "tokenizer": tok, "detokenizer": det}), out / "vlgpt.safetensors")
    write_json(out / "vlgpt.json", {
        "kind": "fmlab.vlgpt.model", "model": asdict(cfg.model), "objective": asdict(cfg.objective),
        "tokenizer": tinfo, "tokenizer_run": str(Path(cfg.tokenizer).resolve()), "vocabulary": vocab.words,
        "data": asdict(cfg.data), "train_captions": list(src.captions), "step": res.step})
    return {"step": res.step, **_last(res, ("loss", "text_loss", "image_loss")),
            "seconds": time.perf_counter() - t0}


class VLGPTBundle:
    """A trained run, ready to caption and draw: ``model``, ``tokenizer``, ``detokenizer``, ``vocab``, ``info``."""

    def __init__(self, model, tokenizer, detokenizer, vocab, info: dict) -> None:
        self.model, self.tokenizer, self.detokenizer, self.vocab, self.info = model, tokenizer, detokenizer, vocab, info

    def caption(self, images: torch.Tensor, max_words: int = 16) -> list[str]:
        """Greedy captions of uint8 images."""
        with torch.no_grad():
            ids = self.model.caption(self.tokenizer(images), max_words)
        return [self.vocab.decode(r) for r in ids.tolist()]

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """``(N, L)`` ids; an empty caption or an unknown word raises DataError naming it."""
        from fmlab.multimodal.vlgpt_text import PAD

        rows = [self.vocab.encode(c, strict=True) for c in captions]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out

    def generate(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeddings (N, K, D), uint8 images)`` drawn from captions."""
        z = self.model.generate(self.encode_captions(captions))
        return z, self.detokenizer.to_uint8(z)


def load_vlgpt(run: str | Path) -> VLGPTBundle:
    """The :class:`VLGPTBundle` of a ``fmlab vlgpt train`` run directory."""
    from fmlab.multimodal.vlgpt import VLGPT
    from fmlab.multimodal.vlgpt_text import WordVocab

    run = Path(run)
    info = _read_json(run / "vlgpt.json", "fmlab.vlgpt.model", "--model")
    t = info["tokenizer"]
    tok, det = build_tokenizer(TokenizerSpec(**{**t["tokenizer"], "tower_weights": None}), t["size"], t["channels"])
    vocab = WordVocab(info["vocabulary"])
    model = VLGPT(vocab.size, tok.num_tokens, tok.embed_dim, **asdict(VLGPTSpec(**info["model"])))
    _load_weights(nn.ModuleDict({"model": model, "tokenizer": tok, "detokenizer": det}), run / "vlgpt.safetensors")
    return VLGPTBundle(model.eval(), tok.eval(), det.eval(), vocab, info)
