"""``fmlab study pseudolabel``: pseudo-label pre-training vs MLM continued pre-training vs none
(papers.md #18), at several fractions of the SST-2 labels.

Data (seeded, seed 0 — a data property): the *labelled pool* is ``pool.labelled`` records of the
SST-2 training phrases — "100 %" here is this capped pool, not the full 67,349 (CPU budget) — and
the fraction ``f`` uses its first ``round(f × pool.labelled)`` records of a seeded order (the 1 %
set is inside the 10 % set). The *unlabelled pool* is ``pool.unlabelled`` other training records,
their labels dropped. Test: the 1,821 SST-2 test sentences.

Arms, per seed and fraction (all from the seed's base MLM, :mod:`fmlab.studies.cpt_arms`):

- ``none``: fine-tune the base on the labelled set (this is also the *teacher*);
- ``mlm``: continue MLM pre-training on the unlabelled pool for ``budget.tokens`` (once per seed),
  then fine-tune;
- ``pseudolabel``: the teacher labels the pool (``pseudo.targets``: hard argmax as in the paper,
  or soft probabilities); the student (base + new head) trains on those predictions for the same
  ``budget.tokens`` (:mod:`fmlab.text.pseudolabel`), then its backbone is fine-tuned with a new head
  on the labelled set exactly as the other arms.

Fine-tuning runs at least ``finetune.trainer.epochs`` epochs and at least ``min_finetune_steps``
steps (tiny labelled sets get more epochs), keeping the best validation epoch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.studies.cpt_arms import BaseModelConfig, BudgetConfig, finetune_settings
from fmlab.text.finetune import TextFinetuneSettings
from fmlab.utils.validation import check

__all__ = ["PseudolabelConfig", "load_pseudolabel_config", "pseudolabel_arm", "run_pseudolabel"]

TASK = "sst2"


@dataclass
class PoolConfig:
    """The ``pool`` section."""

    labelled: int = 6000  # the capped "100 %" labelled pool (seeded subset of SST-2 train)
    unlabelled: int = 20000  # unlabelled in-domain texts (other training records, labels dropped)
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    max_test: int | None = None  # score a seeded subset of the test split (smoke runs)

    def validate(self, prefix: str = "pool") -> None:
        check(self.labelled >= 4, f"{prefix}.labelled", self.labelled, "must be >= 4")
        check(self.unlabelled >= 1, f"{prefix}.unlabelled", self.unlabelled, "must be >= 1")
        check(bool(self.fractions) and all(0 < f <= 1 for f in self.fractions),
              f"{prefix}.fractions", self.fractions, "must be in (0, 1]")


def _pseudo_trainer() -> TrainerConfig:
    return TrainerConfig(batch_size=32, log_every=50, progress=False, tensorboard=False,
                         checkpoint_every=200)


@dataclass
class PseudoConfig:
    """The ``pseudo`` section: how the student trains on the teacher's predictions."""

    targets: str = "hard"  # hard: one-hot argmax (the paper); soft: the teacher's probabilities
    trainer: TrainerConfig = field(default_factory=_pseudo_trainer)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=20))

    def validate(self, prefix: str = "pseudo") -> None:
        check(self.targets in ("hard", "soft"), f"{prefix}.targets", self.targets,
              "must be hard or soft")


