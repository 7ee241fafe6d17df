"""One seed of ``fmlab text finetune`` and the files of the whole call (see
:mod:`fmlab.text.finetune` for the protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fmlab.engine.callbacks import Callback
from fmlab.engine.monitors import ValidationMonitor

__all__ = ["EarlyStopping", "TrackedValidation", "finetune_one", "predict_test", "write_outputs"]


class TrackedValidation(ValidationMonitor):
    """A :class:`~fmlab.engine.monitors.ValidationMonitor` that also counts the evaluations
    since the best one (for :class:`EarlyStopping`) and keeps every evaluation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.since_best = 0
        self.evaluations: list[dict[str, float]] = []

    def __call__(self, embed: Any, device: Any, where: str) -> dict[str, float]:
        before = self.best
        out = super().__call__(embed, device, where)
        self.since_best = 0 if self.best is not before else self.since_best + 1
        step = int(self.trainer.step) if self.trainer is not None else 0
        self.evaluations.append({"step": step, **out})
        return out


class EarlyStopping(Callback):
    """Stop when the validation monitor has not improved for ``patience`` evaluations (0: never)."""

    key = "early_stopping"

    def __init__(self, monitor: TrackedValidation, patience: int) -> None:
        self.monitor, self.patience = monitor, int(patience)

    def should_stop(self, trainer: Any) -> bool:
        return self.patience > 0 and self.monitor.since_best >= self.patience


