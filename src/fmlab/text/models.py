"""Small Hugging Face ``transformers`` models for text pre-training, built from a size dict.

Why HF classes rather than our own transformer: the run ends with ``save_pretrained`` so that a
plain ``AutoModel.from_pretrained(RUN_DIR/model)`` (and the with-head class) loads what fmlab
trained, which fine-tuning and evaluation (and anyone outside fmlab) rely on.

``size`` keys (all optional): ``hidden`` (128), ``layers`` (2), ``heads`` (2), ``intermediate``
(4 x hidden), ``max_positions`` (512; learned positions of BERT/ELECTRA/GPT; T5 uses relative
positions and has no limit), ``dropout`` (0.1), ``decoder_layers`` (T5, default ``layers``),
``embedding`` (ELECTRA embedding width shared by generator and discriminator, default
``hidden``), ``task_layers`` (ERNIE: layers of each task-specific branch on top of the
``layers`` shared ones, default 1). Unknown keys are refused by name.
"""

from __future__ import annotations

from typing import Any

from fmlab.errors import ConfigError

__all__ = ["ARCHS", "SIZE_KEYS", "build_generator", "build_model", "model_max_positions",
           "special_ids"]

#: architecture -> the with-head class saved as RUN_DIR/model
ARCHS = {"bert": "BertForMaskedLM", "electra": "ElectraForPreTraining",
         "t5": "T5ForConditionalGeneration", "gpt": "GPT2LMHeadModel", "ernie": "BertForMaskedLM"}
SIZE_KEYS = ("hidden", "layers", "heads", "intermediate", "max_positions", "dropout",
             "decoder_layers", "embedding", "task_layers")


def _size(size: dict[str, Any] | None) -> dict[str, Any]:
    """``size`` with defaults filled; unknown keys and bad values raise ConfigError."""
    size = dict(size or {})
    unknown = sorted(set(size) - set(SIZE_KEYS))
    if unknown:
        raise ConfigError(f"model.size: unknown key {unknown[0]!r}; known: {', '.join(SIZE_KEYS)}")
    s: dict[str, Any] = {"hidden": 128, "layers": 2, "heads": 2, "max_positions": 512,
                         "dropout": 0.1, "task_layers": 1}
    s.update(size)
    s.setdefault("intermediate", 4 * s["hidden"])
    s.setdefault("decoder_layers", s["layers"])
    s.setdefault("embedding", s["hidden"])
    for k in ("hidden", "layers", "heads", "intermediate", "max_positions", "decoder_layers",
              "embedding", "task_layers"):
        if not isinstance(s[k], int) or s[k] < 1:
            raise ConfigError(f"model.size.{k}: {s[k]!r} must be a positive integer")
    if s["hidden"] % s["heads"]:
        raise ConfigError(f"model.size.heads: {s['heads']} does not divide hidden {s['hidden']}")
    if not 0.0 <= float(s["dropout"]) < 1.0:
        raise ConfigError(f"model.size.dropout: {s['dropout']!r} must be in [0, 1)")
    return s


def special_ids(tokenizer: Any) -> list[int]:
    """Ids of every special token of ``tokenizer`` (never masked, never a random replacement).

    Examples:
        >>> special_ids(_toy_tokenizer())[:3]
        [0, 1, 2]
    """
    return sorted({int(i) for i in tokenizer.all_special_ids})


def _check_vocab(tokenizer: Any) -> int:
    n, n_special = len(tokenizer), len(special_ids(tokenizer))
    if n <= n_special:
        raise ConfigError(f"tokenizer: vocabulary of {n} tokens has no room beside its "
                          f"{n_special} special tokens")
    if tokenizer.pad_token_id is None:
        raise ConfigError("tokenizer: has no pad token")
    return n


