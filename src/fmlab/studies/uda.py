"""``fmlab study uda``: continued pre-training for unsupervised domain adaptation (papers.md #15).

Setting: a labelled *source* domain and an unlabelled *target* domain with the same labels; the
score is accuracy on labelled target test data that no arm trains on. The shift is built from the
staged SST-2 (:func:`build_shift`): source = the GLUE training *phrases* of at most
``shift.source_max_words`` words (labelled), target = *full sentences*: the training phrases of at
least ``shift.target_min_words`` words serve as the unlabelled target pool (their labels are
dropped the moment they are read), and the standard sentence-level SST-2 test split (1,821
sentences, other reviews) is the labelled target test set. Same labels, shifted input
distribution (short fragments → long, compositional sentences).

Arms, per seed (all from the seed's base MLM, :mod:`fmlab.studies.cpt_arms`):

- ``source_only``: fine-tune the base on the source (linear head) — the no-adaptation baseline;
- ``cpt_source``: continue MLM pre-training on the *source* texts for ``budget.tokens``, then
  fine-tune — the control that spends the same extra compute without seeing target text;
- ``cpt_target``: continue MLM pre-training on the unlabelled *target* pool for
  ``budget.tokens``, then fine-tune on the source (the paper's CPT);
- ``prompt_source_only`` / ``prompt_cpt_source`` / ``prompt_cpt_target``: the same three with
  the prompt-based
  (generative) classifier the paper studies: label words through the MLM head
  (:mod:`fmlab.text.prompt`, ``"{text} it was [MASK] ."`` → bad / good).

Model selection uses a validation split of the *source* data only; no arm reads a target label
(``tests/studies/test_uda.py`` shuffles them and gets the bit-identical models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.engine.config import load_config
from fmlab.errors import ConfigError
from fmlab.studies.cpt_arms import BaseModelConfig, BudgetConfig, finetune_settings
from fmlab.text.finetune import PromptSettings, TextFinetuneSettings
from fmlab.utils.validation import check

__all__ = ["ARMS", "Shift", "UdaConfig", "build_shift", "load_uda_config", "run_uda"]

ARMS = ("source_only", "cpt_source", "cpt_target", "prompt_source_only", "prompt_cpt_source",
        "prompt_cpt_target")
TASK = "sst2-phrases->sentences"


@dataclass
class ShiftConfig:
    """The ``shift`` section: how source and target are cut from SST-2."""

    source_max_words: int = 8  # source: training phrases of at most this many words
    target_min_words: int = 15  # target pool: training phrases of at least this many words
    source_limit: int | None = 4000  # labelled source records (a seeded subset)
    target_limit: int | None = 20000  # unlabelled target texts (a seeded subset)
    max_test: int | None = None  # score a seeded subset of the target test split (smoke runs)
    source_in_base: bool = True  # the base MLM also reads the (unlabelled) source texts

    def validate(self, prefix: str = "shift") -> None:
        check(self.source_max_words >= 1, f"{prefix}.source_max_words", self.source_max_words,
              "must be >= 1")
        check(self.target_min_words > self.source_max_words, f"{prefix}.target_min_words",
              self.target_min_words, f"must be above {prefix}.source_max_words "
              f"({self.source_max_words}) so no text is in both domains")
        for k in ("source_limit", "target_limit", "max_test"):
            v = getattr(self, k)
            check(v is None or v >= 2, f"{prefix}.{k}", v, "must be >= 2")


def _prompt_defaults() -> PromptSettings:
    return PromptSettings(template="{text} it was [MASK] .", label_words=["bad", "good"])


@dataclass
class UdaConfig:
    """``configs/study/uda.yaml``."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    finetune: TextFinetuneSettings = field(default_factory=finetune_settings)
    prompt: PromptSettings = field(default_factory=_prompt_defaults)

    def validate(self, prefix: str = "") -> None:
        check(len(self.seeds) >= 1, "seeds", self.seeds, "give at least one seed")
        bad = [a for a in self.arms if a not in ARMS]
        check(not bad and self.arms, "arms", self.arms, f"choose from {', '.join(ARMS)}")
        check(len(self.prompt.label_words) >= 2, "prompt.label_words", self.prompt.label_words,
              "needs one word per label")


def load_uda_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                    ) -> UdaConfig:
    """``--config`` (None: the defaults of ``configs/study/uda.yaml``) with ``--set`` applied."""
    return load_config(path, UdaConfig, overrides)


@dataclass(frozen=True)
class Shift:
    """The domain shift: labelled source, unlabelled target texts, labelled target test."""

    source: Any  # TextData (labelled)
    target_texts: list[str]  # unlabelled: the labels were never kept
    target_test: Any  # TextData (labelled; scored once per fine-tuning seed, never trained on)
    facts: dict[str, Any]


