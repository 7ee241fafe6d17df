"""Domain vs general vs continued pre-training at an equal token budget (issue 19; SOBert,
papers.md #25; PubMedBERT, papers.md #29): ``fmlab study domain``.

Three pre-training arms per seed s, each trained on exactly ``budget.tokens`` tokens
(:func:`fmlab.studies.arms.pretrain_arm` runs the steps of full blocks that fit):

- **general**: tokenizer and model on the general corpus G (default Shakespeare + SST-2 text);
- **domain**: tokenizer and model from scratch on the domain corpus D (default medabs train);
- **continued**: the general arm's model (same seed) continued on D for ``budget.continued_tokens``
  more tokens with G's vocabulary (PubMedBERT's "continual pre-training" baseline). It reports
  its two parts, so its total is the general budget plus the continued part.

Every arm is then fine-tuned (seed s) on the domain tasks and on the general task with
``fmlab text finetune``'s protocol (validation from train, test scored once). The vocabulary
analysis (tokens per word, share of domain terms split) uses the tokenizers the arms trained.

Only the train splits feed pre-training: the medabs test abstracts (the medabs task's test) and
the other tasks' test splits are never pre-trained on.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmlab.engine.config import config_to_dict, load_config
from fmlab.studies.text_study import PretrainSection, check_seeds, load_corpus, seed_key
from fmlab.text.finetune import TextFinetuneSettings
from fmlab.utils.validation import check

__all__ = ["ARMS", "DomainConfig", "load_domain_config", "run_domain_study"]

ARMS = ("general", "continued", "domain")


@dataclass
class DomainBudget:
    """Pre-training tokens of each arm."""

    tokens: int = 1_200_000  # general and domain arms; the continued arm's general part
    continued_tokens: int | None = None  # the continued arm's domain part (None: tokens)

    def validate(self, prefix: str = "budget") -> None:
        check(self.tokens >= 1, f"{prefix}.tokens", self.tokens, "must be >= 1")
        check(self.continued_tokens is None or self.continued_tokens >= 1,
              f"{prefix}.continued_tokens", self.continued_tokens, "must be >= 1")

    @property
    def continued(self) -> int:
        return self.tokens if self.continued_tokens is None else self.continued_tokens


@dataclass
class Corpora:
    """Named text sources; their ``train`` splits are pre-trained on."""

    domain: list[str] = field(default_factory=lambda: ["medabs"])
    general: list[str] = field(default_factory=lambda: ["shakespeare", "sst2"])
    limit: int | None = None  # records per source (seeded subset; smoke runs and tests)
    data_root: str | None = None

    def validate(self, prefix: str = "corpora") -> None:
        check(len(self.domain) >= 1, f"{prefix}.domain", self.domain, "must list a source")
        check(len(self.general) >= 1, f"{prefix}.general", self.general, "must list a source")
        check(self.limit is None or self.limit >= 1, f"{prefix}.limit", self.limit, "must be >= 1")


@dataclass
class Tasks:
    """Labelled tasks every arm is fine-tuned on."""

    domain: list[str] = field(default_factory=lambda: ["chemprot", "pico", "medabs"])
    general: list[str] = field(default_factory=lambda: ["sst2"])

    def validate(self, prefix: str = "tasks") -> None:
        check(len(self.domain) + len(self.general) >= 1, prefix, self.domain, "must list a task")

    def all(self) -> list[str]:
        return list(self.domain) + list(self.general)


@dataclass
class Analysis:
    """The vocabulary analysis."""

    terms: int = 200  # domain terms (log-odds z against G)
    min_count: int = 5  # in D
    top: int = 10  # rows of the most-fragmented table

    def validate(self, prefix: str = "analysis") -> None:
        check(self.terms >= 1, f"{prefix}.terms", self.terms, "must be >= 1")
        check(self.min_count >= 1, f"{prefix}.min_count", self.min_count, "must be >= 1")
        check(self.top >= 1, f"{prefix}.top", self.top, "must be >= 1")


@dataclass
class ProbeSection:
    """A linear probe on frozen features beside fine-tuning (:mod:`fmlab.text.frozen_probe`):
    cheap, and informative where fine-tuning stays at the majority class."""

    enabled: bool = True
    random_init: bool = True  # also probe random-init encoders with G's and D's vocabulary


@dataclass
class DomainConfig:
    """``configs/study/domain.yaml``."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: DomainBudget = field(default_factory=DomainBudget)
    corpora: Corpora = field(default_factory=Corpora)
    tasks: Tasks = field(default_factory=Tasks)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    finetune: TextFinetuneSettings = field(default_factory=lambda: _finetune_defaults())
    analysis: Analysis = field(default_factory=Analysis)
    probe: ProbeSection = field(default_factory=ProbeSection)

    def validate(self, prefix: str = "") -> None:
        check_seeds(self.seeds)


