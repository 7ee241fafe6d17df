"""DPTR workflow behind ``fmlab str``: align the towers, pre-train the decoder on text, fine-tune, evaluate.

1. ``align`` (the stand-in for CLIP): :class:`~fmlab.multimodal.strtowers.TowersObjective` on string
   images + transcriptions of a ``strings`` source with its OWN seed (other strings than the labelled
   ones of fine-tuning; the same training-pool objects, as CLIP saw the same kind of glyphs).
   Writes ``towers.safetensors`` + ``towers.json``.
2. ``pretrain``: :class:`~fmlab.multimodal.dptr.DPTRObjective` stage ``"pretrain"`` on the frozen text
   tower's tokens of random transcriptions (no image is rendered), with ORP from CIFAR-10 images through
   the frozen image tower (``orp.perturb``). The text corpus draws symbols uniformly, lengths uniformly
   in the source's ``min_len..max_len``.
3. ``finetune``: stage ``"finetune"`` on the image tower's column tokens of the first ``data.limit``
   strings; the decoder starts from a pretrain run (``--init RUN``) or fresh (``--init none``); the image
   tower stays frozen unless ``train_image_tower``.
4. ``eval``: greedy transcriptions of the test split; sequence and character accuracy (on symbol
   sequences, so multi-character class names count as one symbol) into the results store.

Run directories hold ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``; pretrain/finetune runs also
``str_model.safetensors`` (decoder, and the image tower when it was trained) + ``str_model.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.experiments.str_config import AlignConfig, DecoderSpec, FinetuneConfig, PretrainConfig, TowerSpec
from fmlab.data.synthetic.strings import TextStrings
from fmlab.multimodal.dptr import Frozen
from fmlab.utils.io import write_json

__all__ = ["TextStrings", "load_str_model", "run_align", "run_finetune", "run_pretrain", "run_str_eval"]


def open_strings(source: str, data_root: str | None = None, split: str = "train"):
    """``(split, vocab, max_len)`` of a ``strings`` spec."""
    from fmlab.data import open_source
    from fmlab.multimodal.textdecoder import CharVocab

    sp = open_source(source, data_root).split(split)
    return sp, CharVocab(sp.class_names, sep=sp.params.get("sep", "")), int(sp.params["max_len"])


def strings_batch(rendered: dict) -> dict[str, Any]:
    """The batch DPTR reads: ``images`` uint8 and ``labels`` int64 (-1 past the end)."""
    return {"images": torch.as_tensor(rendered["images"]), "labels": torch.as_tensor(rendered["labels"]).long()}


def _read_json(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))


def _load_weights(module: nn.Module, path: Path, strict: bool = True) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)), strict=strict)


# --------------------------------------------------------------------------- towers

def build_towers(spec: TowerSpec, vocab, max_len: int, height: int):
    from fmlab.multimodal.strtowers import ColumnImageTower, SymbolTextTower

    return (ColumnImageTower(spec.dim, height, spec.max_columns, spec.width, spec.heads),
            SymbolTextTower(vocab, spec.dim, max_len, spec.heads))


def run_align(cfg: AlignConfig, out: str | Path, resume: bool = False) -> dict:
    """Train the towers' CLIP stage; write ``towers.safetensors`` + ``towers.json`` into ``out``."""
    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import save_weights
    from fmlab.multimodal.strtowers import TowersObjective

    t0, out = time.perf_counter(), Path(out)
    sp, vocab, max_len = open_strings(cfg.data.source, cfg.data.data_root)
    torch.manual_seed(cfg.trainer.seed)
    img, txt = build_towers(cfg.towers, vocab, max_len, int(sp.params["height"]))
    obj = TowersObjective(img, txt, cfg.towers.temperature, cfg.towers.loss)
    src = RenderedSource(sp, strings_batch, cfg.data.limit)
    res = Trainer.from_config(obj, src, cfg, run_dir=out).fit(resume=out if resume else None)
    save_weights(nn.ModuleDict({"image_tower": img, "text_tower": txt}), out / "towers.safetensors")
    info = {"kind": "fmlab.str.towers", "towers": asdict(cfg.towers), "symbols": vocab.symbols, "sep": vocab.sep,
            "max_len": max_len, "height": int(sp.params["height"]), "data": cfg.data.source, "step": res.step}
    write_json(out / "towers.json", info)
    return {"step": res.step, **_last(res, ("loss", "i2t_acc")), "seconds": time.perf_counter() - t0}