@dataclass
class PseudolabelConfig:
    """``configs/study/pseudolabel.yaml``."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: ["none", "mlm", "pseudolabel"])
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    finetune: TextFinetuneSettings = field(default_factory=finetune_settings)
    min_finetune_steps: int = 100

    def validate(self, prefix: str = "") -> None:
        check(len(self.seeds) >= 1, "seeds", self.seeds, "give at least one seed")
        bad = [a for a in self.arms if a not in ("none", "mlm", "pseudolabel")]
        check(not bad and "none" in self.arms, "arms", self.arms,
              "choose from none, mlm, pseudolabel; none is needed (it is the teacher)")
        check(self.min_finetune_steps >= 0, "min_finetune_steps", self.min_finetune_steps,
              "must be >= 0")


def load_pseudolabel_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                            ) -> PseudolabelConfig:
    """``--config`` (None: the defaults of ``configs/study/pseudolabel.yaml``) with ``--set``."""
    return load_config(path, PseudolabelConfig, overrides)


def build_pools(pool: PoolConfig, data_root: str | None = None) -> dict[str, Any]:
    """Labelled sets per fraction (nested), the unlabelled texts, the test split."""
    from fmlab.data.text import load_text, records_hash

    train = load_text(TASK, "train", data_root=data_root)
    order = np.random.default_rng(0).permutation(len(train))
    lab, unl = order[:pool.labelled], np.sort(order[pool.labelled:pool.labelled + pool.unlabelled])
    labelled = {}
    for f in pool.fractions:
        idx = np.sort(lab[:max(4, round(f * len(lab)))])
        texts, labels = [train.texts[i] for i in idx], [int(train.labels[i]) for i in idx]
        labelled[f] = replace(train, texts=texts, labels=labels, split=f"train[labelled {f:g}]",
                              split_hash=records_hash(texts, labels),
                              extra={"file_sha256": train.extra.get("file_sha256")})
    texts = [train.texts[i] for i in unl]  # the unlabelled pool: texts only
    test = load_text(TASK, "test", data_root=data_root, limit=pool.max_test)
    return {"labelled": labelled, "unlabelled": texts, "test": test,
            "unlabelled_hash": records_hash(texts, None)}


def _settings_for(cfg: PseudolabelConfig, n: int) -> TextFinetuneSettings:
    """The fine-tuning settings with enough epochs for ``min_finetune_steps`` on ``n`` records
    (and a batch no larger than the training records, for tiny labelled sets)."""
    s = copy.deepcopy(cfg.finetune)
    n_train = n - max(2, round(n * s.data.val_fraction))
    s.trainer.batch_size = max(1, min(s.trainer.batch_size, n_train // s.trainer.accumulate))
    per = max(1, n_train // (s.trainer.batch_size * s.trainer.accumulate))
    s.trainer.epochs = max(s.trainer.epochs, math.ceil(cfg.min_finetune_steps / per))
    return s


def pseudolabel_arm(run_dir: Path, resume: bool, *, base_model: str, teacher: Path, seed: int,
                    texts: list[str], cfg: PseudolabelConfig, settings: TextFinetuneSettings
                    ) -> dict[str, Any]:
    """Teacher predictions on ``texts`` → student trained on them for ``budget.tokens`` → the
    student's backbone saved as ``run_dir/model`` (a ``RUN_DIR/model`` the fine-tuning loads)."""
    import torch
    from safetensors.torch import load_model

    from fmlab.engine import Trainer
    from fmlab.evaluate import predict_logits
    from fmlab.text.classifier import TextClassifier, load_backbone, resolve_pool
    from fmlab.text.packing import encode_examples, pad_collate
    from fmlab.text.pseudolabel import (PseudoLabelSource, SoftTargetClassification,
                                        budget_order, pseudo_targets)
    from fmlab.utils.io import sha256_file

    def classifier() -> tuple[Any, TextClassifier]:
        bb = load_backbone(base_model)
        torch.manual_seed(int(seed))
        return bb, TextClassifier(bb.model, 2, bb.tokenizer.pad_token_id,
                                  resolve_pool(settings.pool, bb.model_type), settings.head_dropout)

    bb, t_model = classifier()
    load_model(t_model, str(teacher))
    tok = bb.tokenizer
    ex = encode_examples(texts, tok, settings.data.max_length or 128)
    ids = pad_collate(ex, tok.pad_token_id)["input_ids"]
    probs = torch.softmax(predict_logits(t_model, ids, settings.eval_batch_size), 1)
    targets = pseudo_targets(probs, cfg.pseudo.targets)
    t = copy.deepcopy(cfg.pseudo.trainer)
    lengths = [len(e["input_ids"]) for e in ex]
    order = budget_order(lengths, cfg.budget.tokens, t.batch_size * t.accumulate, seed)
    source = PseudoLabelSource([ex[i] for i in order], targets[torch.as_tensor(order)],
                               tok.pad_token_id)
    t.seed, t.epochs, t.max_steps = int(seed), 1, len(order) // (t.batch_size * t.accumulate)
    _, student = classifier()
    trainer = Trainer(SoftTargetClassification(student), source, t, cfg.pseudo.optim,
                      cfg.pseudo.schedule, run_dir=run_dir)
    fit = trainer.fit(resume=run_dir if resume else None)
    model_dir = run_dir / "model"
    student.backbone.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    return {"model": str(model_dir), "step": int(fit.step), "seed": int(seed),
            "tokens_seen": int(np.sum(np.asarray(lengths)[order])),
            "budget_tokens": int(cfg.budget.tokens), "targets": cfg.pseudo.targets,
            "pseudo_positive": float(targets[:, 1].mean()),
            "teacher_confidence": float(probs.max(1).values.mean()),
            "weights_sha256": sha256_file(model_dir / "model.safetensors")}


