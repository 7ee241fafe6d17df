"""Pieces shared by the text studies ``fmlab study domain`` and ``fmlab study entigraph``.

Both studies pre-train several arms with ``fmlab text pretrain``'s experiment (one YAML of that
command, :class:`PretrainSection`, plus ``--set`` items) on corpora that are lists of named text
sources, and store every number with its protocol. The pieces that are the same in both live here
so that each study's module holds only its own design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmlab.errors import ConfigError
from fmlab.utils.validation import check

__all__ = ["PretrainSection", "check_seeds", "load_corpus", "resolve_config_path", "seed_key"]


@dataclass
class PretrainSection:
    """How every arm pre-trains: ``fmlab text pretrain``'s YAML (objective, model, tokenizer,
    optimiser) and ``--set`` items applied to it. The study fills the steps (from its token budget),
    the seed and the texts."""

    config: str = "configs/text/mlm_medabs.yaml"
    # short runs: a short warm-up and a higher peak rate than the 600-step text configs
    set: list[str] = field(default_factory=lambda: [
        "trainer.log_every=20", "trainer.checkpoint_every=50", "trainer.tensorboard=false",
        "schedule.warmup_steps=10", "optim.lr=0.001"])

    def validate(self, prefix: str = "pretrain") -> None:
        check(all(isinstance(s, str) and "=" in s for s in self.set), f"{prefix}.set", self.set,
              "must list KEY=VALUE strings")

    def resolved(self) -> Path:
        """The YAML path (:func:`resolve_config_path`)."""
        return resolve_config_path(self.config, "pretrain.config")

    def check_loads(self) -> None:
        """Fail before any arm runs when the pre-training YAML or a ``pretrain.set`` item is bad."""
        from fmlab.experiments.text_pretrain import load_text_pretrain_config

        try:
            load_text_pretrain_config(self.resolved(), self.set)
        except ConfigError as e:
            raise ConfigError(f"pretrain ({self.config}): {e}") from None


def resolve_config_path(path: str, key: str) -> Path:
    """``path`` as given (relative to the working directory), else relative to the project root
    that holds the shipped ``configs/`` (so a study runs from any folder of a source checkout).

    Raises:
        ConfigError: neither exists; the message names ``key`` and the path.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    root = Path(__file__).resolve().parents[3]
    if not p.is_absolute() and (root / p).is_file():
        return root / p
    raise ConfigError(f"{key}: {path} not found (relative paths are tried from the working "
                      f"directory and from {root})")


def check_seeds(seeds: Sequence[int], key: str = "seeds") -> None:
    """At least one seed, no repeats (a repeated seed would silently reuse an arm)."""
    check(len(seeds) >= 1, key, seeds, "must list at least one seed")
    check(len(set(seeds)) == len(seeds), key, seeds, "must not repeat a seed")
    check(all(int(s) >= 0 for s in seeds), key, seeds, "must be >= 0")


def load_corpus(sources: Sequence[str], split: str, *, limit: int | None = None,
                data_root: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """The texts of ``split`` of every source in ``sources``, concatenated in that order, and
    what they are (per source: records, split hash) for the protocol.

    Args:
        sources: named text sources (``medabs``, ``shakespeare``, ``sst2``, ...).
        split: ``train`` or ``test``.
        limit: a seeded subset of at most this many records per source (smoke runs, tests).
        data_root: default ``$FMLAB_DATA``.
    """
    from fmlab.data.text import load_text

    if not sources:
        raise ConfigError(f"corpora: an empty list of sources for the {split} split")
    texts: list[str] = []
    parts = {}
    for src in sources:
        d = load_text(src, split, data_root=data_root, limit=limit)
        texts += list(d.texts)
        parts[src] = {"split": split, "records": len(d), "split_hash": d.split_hash}
    return texts, parts


def seed_key(kind: str, arm: str, seed: int, task: str | None = None) -> str:
    """The ledger key of one arm (``pretrain/general/seed1``, ``finetune/general/seed1/sst2``)."""
    return f"{kind}/{arm}/seed{seed}" + (f"/{task}" if task else "")