def predict_test(model: torch.nn.Module, input_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of the test examples: the one place the test split is scored (once per seed)."""
    from fmlab.evaluate import predict_logits

    return predict_logits(model, input_ids, batch_size)


def _build(cfg: Any, seed: int, num_classes: int) -> tuple[Any, torch.nn.Module]:
    """The backbone (``random:`` drawn from ``seed``) with a head drawn from ``seed``; or, with
    ``classifier: prompt``, the masked LM itself (:class:`fmlab.text.prompt.PromptClassifier`)."""
    from fmlab.text.classifier import TextClassifier, load_backbone, resolve_pool

    s = cfg.settings
    bb = load_backbone(cfg.model, init_seed=seed)
    if getattr(s, "classifier", "linear") == "prompt":
        from fmlab.text.prompt import load_prompt_classifier

        model, _, _ = load_prompt_classifier(cfg.model, s.prompt.label_words, init_seed=seed)
        return bb, model
    torch.manual_seed(int(seed))
    model = TextClassifier(bb.model, num_classes, bb.tokenizer.pad_token_id,
                           resolve_pool(s.pool, bb.model_type), s.head_dropout)
    return bb, model


def finetune_one(cfg: Any, seed: int, train: Any, train_ex: list[dict], test_ex: list[dict],
                 run_dir: Path) -> dict[str, Any]:
    """Validation draw, engine training with best-state selection, one test scoring.

    Args:
        cfg: the :class:`~fmlab.text.finetune.TextFinetuneConfig`.
        seed: the run seed (validation draw, head, data order, ``random:`` weights).
        train: the task's train :class:`~fmlab.data.text.TextData`.
        train_ex, test_ex: their encoded examples.
        run_dir: receives ``metrics.jsonl`` and ``config.yaml``.

    Returns:
        The seed's record.
    """
    import copy
    import hashlib
    import json

    from fmlab.data.text import validation_split
    from fmlab.engine import Trainer, resolve_device
    from fmlab.engine.config import save_config
    from fmlab.engine.monitors import restore_snapshot
    from fmlab.text.classifier import TextClassification
    from fmlab.text.finetune import epochs_of, macro_f1
    from fmlab.text.packing import ExampleSource, pad_collate
    from fmlab.utils.io import atomic_write

    s = copy.deepcopy(cfg.settings)
    s.trainer.seed = int(seed)
    tr_idx, va_idx = validation_split(len(train_ex), s.data.val_fraction, seed, train.labels)
    bb, model = _build(cfg, seed, len(train.label_names))
    device = resolve_device(s.trainer.device)
    model.to(device)
    pad = bb.tokenizer.pad_token_id
    val = pad_collate([train_ex[i] for i in va_idx], pad)
    monitor = TrackedValidation(model, val["input_ids"].to(device), val["labels"],
                                s.eval_every_epochs, s.eval_batch_size)
    monitor(None, device, "start")  # the starting state is a candidate too
    trainer = Trainer(TextClassification(model), ExampleSource([train_ex[i] for i in tr_idx], pad),
                      s.trainer, s.optim, s.schedule, run_dir=None, monitors=[monitor],
                      callbacks=[EarlyStopping(monitor, s.patience)])
    monitor.trainer = trainer
    fit = trainer.fit()
    restore_snapshot(model, monitor.best_state)
    test = pad_collate(test_ex, pad)
    pred = predict_test(model, test["input_ids"].to(device), s.eval_batch_size).argmax(1).numpy()
    y = test["labels"].numpy()
    pred_sha = hashlib.sha256(pred.astype("int64").tobytes()).hexdigest()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(s, run_dir / "config.yaml")
    if getattr(cfg, "save_classifier", False):
        from safetensors.torch import save_model

        save_model(model, str(run_dir / "classifier.safetensors"))
    with atomic_write(run_dir / "metrics.jsonl", "w") as f:
        for rec in fit.history:
            f.write(json.dumps(rec, default=float) + "\n")
    return {"model": cfg.model, "task": cfg.task, "init": "random" if bb.random_init else
            "pretrained", "seed": int(seed), "accuracy": float((pred == y).mean()),
            "macro_f1": macro_f1(y, pred), "val_accuracy": float(monitor.best[0]),
            "test_predictions_sha256": pred_sha,
            "best_step": int(monitor.best_step),
            "best_epoch": epochs_of(monitor.best_step, len(tr_idx), s.trainer),
            "steps": int(fit.step), "stopped_early": bool(monitor.since_best >= s.patience > 0),
            "validations": monitor.evaluations, "n_train": len(tr_idx), "n_val": len(va_idx),
            "n_test": len(y), "pool": model.pool, "run_dir": str(run_dir)}


def write_outputs(cfg: Any, bb: Any, train: Any, test: Any, records: list[dict[str, Any]]) -> None:
    """``results.json``, ``summary.md`` and results-store rows, each record with its protocol."""
    from fmlab.engine.config import config_to_dict
    from fmlab.results import Protocol, ResultsStore
    from fmlab.text.finetune import METRICS, summary_markdown
    from fmlab.utils.io import atomic_write, write_json

    from types import SimpleNamespace

    # a random init is drawn from each run's seed (in the records), not from one init seed
    named = SimpleNamespace(name=bb.name, weights_sha256=bb.weights_sha256)
    protocol = Protocol.of(
        cfg.task, "test", backbone=named, split_hash=test.split_hash, model_dir=str(bb.path),
        model_type=bb.model_type, random_init=bb.random_init, train_split_hash=train.split_hash,
        n_train_split=len(train), n_test=len(test), fraction=cfg.fraction,
        max_length=cfg.settings.data.max_length, val_fraction=cfg.settings.data.val_fraction)
    hyper = config_to_dict(cfg.settings)
    for r in records:
        r["test_split_hash"], r["train_split_hash"] = test.split_hash, train.split_hash
        r["protocol"] = {**protocol.to_dict(), "seed": r["seed"]}
        r["hyperparameters"] = hyper
        r["method"] = "random_init" if bb.random_init else "pretrained"
    write_json(cfg.out / "results.json", records)
    with atomic_write(cfg.out / "summary.md", "w") as f:
        f.write(summary_markdown(records, cfg))
    if cfg.db is not None:
        ResultsStore(cfg.db).record("text_finetune", protocol, records, METRICS,
                                    extra_keys=("n_train", "n_val", "n_test", "best_step",
                                                "best_epoch", "pool", "init"))

