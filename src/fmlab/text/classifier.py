"""A sequence classifier on a pre-trained (or randomly initialised) text backbone.

``--model RUN_DIR/model`` is a ``save_pretrained`` folder (config.json, model.safetensors,
tokenizer.json) of a model *with* its pre-training head; the backbone is loaded with
``AutoModel.from_pretrained`` (BERT/ELECTRA discriminator/GPT-2) or ``T5EncoderModel`` (T5: the
encoder only), so the head's weights are dropped. ``random:RUN_DIR/model`` is the same config and
tokenizer with freshly initialised weights (``torch.manual_seed(init_seed)``): the
"from random initialisation" baseline.

Pooling (``pool=auto``): the first token for bidirectional encoders with a ``[CLS]`` token (BERT,
ELECTRA, ERNIE), the mean over non-pad tokens for T5 encoders and GPT decoders (their first token
is an ordinary word, and a causal decoder's first position sees nothing else). A dropout of
``head_dropout`` and a ``Linear(hidden, num_classes)`` head follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, ModelError

__all__ = ["LoadedBackbone", "TextClassification", "TextClassifier", "load_backbone",
           "model_positions", "resolve_pool"]

MEAN_POOL_TYPES = ("t5", "mt5", "umt5", "gpt2", "gpt_neo", "gptj", "llama")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence ``transformers``' "weights not used / newly initialised" notes: dropping the
    pre-training head is the point here."""
    from transformers.utils import logging

    before, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(before)
        if bars:
            logging.enable_progress_bar()


@dataclass
class LoadedBackbone:
    """A backbone and what results record about it.

    Attributes:
        model: the ``transformers`` backbone (no pre-training head).
        tokenizer: the tokenizer saved with it.
        spec: the ``--model`` value as given.
        path: the model folder.
        random_init: True for ``random:``.
        weights_sha256: sha256 of ``model.safetensors`` (None for ``random:``).
        init_seed: the seed of a random init (None otherwise).
        model_type: ``config.model_type``.
    """

    model: nn.Module
    tokenizer: Any
    spec: str
    path: Path
    random_init: bool
    weights_sha256: str | None
    init_seed: int | None
    model_type: str

    @property
    def name(self) -> str:
        """The name results are stored under (what ``Protocol.of`` reads)."""
        return f"{'random:' if self.random_init else ''}{self.path}"


def load_backbone(spec: str, init_seed: int = 0) -> LoadedBackbone:
    """Load ``RUN_DIR/model`` (pre-trained) or ``random:RUN_DIR/model`` (same config, new weights).

    Args:
        spec: the model folder, optionally prefixed ``random:``.
        init_seed: seed of the random init for ``random:``.

    Returns:
        The backbone, its tokenizer and the facts results record.

    Raises:
        ModelError: the folder has no config.json / tokenizer, or cannot be loaded.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

    from fmlab.utils.io import sha256_file

    random_init = spec.startswith("random:")
    path = Path(spec.removeprefix("random:")).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"--model {spec}: {path / 'config.json'} not found; give RUN_DIR/model, a "
                         "save_pretrained folder (config.json, model.safetensors, tokenizer.json)")
    if not (path / "tokenizer.json").is_file():
        raise ModelError(f"--model {spec}: {path / 'tokenizer.json'} not found (the tokenizer is "
                         "saved in the model folder)")
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(str(path))
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            cls = T5EncoderModel if config.model_type in ("t5", "mt5", "umt5") else AutoModel
            if random_init:
                torch.manual_seed(int(init_seed))
                model = cls.from_config(config) if cls is AutoModel else cls(config)
            else:
                model = cls.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"--model {spec}: cannot load ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    weights = path / "model.safetensors"
    sha = sha256_file(weights) if weights.is_file() and not random_init else None
    return LoadedBackbone(model, tokenizer, spec, path, random_init, sha,
                          int(init_seed) if random_init else None, config.model_type)


def resolve_pool(pool: str, model_type: str) -> str:
    """``cls`` or ``mean`` for ``pool`` (``auto``: module doc).

    Examples:
        >>> resolve_pool("auto", "bert"), resolve_pool("auto", "t5"), resolve_pool("cls", "t5")
        ('cls', 'mean', 'cls')
    """
    if pool == "auto":
        return "mean" if model_type in MEAN_POOL_TYPES else "cls"
    if pool not in ("cls", "mean"):
        raise ConfigError(f"pool: {pool!r} must be auto, cls or mean")
    return pool


def model_positions(model: nn.Module) -> int | None:
    """The backbone's number of positions (None: relative positions, e.g. T5)."""
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and cfg.model_type not in ("t5", "mt5", "umt5"):
            return v
    return None


class TextClassifier(nn.Module):
    """``head(dropout(pool(backbone(input_ids))))`` (module doc).

    Called with padded ``input_ids`` alone (as :func:`fmlab.evaluate.predict_logits` and the
    validation monitor do), the attention mask is ``input_ids != pad_id`` and the columns past
    the longest sequence are cut, so a chunk of short texts costs what it should.

    Args:
        backbone: a ``transformers`` base model returning ``last_hidden_state``.
        num_classes: outputs of the head.
        pad_id: the tokenizer's pad id.
        pool: ``cls`` or ``mean``.
        head_dropout: dropout before the head.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pad_id: int, pool: str,
                 head_dropout: float = 0.1) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ConfigError(f"pool: {pool!r} must be cls or mean")
        self.backbone, self.pad_id, self.pool = backbone, int(pad_id), pool
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(int(backbone.config.hidden_size), int(num_classes))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        length = max(1, int(attention_mask.sum(1).max()))
        input_ids, attention_mask = input_ids[:, :length], attention_mask[:, :length]
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pool == "cls":
            pooled = h[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))


class TextClassification(nn.Module):
    """Engine objective: cross-entropy of ``model(input_ids, attention_mask)`` against ``labels``.

    Examples:
        >>> class Toy(nn.Module):
        ...     def forward(self, ids, mask=None):
        ...         return torch.stack([ids.float().sum(1), -ids.float().sum(1)], 1)
        >>> loss, logs = TextClassification(Toy())({"input_ids": torch.ones(2, 3, dtype=torch.long),
        ...     "attention_mask": torch.ones(2, 3), "labels": torch.tensor([0, 0])})
        >>> round(float(loss), 4), float(logs["train_accuracy"])
        (0.0025, 1.0)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        logits = self.model(batch["input_ids"], batch.get("attention_mask"))
        y = batch["labels"]
        loss = F.cross_entropy(logits.float(), y)
        return loss, {"train_accuracy": (logits.argmax(1) == y).float().mean().detach()}

    def embed(self, input_ids: Tensor) -> Tensor:
        """The classifier's logits (what engine monitors embed)."""
        return self.model(input_ids)
