"""``fmlab text eval``: held-out language-modelling quality of a pre-trained text model.

The held-out text (a source's ``test`` split by default) is packed into blocks with the model's
own tokenizer (:func:`fmlab.text.packing.pack_blocks`; at most ``max_blocks``, the first ones) and
scored according to the class saved in ``config.json`` (``architectures``):

* decoders (``GPT2LMHeadModel``, ``*ForCausalLM``): ``perplexity`` = exp(mean next-token NLL over
  every predicted position of a block), and ``continuation_perplexity`` (below);
* encoder-decoders (``T5ForConditionalGeneration``): ``continuation_perplexity`` = exp(mean NLL
  of the second half of each block, the first half given). Why this and not a span-corruption
  loss: it is defined the same way for a decoder (the first half as context), so UL2, span
  corruption and causal LM compare on one number (UL2's S-denoiser / "continuation" task);
  ``--mode-token [S2S]`` prepends a UL2 mode token to the context;
* encoders with an MLM head (``BertForMaskedLM``, ERNIE): ``mlm_accuracy`` and
  ``mlm_perplexity`` at a seeded 15 % of non-special positions all replaced by ``[MASK]`` (no
  80/10/10: the test asks for the original token), and ``pseudo_perplexity`` (Salazar et al.
  2020: every non-special position masked in turn, exp of the mean NLL; costs one forward pass
  per position, so on the first ``pppl_blocks`` blocks only);
* an ELECTRA discriminator (``ElectraForPreTraining``): replaced-token detection on a seeded 15 %
  of positions corrupted by samples of ``RUN_DIR/generator`` (uniform random tokens when there is
  no generator): ``rtd_accuracy`` over all non-special positions, ``rtd_replaced_recall``, and
  ``replaced_fraction`` (a sampled token equal to the original counts as original, as in training).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError, ModelError

__all__ = ["evaluate_text_model", "model_kind"]

MASK_RATE = 0.15


def model_kind(architecture: str) -> str:
    """``decoder``, ``seq2seq``, ``mlm`` or ``electra`` for a ``config.json`` architecture.

    Examples:
        >>> model_kind("GPT2LMHeadModel"), model_kind("T5ForConditionalGeneration")
        ('decoder', 'seq2seq')
        >>> model_kind("BertForMaskedLM"), model_kind("ElectraForPreTraining")
        ('mlm', 'electra')
    """
    if architecture == "ElectraForPreTraining":
        return "electra"
    if architecture.endswith("ForMaskedLM"):
        return "mlm"
    if architecture.endswith("ForConditionalGeneration"):
        return "seq2seq"
    if architecture.endswith("ForCausalLM") or architecture.endswith("LMHeadModel"):
        return "decoder"
    raise ModelError(f"config.json architecture {architecture!r} has no held-out metric here; "
                     "fmlab text eval takes GPT2LMHeadModel, T5ForConditionalGeneration, "
                     "*ForMaskedLM or ElectraForPreTraining")


def _load(model_dir: Path) -> tuple[Any, Any, str]:
    import json

    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
    from transformers import AutoTokenizer, ElectraForPreTraining

    from fmlab.text.classifier import _quiet_transformers

    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"--model {model_dir}: config.json not found (give RUN_DIR/model)")
    archs = json.loads(cfg_path.read_text()).get("architectures") or []
    if not archs:
        raise ModelError(f"{cfg_path}: no 'architectures' entry to choose the model class from")
    kind = model_kind(archs[0])
    cls = {"decoder": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM,
           "mlm": AutoModelForMaskedLM, "electra": ElectraForPreTraining}[kind]
    with _quiet_transformers():
        return cls.from_pretrained(str(model_dir)).eval(), \
            AutoTokenizer.from_pretrained(str(model_dir)), kind


def _nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                 reduction="sum"))


@torch.no_grad()
def _continuation(model: Any, blocks: torch.Tensor, kind: str, mode_id: int | None,
                  bs: int) -> dict[str, float]:
    """Perplexity of each block's second half given its first (and, for decoders, of all)."""
    half = blocks.shape[1] // 2
    cont = full = 0.0
    for i in range(0, len(blocks), bs):
        b = blocks[i:i + bs]
        ctx = b[:, :half]
        if mode_id is not None:
            ctx = torch.cat([torch.full((len(b), 1), mode_id), ctx], 1)
        if kind == "seq2seq":
            out = model(input_ids=ctx, labels=b[:, half:].contiguous()).logits
            cont += _nll_sum(out, b[:, half:])
        else:
            seq = torch.cat([ctx, b[:, half:]], 1)
            logits = model(input_ids=seq).logits
            cont += _nll_sum(logits[:, ctx.shape[1] - 1:-1], b[:, half:])
            if mode_id is None:
                full += _nll_sum(logits[:, :-1], b[:, 1:])
    out = {"continuation_perplexity": math.exp(cont / (len(blocks) * (blocks.shape[1] - half)))}
    if kind == "decoder" and mode_id is None:
        out["perplexity"] = math.exp(full / (len(blocks) * (blocks.shape[1] - 1)))
    return out