def build_model(arch: str, size: dict[str, Any] | None, tokenizer: Any) -> Any:
    """A randomly initialised HF model with its pre-training head (``ARCHS[arch]``).

    Args:
        arch: ``bert``, ``electra`` (the discriminator), ``t5``, ``gpt`` or ``ernie`` (the
            understanding path of the unified model: ``layers + task_layers`` BERT layers).
        size: see the module docstring.
        tokenizer: a ``PreTrainedTokenizerFast`` (vocabulary size and special-token ids).

    Returns:
        The ``transformers`` model (seed torch first for a reproducible init).

    Examples:
        >>> m = build_model("bert", {"hidden": 32, "heads": 2, "layers": 1}, _toy_tokenizer())
        >>> type(m).__name__, m.config.hidden_size
        ('BertForMaskedLM', 32)
    """
    import transformers as T

    if arch not in ARCHS:
        raise ConfigError(f"model.arch: unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    s, vocab = _size(size), _check_vocab(tokenizer)
    pad = tokenizer.pad_token_id
    common = {"vocab_size": vocab, "pad_token_id": pad}
    if arch in ("bert", "ernie"):
        layers = s["layers"] + (s["task_layers"] if arch == "ernie" else 0)
        cfg = T.BertConfig(hidden_size=s["hidden"], num_hidden_layers=layers,
                           num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
                           max_position_embeddings=s["max_positions"], type_vocab_size=2,
                           hidden_dropout_prob=s["dropout"],
                           attention_probs_dropout_prob=s["dropout"], **common)
        return T.BertForMaskedLM(cfg)
    if arch == "electra":
        return T.ElectraForPreTraining(_electra_config(s, s["hidden"], s["heads"], s["intermediate"],
                                                       common))
    if arch == "gpt":
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        cfg = T.GPT2Config(n_embd=s["hidden"], n_layer=s["layers"], n_head=s["heads"],
                           n_inner=s["intermediate"], n_positions=s["max_positions"],
                           resid_pdrop=s["dropout"], embd_pdrop=s["dropout"],
                           attn_pdrop=s["dropout"], bos_token_id=eos, eos_token_id=eos, **common)
        return T.GPT2LMHeadModel(cfg)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    cfg = T.T5Config(d_model=s["hidden"], d_kv=s["hidden"] // s["heads"], d_ff=s["intermediate"],
                     num_layers=s["layers"], num_decoder_layers=s["decoder_layers"],
                     num_heads=s["heads"], dropout_rate=s["dropout"], eos_token_id=eos,
                     decoder_start_token_id=pad, **common)
    return T.T5ForConditionalGeneration(cfg)


def _electra_config(s: dict[str, Any], hidden: int, heads: int, intermediate: int,
                    common: dict[str, Any]) -> Any:
    import transformers as T

    return T.ElectraConfig(embedding_size=s["embedding"], hidden_size=hidden,
                           num_hidden_layers=s["layers"], num_attention_heads=heads,
                           intermediate_size=intermediate, max_position_embeddings=s["max_positions"],
                           hidden_dropout_prob=s["dropout"], attention_probs_dropout_prob=s["dropout"],
                           type_vocab_size=2, **common)


def build_generator(size: dict[str, Any] | None, tokenizer: Any, fraction: float = 0.25) -> Any:
    """ELECTRA's generator: an ``ElectraForMaskedLM`` ``fraction`` as wide as the discriminator
    (hidden, heads and feed-forward scaled; same depth and embedding width, so the embeddings
    can be shared).

    Args:
        size: the discriminator's size dict.
        tokenizer: the run's tokenizer.
        fraction: generator width / discriminator width (paper: 1/4 to 1/2).

    Returns:
        The generator model.

    Examples:
        >>> g = build_generator({"hidden": 64, "heads": 4, "layers": 1}, _toy_tokenizer(), 0.25)
        >>> g.config.hidden_size, g.config.num_attention_heads, g.config.embedding_size
        (16, 1, 64)
    """
    import transformers as T

    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"objective.generator_fraction: {fraction!r} must be in (0, 1]")
    s, vocab = _size(size), _check_vocab(tokenizer)
    heads = max(1, round(s["heads"] * fraction))
    hidden = max(heads, round(s["hidden"] * fraction / heads) * heads)
    common = {"vocab_size": vocab, "pad_token_id": tokenizer.pad_token_id}
    return T.ElectraForMaskedLM(_electra_config(s, hidden, heads,
                                                max(1, round(s["intermediate"] * fraction)), common))


def model_max_positions(model: Any) -> int | None:
    """The longest input a model's learned position table takes (None: relative positions).

    Examples:
        >>> model_max_positions(build_model("gpt", {"hidden": 16, "max_positions": 64},
        ...                                 _toy_tokenizer()))
        64
    """
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions"):
        if getattr(cfg, "model_type", "") != "t5" and getattr(cfg, key, None):
            return int(getattr(cfg, key))
    return None


def _toy_tokenizer(seq2seq: bool = False) -> Any:
    """A word-level tokenizer for doctests and tests: BERT specials + 35 words, or (``seq2seq``)
    T5 specials, mode tokens and 10 sentinels + 45 words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if seq2seq:
        modes = ["[NLU]", "[NLG]", "[S2S]"]
        sentinels = [f"<extra_id_{i}>" for i in range(10)]
        specials = ["<pad>", "</s>", "<unk>", "[MASK]", "[CLS]", "[SEP]", *modes, *sentinels]
        words = [f"w{i}" for i in range(60 - len(specials))]
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        words = [f"w{i}" for i in range(35)]
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[2] if seq2seq else "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if seq2seq:
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                       unk_token="<unk>", mask_token="[MASK]", cls_token="[CLS]",
                                       sep_token="[SEP]",
                                       additional_special_tokens=modes + sentinels)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
