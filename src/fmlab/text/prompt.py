"""A prompt-based (generative) text classifier: the label words predicted by the MLM head.

The classification is cast as masked-word prediction, as in PET / LM-BFF and the "generative"
classifiers studied for continued pre-training in unsupervised domain adaptation (papers.md #15):
each text is wrapped in a template holding the mask token (``"{text} it was [MASK] ."``) and the
class scores are the MLM head's logits of one label word per class at the mask position
(``bad`` / ``good`` for SST-2). Nothing new is initialised — no linear head — so what the masked-LM
learnt about the words around the mask (during pre-training or *continued* pre-training on target
text) is used directly, which is why continued pre-training can teach such a classifier the task
(papers.md #15's mechanism finding). Fine-tuning trains the whole MLM (head included) with
cross-entropy over the label-word logits (:class:`fmlab.text.classifier.TextClassification`).

The template is applied at encoding time (:func:`encode_prompted`): the text is truncated first, so
the template (and its mask) is never cut off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError, ModelError

__all__ = ["PromptClassifier", "encode_prompted", "label_word_ids", "load_prompt_classifier",
           "split_template"]

TEXT_SLOT = "{text}"
MASK_SLOT = "[MASK]"


def split_template(template: str) -> tuple[str, str]:
    """``(before, after)`` the ``{text}`` slot; the template must hold ``{text}`` once and the
    mask slot ``[MASK]`` (replaced by the tokenizer's mask token) once, after the text.

    Examples:
        >>> split_template("{text} it was [MASK] .")
        ('', ' it was [MASK] .')
    """
    if template.count(TEXT_SLOT) != 1 or template.count(MASK_SLOT) != 1:
        raise ConfigError(f"prompt.template: {template!r} must hold {TEXT_SLOT} once and "
                          f"{MASK_SLOT} once")
    before, after = template.split(TEXT_SLOT)
    return before, after


def label_word_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """The vocabulary id of each label word; each must be one token of the model's vocabulary
    (a word split into pieces has no single logit to read).

    Raises:
        ConfigError: a word that is not one token (the message names it and its pieces).
    """
    ids = []
    for w in words:
        pieces = tokenizer.tokenize(w)
        if len(pieces) != 1 or tokenizer.convert_tokens_to_ids(pieces[0]) == tokenizer.unk_token_id:
            raise ConfigError(f"prompt.label_words: {w!r} is not one token of this model's "
                              f"vocabulary (it splits into {pieces}); choose a word that is")
        ids.append(int(tokenizer.convert_tokens_to_ids(pieces[0])))
    if len(set(ids)) != len(ids):
        raise ConfigError(f"prompt.label_words: {list(words)} map to repeated tokens {ids}")
    return ids


def _special_wrap(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence (``[CLS]`` / ``[SEP]``
    for BERT), read off an encoded probe word."""
    full = list(tokenizer("a")["input_ids"])
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    raise ModelError("the tokenizer's special-token template could not be read")


def encode_prompted(texts: Sequence[str], tokenizer: Any, max_length: int, template: str,
                    labels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Encode ``template`` around each text (special tokens included), cutting the *text* so the
    whole example fits ``max_length`` tokens; exactly one mask token per example.

    Examples:
        >>> from fmlab.text.tokenizer import train_tokenizer
        >>> tok = train_tokenizer(["a b c it was good bad"] * 3, vocab_size=40)
        >>> ex = encode_prompted(["a b c a b c"], tok, 8, "{text} it was [MASK] .")
        >>> ex[0]["input_ids"].tolist().count(tok.mask_token_id), len(ex[0]["input_ids"])
        (1, 8)
    """
    before, after = split_template(template)
    after = after.replace(MASK_SLOT, tokenizer.mask_token)
    head = tokenizer(before, add_special_tokens=False)["input_ids"] if before.strip() else []
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    prefix, suffix = _special_wrap(tokenizer)
    room = int(max_length) - len(prefix) - len(suffix) - len(head) - len(tail)
    if room < 1:
        raise ConfigError(f"data.max_length: {max_length} leaves no room for the text around the "
                          f"template {template!r}")
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"encode_prompted: {len(texts)} texts but {len(labels)} labels")
    body = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    out: list[dict[str, Any]] = []
    for i, ids in enumerate(body):
        full = prefix + head + ids[:room] + tail + suffix
        ex: dict[str, Any] = {"input_ids": torch.as_tensor(full, dtype=torch.int64)}
        if labels is not None:
            ex["labels"] = int(labels[i])
        out.append(ex)
    return out


class PromptClassifier(nn.Module):
    """Class logits = the MLM's logits of the label words at the (single) mask position.

    Args:
        mlm: a ``transformers`` masked-LM (``...ForMaskedLM``: backbone and MLM head).
        label_ids: vocabulary id of each class's label word.
        pad_id, mask_id: the tokenizer's pad and mask ids.

    Examples:
        >>> from transformers import BertConfig, BertForMaskedLM
        >>> _ = torch.manual_seed(0)
        >>> mlm = BertForMaskedLM(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=1, intermediate_size=8, max_position_embeddings=16))
        >>> clf = PromptClassifier(mlm, [5, 7], pad_id=0, mask_id=4).eval()
        >>> ids = torch.tensor([[2, 9, 4, 3], [2, 4, 3, 0]])
        >>> full = mlm(input_ids=ids, attention_mask=(ids != 0).long()).logits
        >>> torch.allclose(clf(ids), torch.stack([full[0, 2, [5, 7]], full[1, 1, [5, 7]]]))
        True
    """

    pool = "mask"

    def __init__(self, mlm: nn.Module, label_ids: Sequence[int], pad_id: int, mask_id: int) -> None:
        super().__init__()
        self.mlm, self.pad_id, self.mask_id = mlm, int(pad_id), int(mask_id)
        self.register_buffer("label_ids", torch.as_tensor(list(label_ids), dtype=torch.int64),
                             persistent=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        length = max(1, int(attention_mask.sum(1).max()))
        input_ids, attention_mask = input_ids[:, :length], attention_mask[:, :length]
        is_mask = input_ids == self.mask_id
        if not bool((is_mask.sum(1) == 1).all()):
            raise DataError("PromptClassifier: every example needs exactly one mask token "
                            "(encode with fmlab.text.prompt.encode_prompted)")
        h = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        at_mask = h[is_mask]  # (B, hidden), one row per example in order
        return self._head(at_mask)[:, self.label_ids]

    def _head(self, h: Tensor) -> Tensor:
        """The MLM head on the mask positions only (the whole vocabulary; cheap at one row each)."""
        for name in ("cls", "lm_head", "generator_lm_head"):
            head = getattr(self.mlm, name, None)
            if head is not None:
                return head(h)
        raise ModelError(f"PromptClassifier: {type(self.mlm).__name__} has no MLM head "
                         "(cls / lm_head)")


def load_prompt_classifier(spec: str, label_words: Sequence[str], init_seed: int = 0
                           ) -> tuple[PromptClassifier, Any, str]:
    """``(classifier, tokenizer, model_type)`` of ``RUN_DIR/model`` loaded *with* its MLM head
    (``random:RUN_DIR/model``: the same config with weights drawn from ``init_seed``).

    Raises:
        ModelError: the folder cannot be loaded as a masked LM.
        ConfigError: a label word that is not one token.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from fmlab.text.classifier import _quiet_transformers

    random_init = spec.startswith("random:")
    path = Path(spec.removeprefix("random:")).expanduser()
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(str(path))
            tok = AutoTokenizer.from_pretrained(str(path))
            if random_init:
                torch.manual_seed(int(init_seed))
                mlm = AutoModelForMaskedLM.from_config(config)
            else:
                mlm = AutoModelForMaskedLM.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"--model {spec}: cannot load as a masked LM for the prompt classifier "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if tok.mask_token_id is None:
        raise ModelError(f"--model {spec}: the tokenizer has no mask token")
    ids = label_word_ids(tok, label_words)
    return PromptClassifier(mlm, ids, tok.pad_token_id, tok.mask_token_id), tok, config.model_type