def load_towers(run: str | Path):
    """``(image_tower, text_tower, info)`` of an align run (both in eval mode, frozen)."""
    from fmlab.multimodal.textdecoder import CharVocab

    run = Path(run)
    if not (run / "towers.json").is_file():
        raise ConfigError(f"towers: {run} has no towers.json (give a run directory of fmlab str align)")
    info = _read_json(run / "towers.json")
    vocab = CharVocab(info["symbols"], sep=info["sep"])
    img, txt = build_towers(TowerSpec(**info["towers"]), vocab, info["max_len"], info["height"])
    _load_weights(nn.ModuleDict({"image_tower": img, "text_tower": txt}), run / "towers.safetensors")
    return img.eval().requires_grad_(False), txt.eval().requires_grad_(False), info


# --------------------------------------------------------------------------- decoder runs

def _check_vocab(vocab, max_len: int, info: dict, what: str) -> None:
    if vocab.symbols != info["symbols"]:
        raise ConfigError(f"{what}: its symbols {vocab.symbols} differ from the towers' {info['symbols']}")
    if max_len > info["max_len"]:
        raise ConfigError(f"{what}: strings of up to {max_len} symbols exceed the model's max_len {info['max_len']}")


def orp_bank(source: str, size: int, tower: nn.Module, data_root: str | None = None) -> torch.Tensor:
    """ORP bank ``(M, D)``: the first ``size`` training images of ``source`` through the image tower."""
    from fmlab.data import open_source
    from fmlab.multimodal.strtowers import image_bank

    sp = open_source(source, data_root).split("train")
    return image_bank(tower, torch.as_tensor(sp.decode(np.arange(min(size, len(sp))))))


def _save_model(out: Path, decoder: nn.Module, image_tower: nn.Module | None, info: dict) -> None:
    from fmlab.engine.checkpoint import save_weights

    parts = {"decoder": decoder} | ({"image_tower": image_tower} if image_tower is not None else {})
    save_weights(nn.ModuleDict(parts), out / "str_model.safetensors")
    write_json(out / "str_model.json", {"kind": "fmlab.str.model", **info})


def _last(res, keys: tuple[str, ...] = ("loss", "token_acc")) -> dict:
    """The last logged values of ``keys`` (top level or in ``logs``)."""
    last = res.history[-1] if res.history else {}
    flat = {**last.get("logs", {}), **{k: v for k, v in last.items() if k != "logs"}}
    return {k: flat[k] for k in keys if k in flat}


