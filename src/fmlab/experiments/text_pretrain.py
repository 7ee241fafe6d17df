"""The text pre-training experiment behind ``fmlab text pretrain``: config -> texts, tokenizer,
packed blocks, objective (which builds its HF model) -> :class:`fmlab.engine.Trainer` ->
``RUN_DIR/model`` that plain ``transformers`` loads.

What the run fills in, never the config: the tokenizer (trained on the training texts at the
start of the run with ``tokenizer.kind`` — default the objective's kind — and saved in
``RUN_DIR/tokenizer`` so a resumed run reuses it; or loaded from ``tokenizer.path``), the model
size dict (``model``), and the masking units the objective declares (:meth:`unit_spec`).

Data: ``data.source``'s ``data.split`` texts (:func:`fmlab.data.text.load_text`, the first
``data.limit``), packed into blocks of ``data.block_size`` (:func:`fmlab.text.packing.pack_blocks`,
or :func:`fmlab.text.units.pack_with_units` when the objective needs units). The engine's seeded
sampler orders them, so ``--resume`` is exact.

RUN_DIR ends with ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``tokenizer/`` and
``model/`` (``save_pretrained`` of the model with its pre-training head, tokenizer included),
plus what the objective adds (ELECTRA ``generator/``, ERNIE ``nlg.safetensors``) and
``pretrain.json`` (objective, steps, data hash, weights sha256).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from fmlab.engine.config import expand_path
from fmlab.errors import ConfigError, DataError
from fmlab.experiments.text_pretrain_config import (
    TextPretrainConfig,
    load_text_pretrain_config,
    text_objective_class,
)

__all__ = ["build_text_pretrain", "load_run_tokenizer", "load_text_pretrain_config",
           "load_init_weights", "run_text_pretrain", "text_source"]


def load_run_tokenizer(cfg: TextPretrainConfig, texts: list[str], run_dir: Path | None,
                       kind: str) -> Any:
    """The run's tokenizer: ``tokenizer.path``, else ``init``'s (continued pre-training), else
    ``RUN_DIR/tokenizer`` (a resumed run),
    else one trained on ``texts`` (seed ``trainer.seed``) and saved to ``RUN_DIR/tokenizer``."""
    from transformers import PreTrainedTokenizerFast

    path = expand_path(cfg.tokenizer.path, "tokenizer.path")
    if path is None and cfg.init is not None:  # continued pre-training keeps the vocabulary
        path = expand_path(cfg.init, "init")
    if path is None and run_dir is not None and (run_dir / "tokenizer" / "tokenizer.json").is_file():
        path = str(run_dir / "tokenizer")
    if path is not None:
        if not (Path(path) / "tokenizer.json").is_file():
            raise ConfigError(f"tokenizer.path: {path} has no tokenizer.json")
        return PreTrainedTokenizerFast.from_pretrained(path)
    from fmlab.text.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, kind=cfg.tokenizer.kind or kind, vocab_size=cfg.tokenizer.vocab_size,
                          seed=cfg.trainer.seed, lowercase=cfg.tokenizer.lowercase)
    if run_dir is not None:
        tok.save_pretrained(str(run_dir / "tokenizer"))
    return tok


def text_source(obj: Any, texts: list[str], tokenizer: Any, block_size: int) -> Any:
    """The engine source: packed blocks, with ``units`` when the objective declares them."""
    spec = obj.unit_spec()
    if spec is None:
        from fmlab.text.packing import BlockSource, pack_blocks

        return BlockSource(pack_blocks(texts, tokenizer, block_size))
    from fmlab.text.units import UnitBlockSource, pack_with_units

    ids, units = pack_with_units(texts, tokenizer, block_size, spec)
    return UnitBlockSource(ids, units=units)


def build_text_pretrain(cfg: TextPretrainConfig, texts: list[str] | None, run_dir: Path | None
                        ) -> tuple[Any, Any, Any]:
    """Tokenizer, objective (model seeded from ``trainer.seed``) and training source.

    Args:
        cfg: the run's config.
        texts: the training texts (None: ``data.source``'s).
        run_dir: where a trained tokenizer is saved (and found again on resume).

    Returns:
        ``(tokenizer, objective, engine source)``.

    Raises:
        ConfigError: a block longer than the model's positions, a bad size or tokenizer.
        DataError: an empty corpus.
    """
    import torch

    from fmlab.text.models import model_max_positions

    texts = texts if texts is not None else list(_load_texts(cfg).texts)
    if not [t for t in texts if t.strip()]:
        raise DataError(f"data.source: {cfg.data.source}:{cfg.data.split} has no text")
    cls = text_objective_class(cfg.objective.name)
    tok = load_run_tokenizer(cfg, texts, run_dir, cls.tokenizer_kind)
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.objective).items() if k != "name"}
    torch.manual_seed(cfg.trainer.seed)
    try:
        obj = cls(tokenizer=tok, size=cfg.model.size(), **kwargs)
    except ConfigError as e:
        raise ConfigError(f"objective ({cfg.objective.name}): {e}") from None
    if cfg.init is not None:
        load_init_weights(obj.model, cfg.init, len(tok))
    limit = model_max_positions(obj.model)
    need = cfg.data.block_size + obj.extra_positions()
    if limit is not None and need > limit:
        extra = f" + {obj.extra_positions()} added by {cfg.objective.name}" if obj.extra_positions() else ""
        raise ConfigError(f"data.block_size: {cfg.data.block_size}{extra} is above the model's "
                          f"{limit} positions (model.max_positions)")
    return tok, obj, text_source(obj, texts, tok, cfg.data.block_size)


def load_init_weights(model: Any, init: str, vocab_size: int) -> None:
    """Continued pre-training: copy ``init/model.safetensors`` (a saved ``RUN_DIR/model``) into
    ``model``, every tensor by name and shape (all must fit), so a continued run starts exactly where
    the earlier one ended. The vocabulary must be the earlier run's (``tokenizer.path``).

    Raises:
        ConfigError: no such file, or the saved model does not fit (architecture, size, vocabulary).
    """
    from safetensors.torch import load_file

    path = expand_path(init, "init")
    file = Path(path) / "model.safetensors"
    if not file.is_file():
        raise ConfigError(f"init: {path} has no model.safetensors (give a RUN_DIR/model folder)")
    state = load_file(str(file))
    own = model.state_dict()
    bad = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    # tied tensors (the MLM decoder is the word embedding) are saved once, under one name
    kept = {own[k].data_ptr() for k in state if k in own}
    missing = sorted(k for k in set(own) - set(state) if own[k].data_ptr() not in kept)
    extra = sorted(set(state) - set(own))
    if bad or missing or extra:
        what = (f"shapes differ for {bad[:3]}" if bad else
                f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}")
        raise ConfigError(f"init: {file} does not fit this model ({what}); use the same model "
                          f"sizes and the earlier run's tokenizer (tokenizer.path, vocabulary "
                          f"{vocab_size} here)")
    model.load_state_dict(state, strict=False)


def _load_texts(cfg: TextPretrainConfig) -> Any:
    from fmlab.data.text import load_text

    # the split (and the limit subset) is a data property: the training seed does not change it
    return load_text(cfg.data.source, cfg.data.split, data_root=cfg.data.data_root,
                     limit=cfg.data.limit or None)


def run_text_pretrain(cfg: TextPretrainConfig, out: str | os.PathLike, resume: bool = False,
                      texts: list[str] | None = None) -> dict[str, Any]:
    """Train ``cfg`` into a run directory and save ``RUN_DIR/model``.

    Args:
        cfg: the run's config (:func:`load_text_pretrain_config`).
        out: the run directory (refused when it already holds checkpoints, unless resuming).
        resume: continue the last checkpoint in ``out``.
        texts: training texts (default: ``data.source``'s).

    Returns:
        The ``pretrain.json`` record (plus ``resumed_from``).
    """
    from fmlab.engine import Trainer
    from fmlab.engine.checkpoint import latest_checkpoint
    from fmlab.utils.io import sha256_file, sha256_json, write_json

    run_dir = Path(out)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run with checkpoints; continue it with "
                          f"--resume {run_dir} or choose a new --out")
    data = None
    if texts is None:
        data = _load_texts(cfg)
        texts = list(data.texts)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok, obj, source = build_text_pretrain(cfg, texts, run_dir)
    trainer = Trainer.from_config(obj, source, cfg, run_dir=run_dir)
    res = trainer.fit(resume=run_dir if resume else None)
    paths = obj.save_pretrained(run_dir, tok)
    losses = [r["loss"] for r in res.history if "loss" in r]
    rec = {"objective": cfg.objective.name, "arch": type(obj.model).__name__,
           "step": res.step, "max_steps": res.max_steps, "blocks": len(source),
           "block_size": cfg.data.block_size, "tokens_seen": res.step * cfg.trainer.batch_size
           * cfg.trainer.accumulate * cfg.data.block_size,
           "source": cfg.data.source, "split": cfg.data.split,
           "split_hash": getattr(data, "split_hash", None) or sha256_json(texts),
           "vocab_size": len(tok), "paths": paths, "init": cfg.init,
           "weights_sha256": sha256_file(Path(paths["model"]) / "model.safetensors"),
           "last_loss": losses[-1] if losses else None}
    write_json(run_dir / "pretrain.json", rec)
    return {**rec, "resumed_from": res.resumed_from}
