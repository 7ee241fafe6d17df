"""``fmlab text finetune``: sequence classification on a text backbone, through the engine.

One run = (model, task, seed):

1. the task's ``train`` split (a seeded ``--fraction`` / ``data.limit`` subset, the same for
   every seed) and its ``test`` split are loaded by :func:`fmlab.data.text.load_text`; the
   official ``dev`` splits are not used, so every task follows one protocol;
2. validation is drawn from train only (:func:`fmlab.data.text.validation_split`, stratified,
   ``data.val_fraction``, seeded by the run seed);
3. the backbone (:func:`fmlab.text.classifier.load_backbone`; ``random:`` draws its weights from
   the run seed) gets a seeded linear head and is trained by the engine
   (:class:`fmlab.engine.Trainer`, data order = its seeded sampler over
   :class:`fmlab.text.packing.ExampleSource`, dynamic padding);
4. at every ``eval_every_epochs``-th epoch end (and before training) the validation accuracy is
   measured; the best state (highest accuracy, ties by lower loss) is kept and restored — the
   early-stopping choice of epoch — and with ``patience`` > 0 training stops after that many
   evaluations without improvement;
5. the test split is scored once, with the restored state: accuracy and macro-F1 (mean of the
   per-class F1 over the classes present in the test labels or predictions, as scikit-learn's
   ``average="macro"``).

``results.json`` (one record per seed, with its protocol: model folder and weights sha256, task,
train/test split hashes, counts, seed), ``summary.md`` (mean ± std over seeds) and results-store
rows (task ``text_finetune``) are written to ``--out``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.errors import ConfigError

__all__ = ["TextFinetuneConfig", "TextFinetuneSettings", "macro_f1", "run_text_finetune"]

METRICS = ("accuracy", "macro_f1", "val_accuracy")
DEFAULT_MAX_LENGTH = 128


@dataclass
class FinetuneData:
    """The ``data`` section."""

    limit: int | None = None  # training records (seeded subset, the same for every seed)
    max_length: int | None = None  # tokens per example (specials included); None: min(128, positions)
    val_fraction: float = 0.1  # of the training records, per class
    max_test: int | None = None  # score a seeded subset of the test split (smoke runs)

    def validate(self, prefix: str = "data") -> None:
        from fmlab.utils.validation import check

        check(self.limit is None or self.limit >= 2, f"{prefix}.limit", self.limit, "must be >= 2")
        check(self.max_length is None or self.max_length >= 2, f"{prefix}.max_length",
              self.max_length, "must be >= 2")
        check(0 < self.val_fraction < 1, f"{prefix}.val_fraction", self.val_fraction,
              "must be in (0, 1)")
        check(self.max_test is None or self.max_test >= 1, f"{prefix}.max_test", self.max_test,
              "must be >= 1")


def _trainer_defaults() -> TrainerConfig:
    return TrainerConfig(epochs=5, batch_size=32, log_every=50, progress=False, tensorboard=False)


@dataclass
class PromptSettings:
    """The ``prompt`` section (``classifier: prompt``; :mod:`fmlab.text.prompt`)."""

    template: str = "{text} it was [MASK] ."
    label_words: list[str] = field(default_factory=list)  # one single-token word per label id

    def validate(self, prefix: str = "prompt") -> None:
        from fmlab.text.prompt import split_template

        split_template(self.template)


@dataclass
class TextFinetuneSettings:
    """Training settings of ``fmlab text finetune`` (``--config`` YAML, ``--set KEY=VALUE``)."""

    trainer: TrainerConfig = field(default_factory=_trainer_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_epochs=0.1))
    data: FinetuneData = field(default_factory=FinetuneData)
    pool: str = "auto"  # auto | cls | mean (fmlab.text.classifier)
    head_dropout: float = 0.1
    eval_every_epochs: int = 1
    patience: int = 0  # stop after this many evaluations without improvement; 0: never
    eval_batch_size: int = 128
    classifier: str = "linear"  # linear: a head on the pooled backbone; prompt: label words via the MLM head
    prompt: PromptSettings = field(default_factory=PromptSettings)

    def validate(self, prefix: str = "") -> None:
        from fmlab.utils.validation import check

        check(self.classifier in ("linear", "prompt"), "classifier", self.classifier,
              "must be linear or prompt")
        check(self.classifier != "prompt" or len(self.prompt.label_words) >= 2,
              "prompt.label_words", self.prompt.label_words,
              "needs one word per label (classifier: prompt)")

        check(self.pool in ("auto", "cls", "mean"), "pool", self.pool, "must be auto, cls or mean")
        check(0 <= self.head_dropout < 1, "head_dropout", self.head_dropout, "must be in [0, 1)")
        check(self.eval_every_epochs >= 1, "eval_every_epochs", self.eval_every_epochs, "must be >= 1")
        check(self.patience >= 0, "patience", self.patience, "must be >= 0")
        check(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "must be >= 1")


@dataclass
class TextFinetuneConfig:
    """One ``fmlab text finetune`` call."""

    model: str  # RUN_DIR/model or random:RUN_DIR/model
    task: str  # a labelled text source
    out: Path
    seeds: list[int]
    settings: TextFinetuneSettings
    fraction: float | None = None
    data_root: str | None = None
    db: Path | None = None
    save_classifier: bool = False  # keep RUN/seed{s}/classifier.safetensors (the restored best state)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class F1 over the classes in ``y_true`` or ``y_pred``.

    Examples:
        >>> macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
        0.7333333333333334
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp, fn = np.sum((y_pred == c) & (y_true != c)), np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _load_task(cfg: TextFinetuneConfig) -> tuple[Any, Any]:
    """(train, test) TextData of the task, with ``--fraction`` / ``data.limit`` applied."""
    from fmlab.data.text import load_text

    d = cfg.settings.data
    full = load_text(cfg.task, "train", data_root=cfg.data_root)
    if full.labels is None:
        raise ConfigError(f"--task {cfg.task}: the source has no labels; fine-tuning needs a "
                          "labelled text source (sst2, chemprot, pico, medabs, jsonl:PATH)")
    limit = d.limit
    if cfg.fraction is not None:
        if not 0 < cfg.fraction <= 1:
            raise ConfigError(f"--fraction: {cfg.fraction} must be in (0, 1]")
        limit = min(limit or len(full), max(2, round(cfg.fraction * len(full))))
    train = full if limit is None or limit >= len(full) else \
        load_text(cfg.task, "train", data_root=cfg.data_root, limit=limit)
    test = load_text(cfg.task, "test", data_root=cfg.data_root, limit=d.max_test)
    if test.label_names != train.label_names:
        raise ConfigError(f"--task {cfg.task}: the test split's label set {test.label_names} "
                          f"differs from train's {train.label_names}")
    return train, test


def _resolve_length(settings: TextFinetuneSettings, model: torch.nn.Module, spec: str) -> None:
    """Fill ``data.max_length`` (default: min(128, the model's positions)); refuse one above the
    model's positions, naming both."""
    from fmlab.text.classifier import model_positions

    pos = model_positions(model)
    if settings.data.max_length is None:
        settings.data.max_length = min(DEFAULT_MAX_LENGTH, pos or DEFAULT_MAX_LENGTH)
    elif pos is not None and settings.data.max_length > pos:
        raise ConfigError(f"data.max_length: {settings.data.max_length} is above the "
                          f"{pos} positions of --model {spec}; use --set data.max_length={pos}")


def run_text_finetune(cfg: TextFinetuneConfig, data: tuple[Any, Any] | None = None
                      ) -> list[dict[str, Any]]:
    """Fine-tune ``cfg.model`` on ``cfg.task`` once per seed; write results (module doc).

    Args:
        cfg: the experiment.
        data: ``(train, test)`` :class:`~fmlab.data.text.TextData` to use instead of the task's
            splits (a study's own split, e.g. a domain shift: train on the source domain, test
            on the target); ``cfg.task`` then only names them in the records.

    Returns:
        One record per seed (as in ``results.json``).
    """
    from fmlab.text.classifier import load_backbone
    from fmlab.text.finetune_run import finetune_one, write_outputs
    from fmlab.text.packing import encode_examples

    if not cfg.seeds:
        raise ConfigError("--seeds: give at least one seed")
    probe = load_backbone(cfg.model, init_seed=cfg.seeds[0])  # fail fast on a bad model
    _resolve_length(cfg.settings, probe.model, cfg.model)
    train, test = _load_task(cfg) if data is None else data
    tok, max_len = probe.tokenizer, cfg.settings.data.max_length
    if cfg.settings.classifier == "prompt":
        from fmlab.text.prompt import encode_prompted, label_word_ids

        label_word_ids(tok, cfg.settings.prompt.label_words)  # fail fast on a bad label word
        if len(cfg.settings.prompt.label_words) != len(train.label_names):
            raise ConfigError(f"prompt.label_words: {cfg.settings.prompt.label_words} for the "
                              f"{len(train.label_names)} labels {train.label_names}")
        t = cfg.settings.prompt.template
        train_ex = encode_prompted(train.texts, tok, max_len, t, train.labels)
        test_ex = encode_prompted(test.texts, tok, max_len, t, test.labels)
    else:
        train_ex = encode_examples(train.texts, tok, max_len, train.labels)
        test_ex = encode_examples(test.texts, tok, max_len, test.labels)
    records = []
    for seed in cfg.seeds:
        t0 = time.perf_counter()
        rec = finetune_one(cfg, seed, train, train_ex, test_ex, cfg.out / f"seed{seed}")
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        records.append(rec)
    write_outputs(cfg, probe, train, test, records)
    return records


def steps_per_epoch(n_train: int, trainer: TrainerConfig) -> int:
    """Optimiser steps in one epoch of ``n_train`` examples (the engine drops the last partial)."""
    return max(1, n_train // (trainer.batch_size * trainer.accumulate))


def epochs_of(step: int, n_train: int, trainer: TrainerConfig) -> float:
    """Epochs completed after ``step`` steps."""
    return round(step / steps_per_epoch(n_train, trainer), 3) if step else 0.0


def summary_markdown(records: list[dict[str, Any]], cfg: TextFinetuneConfig) -> str:
    """``summary.md``: test accuracy and macro-F1, mean ± std over seeds, with the protocol."""
    acc = np.array([r["accuracy"] for r in records]) * 100
    f1 = np.array([r["macro_f1"] for r in records]) * 100
    val = np.array([r["val_accuracy"] for r in records]) * 100
    r0 = records[0]
    lines = [f"# fmlab text finetune: {cfg.model} on {cfg.task}", "",
             f"Test split: {r0['n_test']} records (split hash {r0['test_split_hash'][:16]}); "
             f"training on {r0['n_train']} and validating on {r0['n_val']} records of the train "
             f"split; seeds {cfg.seeds}; pooling {r0['pool']}; the state kept is the best on "
             "validation.", "",
             "| model | task | accuracy % | macro-F1 % | val accuracy % | best epoch | seconds |",
             "|---|---|---|---|---|---|---|",
             f"| {cfg.model} | {cfg.task} | {acc.mean():.2f} ± {acc.std():.2f} | "
             f"{f1.mean():.2f} ± {f1.std():.2f} | {val.mean():.2f} | "
             f"{np.mean([r['best_epoch'] for r in records]):.1f} | "
             f"{np.mean([r['seconds'] for r in records]):.1f} |", "",
             "std: population standard deviation over seeds (numpy's default).", ""]
    return "\n".join(lines)