def _subset(idx: np.ndarray, limit: int | None) -> np.ndarray:
    """A seeded (seed 0: a data property) subset of ``idx``, in file order."""
    if limit is None or limit >= len(idx):
        return idx
    return np.sort(np.random.default_rng(0).permutation(idx)[:limit])


def build_shift(shift: ShiftConfig, data_root: str | None = None) -> Shift:
    """Cut the source / target domains from SST-2 (module doc); target labels are dropped here."""
    from dataclasses import replace

    from fmlab.data.text import load_text, records_hash

    train = load_text("sst2", "train", data_root=data_root)
    words = np.array([len(t.split()) for t in train.texts])
    src = _subset(np.flatnonzero(words <= shift.source_max_words), shift.source_limit)
    tgt = _subset(np.flatnonzero(words >= shift.target_min_words), shift.target_limit)
    if len(src) < 2 or len(tgt) < 1:
        raise ConfigError(f"shift: {len(src)} source and {len(tgt)} target records; loosen "
                          "shift.source_max_words / shift.target_min_words")
    texts = [train.texts[i] for i in src]
    labels = [int(train.labels[i]) for i in src]
    source = replace(train, texts=texts, labels=labels, split="train[source]",
                     split_hash=records_hash(texts, labels),
                     extra={"file_sha256": train.extra.get("file_sha256"),
                            "rule": f"words <= {shift.source_max_words}"})
    target_texts = [train.texts[i] for i in tgt]  # texts only: no target label leaves here
    test = load_text("sst2", "test", data_root=data_root, limit=shift.max_test)
    facts = {"n_source": len(texts), "n_target_texts": len(target_texts), "n_target_test": len(test),
             "source_words_mean": float(words[src].mean()),
             "target_words_mean": float(words[tgt].mean()),
             "test_words_mean": float(np.mean([len(t.split()) for t in test.texts])),
             "source_positive": float(np.mean(labels)),
             "source_split_hash": source.split_hash,
             "target_texts_hash": records_hash(target_texts, None),
             "test_split_hash": test.split_hash}
    return Shift(source, target_texts, test, facts)


def run_uda(cfg: UdaConfig, out: str | Path, db: Path | None = None,
            command: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Run every arm × seed (finished arms are not redone), then write ``report.md`` and PNGs.

    Returns:
        ``{"records": [...], "report": path, "shift": facts, "pretrain": [...]}``.
    """
    import copy

    from fmlab.studies.arms import ArmLedger
    from fmlab.studies.cpt_arms import base_arm, cpt_arm, ft_arm

    out = Path(out)
    shift = build_shift(cfg.shift, data_root)
    ledger = ArmLedger(out)
    linear = copy.deepcopy(cfg.finetune)
    linear.classifier = "linear"
    prompt = copy.deepcopy(cfg.finetune)
    prompt.classifier, prompt.prompt = "prompt", copy.deepcopy(cfg.prompt)
    data = (shift.source, shift.target_test)
    records, pretrains = [], []
    for seed in cfg.seeds:
        base = base_arm(ledger, cfg.base, seed,
                        shift.source.texts if cfg.shift.source_in_base else ())
        models = {"base": (base["model"], 0)}
        pretrains.append({**_pre_facts(base), "what": "base"})
        for corpus, texts in (("source", shift.source.texts), ("target", shift.target_texts)):
            if any(a.endswith(f"cpt_{corpus}") for a in cfg.arms):
                rec = cpt_arm(ledger, f"cpt_{corpus}/seed{seed}", cfg.base, cfg.budget,
                              base["model"], texts, seed)
                models[corpus] = (rec["model"], int(rec["tokens_seen"]))
                pretrains.append({**_pre_facts(rec), "what": f"cpt_{corpus}"})
        for arm in cfg.arms:
            which = "base" if arm.endswith("source_only") else arm.rsplit("_", 1)[1]
            model, tokens = models[which]
            settings = prompt if arm.startswith("prompt") else linear
            records.append(ft_arm(ledger, f"ft/{arm}/seed{seed}", arm, model, TASK, settings,
                                  seed, data, db, cpt_tokens=tokens))
    from fmlab.studies.uda_report import write_uda_report

    report = write_uda_report(out, cfg, records, pretrains, shift.facts, command)
    return {"records": records, "report": report, "shift": shift.facts, "pretrain": pretrains}


def _pre_facts(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in ("arm", "seed", "step", "tokens_seen", "budget_tokens",
                                    "last_loss", "weights_sha256", "split_hash")}