def _finetune_defaults() -> TextFinetuneSettings:
    """``fmlab text finetune``'s settings, sized for the study's budget (4 epochs on 2,000
    records of 64 tokens per task at lr 1e-3, 1,000 test records per task)."""
    s = TextFinetuneSettings()
    s.trainer.epochs, s.data.limit, s.data.max_length, s.data.max_test = 4, 2000, 64, 1000
    s.optim.lr = 1e-3
    return s


def load_domain_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                       ) -> DomainConfig:
    """The study's settings: YAML ``path`` (or the defaults), then ``--set`` items; the
    pre-training YAML and its ``pretrain.set`` items are checked too.

    Examples:
        >>> load_domain_config(None, ["seeds=[1]", "budget.tokens=8192"]).budget.tokens
        8192
    """
    cfg = load_config(path, DomainConfig, overrides)
    cfg.pretrain.check_loads()
    return cfg


def _pretrain_sets(cfg: DomainConfig, seed: int) -> list[str]:
    return [*cfg.pretrain.set, f"trainer.seed={seed}", "trainer.progress=false"]


def _pretrain(cfg: DomainConfig, ledger: Any, arm: str, seed: int, texts: list[str],
              corpus: list[str], tokens: int, init: str | None = None) -> dict[str, Any]:
    from fmlab.studies.arms import pretrain_arm

    def fn(run_dir: Path, resume: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        rec = pretrain_arm(cfg.pretrain.resolved(), _pretrain_sets(cfg, seed), run_dir, resume,
                           tokens=tokens, texts=texts, init=init)
        return {**rec, "corpus": corpus, "seconds": round(time.perf_counter() - t0, 1)}

    return ledger.run(seed_key("pretrain", arm, seed), fn)


def pretrain_arms(cfg: DomainConfig, ledger: Any, seed: int, domain: list[str],
                  general: list[str]) -> dict[str, dict[str, Any]]:
    """The three arms of one seed; each record gains ``tokens`` (its total pre-training tokens)
    and ``parts`` (``{corpus: tokens}``; two parts for the continued arm)."""
    c = cfg.corpora
    g = _pretrain(cfg, ledger, "general", seed, general, c.general, cfg.budget.tokens)
    d = _pretrain(cfg, ledger, "domain", seed, domain, c.domain, cfg.budget.tokens)
    cont = _pretrain(cfg, ledger, "continued", seed, domain, c.domain, cfg.budget.continued,
                     init=g["model"])
    out = {"general": dict(g), "continued": dict(cont), "domain": dict(d)}
    out["general"]["parts"] = {"general": g["tokens_seen"]}
    out["domain"]["parts"] = {"domain": d["tokens_seen"]}
    out["continued"]["parts"] = {"general": g["tokens_seen"], "domain": cont["tokens_seen"]}
    for rec in out.values():
        rec["tokens"] = sum(rec["parts"].values())
    return out


def _finetune(cfg: DomainConfig, ledger: Any, arm: str, seed: int, task: str,
              model_rec: dict[str, Any], db: Path | None) -> dict[str, Any]:
    from fmlab.results import Protocol, ResultsStore
    from fmlab.studies.arms import finetune_arm

    def fn(run_dir: Path, resume: bool) -> dict[str, Any]:
        rec = finetune_arm(model_rec["model"], task, run_dir, seeds=[seed],
                           settings=copy.deepcopy(cfg.finetune), db=db,
                           data_root=cfg.corpora.data_root)[0]
        keep = ("seed", "accuracy", "macro_f1", "val_accuracy", "n_train", "n_test",
                "test_split_hash", "seconds")
        row = {**{k: rec[k] for k in keep if k in rec}, "arm_name": arm, "task": task,
               "pretrain_tokens": model_rec["tokens"], "parts": model_rec["parts"],
               "model": model_rec["model"], "method": arm}
        if db is not None:
            protocol = Protocol.of(task, "test", split_hash=rec.get("test_split_hash"),
                                   model_dir=model_rec["model"], study="domain", arm=arm,
                                   pretrain_tokens=model_rec["tokens"], parts=model_rec["parts"],
                                   weights_sha256=model_rec.get("weights_sha256"))
            ResultsStore(db).record("study_domain", protocol, [row], ("accuracy", "macro_f1"),
                                    extra_keys=("arm_name", "pretrain_tokens"))
        return row

    return ledger.run(seed_key("finetune", arm, seed, task), fn)


def _probe(cfg: DomainConfig, ledger: Any, arm: str, seed: int, task: str, spec: str,
           db: Path | None) -> dict[str, Any]:
    from fmlab.results import Protocol, ResultsStore
    from fmlab.text.frozen_probe import probe_text_task

    def fn(run_dir: Path, resume: bool) -> dict[str, Any]:
        d = cfg.finetune.data
        rec = probe_text_task(spec, task, seed=seed, limit=d.limit, max_test=d.max_test,
                              max_length=d.max_length or 64, val_fraction=d.val_fraction,
                              data_root=cfg.corpora.data_root)
        row = {**rec, "seed": seed, "arm_name": arm, "task": task, "method": arm, "model": spec}
        if db is not None:
            protocol = Protocol.of(task, "test", split_hash=rec["test_split_hash"], model_dir=spec,
                                   study="domain", arm=arm, evaluation="linear_probe",
                                   train_split_hash=rec["train_split_hash"])
            ResultsStore(db).record("study_domain_probe", protocol, [row], ("accuracy", "macro_f1"),
                                    extra_keys=("arm_name", "C", "n_train", "n_test"))
        return row

    return ledger.run(seed_key("probe", arm, seed, task), fn)


def probe_arms(cfg: DomainConfig, ledger: Any, seed: int, arms: dict[str, dict[str, Any]],
               db: Path | None) -> list[dict[str, Any]]:
    """Linear probes of every arm's frozen encoder (and of random-init ones with each vocabulary)."""
    specs = {arm: arms[arm]["model"] for arm in ARMS}
    if cfg.probe.random_init:
        specs["random (G vocab)"] = "random:" + arms["general"]["model"]
        specs["random (D vocab)"] = "random:" + arms["domain"]["model"]
    return [_probe(cfg, ledger, arm, seed, task, spec, db)
            for arm, spec in specs.items() for task in cfg.tasks.all()]


def run_domain_study(cfg: DomainConfig, out: str | Path, db: str | Path | None = None,
                     commands: list[str] | None = None) -> dict[str, Any]:
    """Every arm and fine-tuning run (each once: ``OUT/arms.json``), the vocabulary analysis,
    ``OUT/report.md``, ``OUT/accuracy.png``, ``OUT/tokens_per_word.png`` and ``OUT/study.json``.

    Args:
        cfg: the study's settings.
        out: the output folder (a rerun continues it without redoing finished arms).
        db: the results store (None: none written).
        commands: the command lines to quote in the report.

    Returns:
        ``{"pretrain": [...], "finetune": [...], "vocab": {...}, "seconds"}``.
    """
    from fmlab.studies.arms import ArmLedger
    from fmlab.studies.domain_report import vocabulary_analysis, write_domain_report
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = None if db is None else Path(db)
    c = cfg.corpora
    domain, d_parts = load_corpus(c.domain, "train", limit=c.limit, data_root=c.data_root)
    general, g_parts = load_corpus(c.general, "train", limit=c.limit, data_root=c.data_root)
    ledger = ArmLedger(out)
    pre, fine, probes = [], [], []
    for seed in cfg.seeds:
        arms = pretrain_arms(cfg, ledger, seed, domain, general)
        for arm in ARMS:
            pre.append({**arms[arm], "arm_name": arm})
            for task in cfg.tasks.all():
                fine.append(_finetune(cfg, ledger, arm, seed, task, arms[arm], db))
        if cfg.probe.enabled:
            probes += probe_arms(cfg, ledger, seed, arms, db)
    first = {a: r for a, r in ((r["arm_name"], r) for r in pre) if r["seed"] == cfg.seeds[0]}
    vocab = vocabulary_analysis(cfg, Path(first["general"]["model"]),
                                Path(first["domain"]["model"]), domain, general)
    info = {"config": config_to_dict(cfg), "corpora": {"domain": d_parts, "general": g_parts},
            "pretrain": pre, "finetune": fine, "probe": probes, "vocab": vocab,
            "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "study.json", info)
    write_domain_report(out, cfg, info, commands or [])
    return info
