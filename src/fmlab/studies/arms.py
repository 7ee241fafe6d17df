"""The arms of a text study (``fmlab study domain|uda|pseudolabel|entigraph``), run once each.

A study compares several *arms* (pre-training recipes, then fine-tuning on tasks) over seeds. Each
arm is a function of its own run folder; :class:`ArmLedger` remembers every finished arm in
``OUT/arms.json`` (written atomically after the arm ends), so a study killed at any point resumes
without redoing finished arms, and an arm that was cut off mid-way resumes from its engine
checkpoint (``resume=True`` is passed when its folder holds one).

Token budgets: a pre-training arm is given ``tokens`` and runs ``tokens // (batch × accumulate ×
block)`` steps of full packed blocks (the engine drops no partial batch), so the tokens it reports
(``tokens_seen``) are exactly the tokens it trained on — never more than the budget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fmlab.errors import ConfigError

__all__ = ["ArmLedger", "budget_steps", "finetune_arm", "pretrain_arm"]

ArmFn = Callable[[Path, bool], dict[str, Any]]


def _slug(key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
    if not slug:
        raise ConfigError(f"arm key {key!r} has no usable characters")
    return slug


class ArmLedger:
    """``OUT/arms.json``: the record of every finished arm, by key.

    Examples:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> calls = []
        >>> def arm(run_dir, resume):
        ...     calls.append(resume)
        ...     return {"accuracy": 0.5}
        >>> ArmLedger(out).run("general/seed0", arm)["accuracy"]
        0.5
        >>> ArmLedger(out).run("general/seed0", arm)["arm"], len(calls)  # not run again
        ('general/seed0', 1)
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / "arms.json"
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.records = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"{self.path}: not valid JSON ({e}); remove it to start over") from None

    def arm_dir(self, key: str) -> Path:
        """The folder an arm writes into (``OUT/arms/<key slug>``)."""
        return self.out / "arms" / _slug(key)

    def run(self, key: str, fn: ArmFn) -> dict[str, Any]:
        """The arm's record: the stored one when it finished before, else ``fn(run_dir, resume)``
        (``resume`` when the folder holds an engine checkpoint of an interrupted run)."""
        if key in self.records:
            return self.records[key]
        from fmlab.engine.checkpoint import latest_checkpoint
        from fmlab.utils.io import write_json

        run_dir = self.arm_dir(key)
        resume = latest_checkpoint(run_dir) is not None
        rec = dict(fn(run_dir, resume))
        rec["arm"] = key
        self.records[key] = rec
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.records)
        return rec


def budget_steps(tokens: int, batch_size: int, block_size: int, accumulate: int = 1) -> int:
    """Optimizer steps of full ``batch_size × accumulate`` blocks of ``block_size`` tokens that fit
    in ``tokens``.

    Examples:
        >>> budget_steps(10_000, 8, 64), 8 * 64 * budget_steps(10_000, 8, 64)
        (19, 9728)
    """
    per = int(batch_size) * int(accumulate) * int(block_size)
    if per < 1:
        raise ConfigError(f"budget: batch {batch_size} × accumulate {accumulate} × block "
                          f"{block_size} must be positive")
    if tokens < per:
        raise ConfigError(f"budget.tokens: {tokens} is below one step ({per} tokens = batch "
                          f"{batch_size} × accumulate {accumulate} × block {block_size})")
    return int(tokens) // per


def pretrain_arm(config: str | Path, overrides: Sequence[str], run_dir: Path, resume: bool, *,
                 tokens: int, texts: list[str] | None = None, init: str | None = None
                 ) -> dict[str, Any]:
    """One pre-training arm: ``fmlab text pretrain``'s config plus ``overrides``, trained for the
    steps that fit ``tokens`` (continued from ``init``, a saved ``RUN_DIR/model``, when given) on
    ``texts`` (default: the config's ``data.source``).

    Returns:
        The run's ``pretrain.json`` record plus ``budget_tokens`` and ``model`` (the saved folder).
    """
    from fmlab.experiments.text_pretrain import load_text_pretrain_config, run_text_pretrain

    cfg = load_text_pretrain_config(config, list(overrides))
    if init is not None:
        cfg.init = str(init)
    t = cfg.trainer
    t.max_steps = budget_steps(tokens, t.batch_size, cfg.data.block_size, t.accumulate)
    rec = run_text_pretrain(cfg, run_dir, resume=resume, texts=texts)
    return {**rec, "budget_tokens": int(tokens), "model": rec["paths"]["model"],
            "seed": int(cfg.trainer.seed)}


def finetune_arm(model: str, task: str, out: Path, *, seeds: Sequence[int],
                 settings: Any, fraction: float | None = None, db: Path | None = None,
                 data_root: str | None = None, data: tuple[Any, Any] | None = None,
                 save_classifier: bool = False) -> list[dict[str, Any]]:
    """Fine-tune ``model`` (a ``RUN_DIR/model``) on the labelled ``task`` once per seed with
    ``fmlab text finetune``'s protocol (validation from train, the test split scored once per
    seed, every record with its protocol in ``db``); ``data``: the study's own ``(train, test)``
    TextData instead of the task's splits (``task`` then names them); ``save_classifier``: keep
    each seed's fine-tuned classifier (``OUT/seed{s}/classifier.safetensors``, e.g. a teacher)."""
    from fmlab.text.finetune import TextFinetuneConfig, run_text_finetune

    cfg = TextFinetuneConfig(model=str(model), task=task, out=Path(out), seeds=list(seeds),
                             settings=settings, fraction=fraction, data_root=data_root, db=db,
                             save_classifier=save_classifier)
    return run_text_finetune(cfg, data=data)