def run_pseudolabel(cfg: PseudolabelConfig, out: str | Path, db: Path | None = None,
                    command: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Run every arm × fraction × seed (finished arms are not redone); write the report."""
    from fmlab.studies.arms import ArmLedger
    from fmlab.studies.pseudolabel_report import write_pseudolabel_report
    from fmlab.studies.cpt_arms import base_arm, cpt_arm, ft_arm

    out = Path(out)
    pools = build_pools(cfg.pool, data_root)
    ledger = ArmLedger(out)
    records, pretrains = [], []
    for seed in cfg.seeds:
        base = base_arm(ledger, cfg.base, seed)
        pretrains.append({"what": "base", "seed": seed, "tokens_seen": base["tokens_seen"],
                          "step": base["step"]})
        mlm = None
        if "mlm" in cfg.arms:
            mlm = cpt_arm(ledger, f"mlm/seed{seed}", cfg.base, cfg.budget, base["model"],
                          pools["unlabelled"], seed)
            pretrains.append({"what": "mlm", "seed": seed, "tokens_seen": mlm["tokens_seen"],
                              "step": mlm["step"]})
        for f, train in pools["labelled"].items():
            s = _settings_for(cfg, len(train))
            data = (train, pools["test"])
            extra = {"fraction": f, "n_labelled": len(train)}
            teacher = ft_arm(ledger, f"ft/none/f{f:g}/seed{seed}", "none", base["model"], TASK, s,
                             seed, data, db, save_classifier=True, pre_tokens=0, **extra)
            records.append(teacher)
            if mlm is not None:
                records.append(ft_arm(ledger, f"ft/mlm/f{f:g}/seed{seed}", "mlm", mlm["model"],
                                      TASK, s, seed, data, db, pre_tokens=mlm["tokens_seen"],
                                      **extra))
            if "pseudolabel" in cfg.arms:
                tdir = Path(teacher["run_dir"]) / "classifier.safetensors"
                pl = ledger.run(f"pseudolabel/f{f:g}/seed{seed}", partial(
                    pseudolabel_arm, base_model=base["model"], teacher=tdir, seed=seed,
                    texts=pools["unlabelled"], cfg=cfg, settings=s))
                pretrains.append({"what": f"pseudolabel f={f:g}", "seed": seed,
                                  "tokens_seen": pl["tokens_seen"], "step": pl["step"],
                                  "pseudo_positive": pl["pseudo_positive"]})
                records.append(ft_arm(ledger, f"ft/pseudolabel/f{f:g}/seed{seed}", "pseudolabel",
                                      pl["model"], TASK, s, seed, data, db,
                                      pre_tokens=pl["tokens_seen"], **extra))
    report = write_pseudolabel_report(out, cfg, records, pretrains, pools, command)
    return {"records": records, "report": report, "pretrain": pretrains}