def run_pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Pre-train the decoder on frozen text-tower tokens of random transcriptions (+ ORP)."""
    from fmlab.engine import Trainer
    from fmlab.multimodal.dptr import DPTRObjective
    from fmlab.multimodal.textdecoder import CharDecoder

    t0, out = time.perf_counter(), Path(out)
    img, txt, info = load_towers(cfg.towers)
    sp, vocab, max_len = open_strings(cfg.data.source, cfg.data.data_root)
    _check_vocab(vocab, max_len, info, "data.source")
    bank = orp_bank(cfg.orp.bank_source, cfg.orp.bank_size, img, cfg.data.data_root) if cfg.orp.perturb else None
    torch.manual_seed(cfg.trainer.seed)
    dec = CharDecoder(vocab.size, info["towers"]["dim"], info["max_len"], **asdict(cfg.decoder))
    obj = DPTRObjective(dec, vocab, stage="pretrain", text_tokens=Frozen(txt), image_bank=bank,
                        beta_max=cfg.orp.beta_max, perturb=cfg.orp.perturb)
    src = TextStrings(len(vocab.symbols), int(sp.params["min_len"]), max_len, cfg.data.limit or len(sp), sp.seed)
    res = Trainer.from_config(obj, src, cfg, run_dir=out).fit(resume=out if resume else None)
    _save_model(out, dec, None, {"stage": "pretrain", "towers": str(Path(cfg.towers).resolve()),
                                 "decoder": asdict(cfg.decoder), "perturb": cfg.orp.perturb,
                                 "data": cfg.data.source, "step": res.step})
    return {"step": res.step, **_last(res), "seconds": time.perf_counter() - t0}


def run_finetune(cfg: FinetuneConfig, out: str | Path, resume: bool = False) -> dict:
    """Fine-tune a decoder (``cfg.init``: a pretrain run, or ``"none"``: scratch) on labelled string images.

    With fewer labelled strings than ``trainer.batch_size`` the batch is the whole set (a warning says so).
    """
    import warnings

    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.engine import Trainer
    from fmlab.multimodal.dptr import DPTRObjective
    from fmlab.multimodal.textdecoder import CharDecoder

    t0, out, init = time.perf_counter(), Path(out), cfg.init
    spec, towers, weights = cfg.decoder, cfg.towers, None
    if init != "none":
        model = _model_info(init)
        spec, towers, weights = DecoderSpec(**model["decoder"]), model["towers"], Path(init) / "str_model.safetensors"
    if not towers:
        raise ConfigError("towers: --init none needs towers: <run directory of fmlab str align> in the config")
    img, _, info = load_towers(towers)
    sp, vocab, max_len = open_strings(cfg.data.source, cfg.data.data_root)
    _check_vocab(vocab, max_len, info, "data.source")
    torch.manual_seed(cfg.trainer.seed)
    dec = CharDecoder(vocab.size, info["towers"]["dim"], info["max_len"], **asdict(spec))
    if weights is not None:
        _load_weights(nn.ModuleDict({"decoder": dec}), weights, strict=False)
    enc = img.requires_grad_(True).train() if cfg.train_image_tower else Frozen(img)
    obj = DPTRObjective(dec, vocab, stage="finetune", image_encoder=enc)
    src = RenderedSource(sp, strings_batch, cfg.data.limit)
    if len(src) < cfg.trainer.batch_size:
        warnings.warn(f"trainer.batch_size: {cfg.trainer.batch_size} > {len(src)} labelled strings; "
                      f"using batches of {len(src)}", stacklevel=2)
        cfg.trainer.batch_size = len(src)
    res = Trainer.from_config(obj, src, cfg, run_dir=out).fit(resume=out if resume else None)
    _save_model(out, dec, img if cfg.train_image_tower else None, {
        "stage": "finetune", "towers": str(Path(towers).resolve()), "decoder": asdict(spec), "init": init,
        "train_image_tower": cfg.train_image_tower, "data": cfg.data.source, "limit": cfg.data.limit,
        "step": res.step})
    return {"step": res.step, **_last(res), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- evaluation

def _model_info(run: str | Path) -> dict:
    path = Path(run) / "str_model.json"
    if not path.is_file():
        raise ConfigError(f"--model/--init: {run} has no str_model.json (not a fmlab str pretrain/finetune run)")
    return _read_json(path)


def load_str_model(run: str | Path):
    """``(objective, info)``: a run's decoder reading its (frozen) image tower's tokens, in eval mode.

    A pretrain run is read the same way: its decoder, never fine-tuned, on image tokens (zero-shot).
    """
    from fmlab.multimodal.dptr import DPTRObjective
    from fmlab.multimodal.textdecoder import CharDecoder

    info = _model_info(run)
    img, _, tinfo = load_towers(info["towers"])
    from fmlab.multimodal.textdecoder import CharVocab

    vocab = CharVocab(tinfo["symbols"], sep=tinfo["sep"])
    dec = CharDecoder(vocab.size, tinfo["towers"]["dim"], tinfo["max_len"], **info["decoder"])
    parts = {"decoder": dec} | ({"image_tower": img} if info.get("train_image_tower") else {})
    _load_weights(nn.ModuleDict(parts), Path(run) / "str_model.safetensors")
    obj = DPTRObjective(dec, vocab, stage="finetune", image_encoder=img).eval()
    return obj, {**info, "symbols": tinfo["symbols"], "max_len": tinfo["max_len"]}


def symbol_codes(ids: torch.Tensor) -> list[str]:
    """One character per symbol (``chr(256 + class)``) of token ids ``(B, T)`` up to EOS, for the metrics.

    Examples:
        >>> [len(s) for s in symbol_codes(torch.tensor([[4, 5, 2, 0], [3, 2, 9, 9]]))]
        [2, 1]
    """
    from fmlab.multimodal.textdecoder import EOS, N_SPECIAL

    out = []
    for row in torch.as_tensor(ids).tolist():
        row = row[:row.index(EOS)] if EOS in row else row
        out.append("".join(chr(256 + t - N_SPECIAL) for t in row if t >= N_SPECIAL))
    return out


def run_str_eval(model: str | Path, data: str | None = None, split: str = "test", limit: int = 0,
                 data_root: str | None = None, db: Path | None = None, batch_size: int = 250) -> dict:
    """Greedy transcriptions of ``data``'s ``split`` (default: the run's source, test split).

    Returns:
        ``sequence_acc``, ``char_acc`` (1 - normalised edit distance over symbols), ``n_strings``,
        ``seconds`` and ``examples`` (the first 8 (true, predicted) transcriptions).
    """
    from fmlab.data.synthetic.batches import RenderedSource
    from fmlab.metrics.text_recognition import character_accuracy, sequence_accuracy
    from fmlab.multimodal.textdecoder import N_SPECIAL

    t0 = time.perf_counter()
    obj, info = load_str_model(model)
    data = data or info["data"]
    sp, vocab, max_len = open_strings(data, data_root, split)
    _check_vocab(vocab, max_len, info, "--data")
    batch = RenderedSource(sp, strings_batch, limit).render_all()
    ids = [obj.decoder.greedy(obj.memory({"images": batch["images"][s:s + batch_size]}))
           for s in range(0, len(batch["images"]), batch_size)]
    pred = sum((symbol_codes(i) for i in ids), [])
    true = symbol_codes(torch.where(batch["labels"] >= 0, batch["labels"] + N_SPECIAL, 0))
    texts = sum((vocab.decode(i) for i in ids), [])
    out = {"sequence_acc": sequence_accuracy(pred, true), "char_acc": character_accuracy(pred, true),
           "n_strings": len(true), "seconds": time.perf_counter() - t0,
           "examples": list(zip(vocab.labels_to_texts(batch["labels"][:8]), texts[:8], strict=True))}
    if db is not None:
        _record(db, model, info, data, split, sp.content_hash, out)
    return out


def _record(db: Path, model, info: dict, data: str, split: str, split_hash: str, out: dict) -> None:
    from fmlab.results import Protocol, ResultsStore

    method = "dptr_pretrain" if info["stage"] == "pretrain" else f"dptr_finetune_init_{Path(info['init']).name}"
    extra = {k: info.get(k) for k in ("stage", "init", "perturb", "limit", "train_image_tower", "towers")}
    records = [{"method": method, "metric": k, "value": float(out[k]), "seconds": out["seconds"],
                "extra": {**extra, "model": str(model)}} for k in ("sequence_acc", "char_acc")]
    ResultsStore(db).record("str", Protocol.of(data, split, split_hash=split_hash), records)