def _special_mask(blocks: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return torch.isin(blocks, special)


@torch.no_grad()
def _mlm(model: Any, tokenizer: Any, blocks: torch.Tensor, g: torch.Generator, bs: int,
         pppl_blocks: int) -> dict[str, float]:
    special = _special_mask(blocks, tokenizer)
    chosen = (torch.rand(blocks.shape, generator=g) < MASK_RATE) & ~special
    correct = nll = 0.0
    for i in range(0, len(blocks), bs):
        b, m = blocks[i:i + bs], chosen[i:i + bs]
        logits = model(input_ids=torch.where(m, tokenizer.mask_token_id, b)).logits[m]
        correct += float((logits.argmax(-1) == b[m]).sum())
        nll += _nll_sum(logits, b[m])
    n = max(1, int(chosen.sum()))
    total = count = 0.0
    for b, sp in zip(blocks[:pppl_blocks], special[:pppl_blocks], strict=True):
        pos = torch.nonzero(~sp).squeeze(1)
        for j in range(0, len(pos), bs * 4):
            p = pos[j:j + bs * 4]
            x = b.repeat(len(p), 1)
            x[torch.arange(len(p)), p] = tokenizer.mask_token_id
            logits = model(input_ids=x).logits[torch.arange(len(p)), p]
            total += _nll_sum(logits, b[p])
            count += len(p)
    return {"mlm_accuracy": correct / n, "mlm_perplexity": math.exp(nll / n),
            "pseudo_perplexity": math.exp(total / max(count, 1)), "masked_positions": float(n),
            "pseudo_perplexity_tokens": count}


@torch.no_grad()
def _electra(model: Any, tokenizer: Any, blocks: torch.Tensor, g: torch.Generator, bs: int,
             generator_dir: Path) -> dict[str, float]:
    gen = None
    if (generator_dir / "config.json").is_file():
        from transformers import AutoModelForMaskedLM

        from fmlab.text.classifier import _quiet_transformers

        with _quiet_transformers():
            gen = AutoModelForMaskedLM.from_pretrained(str(generator_dir)).eval()
    special = _special_mask(blocks, tokenizer)
    chosen = (torch.rand(blocks.shape, generator=g) < MASK_RATE) & ~special
    right = replaced_hit = n_replaced = 0.0
    for i in range(0, len(blocks), bs):
        b, m, sp = blocks[i:i + bs], chosen[i:i + bs], special[i:i + bs]
        if gen is not None:
            probs = gen(input_ids=torch.where(m, tokenizer.mask_token_id, b)).logits.softmax(-1)
            sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]).float(), 1,
                                        generator=g).reshape(b.shape)
        else:
            sampled = torch.randint(len(tokenizer), b.shape, generator=g)
        corrupt = torch.where(m, sampled, b)
        is_replaced = corrupt != b
        pred = model(input_ids=corrupt).logits > 0
        right += float(((pred == is_replaced) & ~sp).sum())
        replaced_hit += float((pred & is_replaced).sum())
        n_replaced += float(is_replaced.sum())
    n = float((~special).sum())
    return {"rtd_accuracy": right / n, "rtd_replaced_recall": replaced_hit / max(n_replaced, 1.0),
            "replaced_fraction": n_replaced / n, "generator": float(gen is not None)}


def evaluate_text_model(model_dir: str | Path, data: str, split: str = "test", *,
                        block_size: int | None = None, max_blocks: int = 64, batch_size: int = 16,
                        seed: int = 0, pppl_blocks: int = 4, mode_token: str | None = None,
                        data_root: str | None = None) -> dict[str, Any]:
    """Score ``model_dir`` on the held-out text of ``data`` (module doc).

    Args:
        model_dir: ``RUN_DIR/model`` (``save_pretrained`` folder with the tokenizer).
        data: a text source; ``split`` of it is scored.
        split: the split (default ``test``).
        block_size: tokens per block (default min(128, the model's positions)).
        max_blocks: score the first this many blocks.
        batch_size: blocks per forward pass.
        seed: seed of the masking / corruption draws.
        pppl_blocks: blocks scored by pseudo-perplexity (encoders).
        mode_token: a UL2 mode token prepended to the context (``[S2S]``, ``[NLG]``).
        data_root: folder of the named datasets.

    Returns:
        The metrics with the protocol (model folder and weights sha256, split hash, counts).
    """
    from fmlab.data.text import load_text
    from fmlab.text.packing import pack_blocks
    from fmlab.utils.io import sha256_file

    model_dir = Path(model_dir)
    model, tok, kind = _load(model_dir)
    pos = getattr(model.config, "max_position_embeddings", None) or \
        getattr(model.config, "n_positions", None)
    if model.config.model_type == "t5":
        pos = None
    size = block_size or min(128, pos or 128)
    if pos is not None and size + (mode_token is not None) > pos:
        raise ConfigError(f"--block-size: {size} is above the {pos} positions of {model_dir}")
    mode_id = None
    if mode_token is not None:
        mode_id = tok.convert_tokens_to_ids(mode_token)
        if mode_id is None or mode_id == tok.unk_token_id:
            raise ConfigError(f"--mode-token: {mode_token!r} is not a token of {model_dir}")
    text = load_text(data, split, data_root=data_root)
    blocks = pack_blocks(text.texts, tok, size)[:max_blocks]
    g = torch.Generator().manual_seed(int(seed))
    if kind in ("decoder", "seq2seq"):
        metrics = _continuation(model, blocks, kind, mode_id, batch_size)
    elif kind == "mlm":
        metrics = _mlm(model, tok, blocks, g, batch_size, pppl_blocks)
    else:
        metrics = _electra(model, tok, blocks, g, batch_size, model_dir.parent / "generator")
    weights = model_dir / "model.safetensors"
    return {"model": str(model_dir), "kind": kind, "architecture": type(model).__name__,
            "weights_sha256": sha256_file(weights) if weights.is_file() else None,
            "source": data, "split": split, "split_hash": text.split_hash,
            "n_blocks": len(blocks), "block_size": size, "seed": int(seed),
            "mode_token": mode_token, "metrics": metrics}
