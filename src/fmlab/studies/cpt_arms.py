"""Arms shared by the text studies ``fmlab study uda`` and ``fmlab study pseudolabel``: the base
MLM (one per seed, never on target/in-domain text), continued pre-training for a token budget,
fine-tuning arms through the ledger, and ``report.md`` + bar plots.

There is no pre-trained general English MLM in the data, so each study pre-trains a small one
(``base``: ``fmlab text pretrain``'s recipe on ``base.corpus``, e.g. Tiny Shakespeare, plus what
the study allows, e.g. the unlabelled *source* texts of a domain shift) once per seed; every arm
of that seed starts from it. Continued pre-training keeps the base's tokenizer (``init=``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmlab.engine.config import TrainerConfig
from fmlab.studies.arms import ArmLedger, finetune_arm, pretrain_arm
from fmlab.text.finetune import TextFinetuneSettings
from fmlab.utils.validation import check

__all__ = ["BaseModelConfig", "BudgetConfig", "base_arm", "cpt_arm", "finetune_settings",
           "ft_arm", "write_report"]


@dataclass
class BaseModelConfig:
    """The ``base`` section: the small base MLM pre-trained once per seed."""

    config: str = "configs/text/mlm_shakespeare.yaml"  # a `fmlab text pretrain` recipe
    corpus: str = "shakespeare"  # general text (its train split), never the target domain
    corpus_limit: int | None = None  # first N records of the corpus (smoke runs)
    tokens: int = 393216  # pre-training tokens of the base (96 steps of 32 × 128)
    set: list[str] = field(default_factory=list)  # `--set` overrides of the recipe

    def validate(self, prefix: str = "base") -> None:
        check(self.tokens >= 1, f"{prefix}.tokens", self.tokens, "must be >= 1")
        check(self.corpus_limit is None or self.corpus_limit >= 1, f"{prefix}.corpus_limit",
              self.corpus_limit, "must be >= 1")


@dataclass
class BudgetConfig:
    """The ``budget`` section: tokens of every continued pre-training arm (all get the same)."""

    tokens: int = 262144  # 64 steps of 32 × 128 packed MLM tokens
    set: list[str] = field(default_factory=lambda: ["schedule.warmup_steps=6"])  # CPT overrides

    def validate(self, prefix: str = "budget") -> None:
        check(self.tokens >= 1, f"{prefix}.tokens", self.tokens, "must be >= 1")


def finetune_settings() -> TextFinetuneSettings:
    """Study defaults of the fine-tuning protocol: 3 epochs, batch 32, no progress bars."""
    return TextFinetuneSettings(trainer=TrainerConfig(epochs=3, batch_size=32, log_every=50,
                                                      progress=False, tensorboard=False))


def _quiet(overrides: Sequence[str], seed: int) -> list[str]:
    return [*overrides, f"trainer.seed={seed}", "trainer.progress=false",
            "trainer.tensorboard=false"]


def base_arm(ledger: ArmLedger, base: BaseModelConfig, seed: int, extra_texts: Sequence[str] = ()
             ) -> dict[str, Any]:
    """The seed's base MLM (ledger key ``base/seed{seed}``) on ``base.corpus`` + ``extra_texts``."""
    from fmlab.data.text import load_text

    def run(run_dir: Path, resume: bool) -> dict[str, Any]:
        corpus = load_text(base.corpus, "train", limit=base.corpus_limit)
        texts = list(corpus.texts) + list(extra_texts)
        return pretrain_arm(base.config, _quiet(base.set, seed), run_dir, resume,
                            tokens=base.tokens, texts=texts)

    return ledger.run(f"base/seed{seed}", run)


def cpt_arm(ledger: ArmLedger, key: str, base: BaseModelConfig, budget: BudgetConfig,
            init: str, texts: Sequence[str], seed: int) -> dict[str, Any]:
    """Continued MLM pre-training of ``init`` on ``texts`` for exactly the steps that fit
    ``budget.tokens`` (same recipe as the base; tokenizer kept)."""
    def run(run_dir: Path, resume: bool) -> dict[str, Any]:
        return pretrain_arm(base.config, _quiet([*base.set, *budget.set], seed), run_dir, resume,
                            tokens=budget.tokens, texts=list(texts), init=init)

    return ledger.run(key, run)


def ft_arm(ledger: ArmLedger, key: str, arm_name: str, model: str, task: str,
           settings: TextFinetuneSettings, seed: int, data: tuple[Any, Any], db: Path | None,
           save_classifier: bool = False, **extra: Any) -> dict[str, Any]:
    """One fine-tuning arm (one seed) on the study's ``(train, test)`` data; the record carries
    ``arm_name`` and ``extra`` (fraction, pre-training tokens, …) for the tables."""
    def run(run_dir: Path, resume: bool) -> dict[str, Any]:
        (rec,) = finetune_arm(model, task, run_dir, seeds=[seed], settings=settings, db=db,
                              data=data, save_classifier=save_classifier)
        keep = {k: v for k, v in rec.items() if k not in ("protocol", "hyperparameters")}
        return {**keep, "arm_name": arm_name, **extra}

    return ledger.run(key, run)


def write_report(out: Path, title: str, records: list[dict[str, Any]], intro: Sequence[str],
                 command: str | None, config: Any, plot: Callable[[Path], list[Path]]) -> Path:
    """``OUT/report.md``: the intro lines, the table(s) written by the caller in ``intro``, the
    command and the resolved config; ``plot(out)`` draws the PNGs it lists."""
    from fmlab.engine.config import config_to_dict
    from fmlab.utils.io import atomic_write, write_json

    pngs = plot(out)
    cfg = config_to_dict(config)
    write_json(out / "study_config.json", cfg)
    lines = [f"# {title}", "", *intro, ""]
    lines += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    lines += ["## Command", "", "```", command or "(library call)", "```", "",
              f"Resolved config: `study_config.json`; per-arm records: `arms.json` "
              f"({len(records)} fine-tuning records).", ""]
    path = out / "report.md"
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))
    return path


def command_line(argv: Sequence[str] | None) -> str | None:
    """The command as typed (``fmlab study …``) for the report."""
    return None if argv is None else "fmlab " + " ".join(shlex.quote(a) for a in argv)
