"""Properties of the text objectives, measured on large random batches (issue 18)."""

from __future__ import annotations

import pytest
import torch

from fmlab.text.models import _toy_tokenizer, build_model, special_ids
from fmlab.text.objectives import (
    ELECTRA,
    ERNIE,
    MLM,
    TEXT_OBJECTIVES,
    UL2,
    SpanCorruption,
    choose_units,
    mask_tokens,
    noise_mask,
    span_corrupt,
)
from fmlab.text.objectives.ul2 import MODE_TOKENS
from fmlab.text.units import entity_spans, pack_with_units

TINY = {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "max_positions": 64}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_names() -> None:
    assert {"mlm", "electra", "clm", "t5", "ul2", "ernie"} <= set(TEXT_OBJECTIVES.names())


def test_mlm_rate_and_80_10_10_split() -> None:
    tok = _toy_tokenizer()
    obj = MLM(tok, TINY)
    g = _gen()
    ids = torch.randint(5, len(tok), (1024, 128), generator=g)
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id  # specials are never chosen
    inputs, labels = obj.corrupt(ids, None, g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    rate = chosen[:, 1:-1].float().mean().item()
    assert abs(rate - 0.15) < 0.003
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == tok.mask_token_id).sum().item() / n
    same = (inputs[chosen] == ids[chosen]).sum().item() / n
    other = 1 - as_mask - same
    n_allowed = len(tok) - len(special_ids(tok))
    assert abs(as_mask - 0.8) < 0.01
    # a random replacement equals the original with probability 1/|allowed|
    assert abs(same - (0.1 + 0.1 / n_allowed)) < 0.008
    assert abs(other - 0.1 * (1 - 1 / n_allowed)) < 0.008
    assert torch.equal(labels[chosen], ids[chosen]) and (inputs[~chosen] == ids[~chosen]).all()
    assert not torch.isin(inputs[chosen & (inputs != ids)],
                          torch.tensor([tok.pad_token_id, tok.cls_token_id, tok.sep_token_id])).any()


def test_whole_word_units_are_all_or_nothing() -> None:
    g = _gen(1)
    rows, L = 512, 96
    lengths = torch.randint(1, 4, (rows, L), generator=g)  # words of 1..3 pieces
    units = torch.zeros(rows, L, dtype=torch.long)
    for r in range(rows):
        pos = 0
        for n in lengths[r].tolist():
            units[r, pos:pos + n] = pos
            pos += n
            if pos >= L:
                break
    ids = torch.randint(5, 40, (rows, L), generator=g)
    chosen = choose_units(ids, torch.tensor([0, 1, 2, 3, 4]), 0.15, units, g)
    first = chosen.gather(1, units)
    assert torch.equal(first, chosen)  # every token follows its unit's first token
    assert abs(chosen.float().mean().item() - 0.15) < 0.005
    inp, lab = mask_tokens(ids, chosen, mask_id=4, allowed=torch.arange(5, 40), generator=g)
    assert torch.equal(lab != -100, chosen)


def test_electra_disc_labels_are_exactly_the_replaced_tokens() -> None:
    tok = _toy_tokenizer()  # 40 tokens: sampled == original happens often
    torch.manual_seed(0)
    obj = ELECTRA(tok, TINY)
    assert obj.generator.electra.embeddings is obj.model.electra.embeddings
    assert obj.generator.generator_lm_head.weight is obj.model.electra.embeddings.word_embeddings.weight
    assert obj.generator.config.hidden_size == TINY["hidden"] // 4
    g = _gen(2)
    ids = torch.randint(5, len(tok), (256, 64), generator=g)
    with torch.no_grad():
        r = obj.replace(ids, torch.ones_like(ids), None, g)
    masked = r["labels"] != -100
    assert torch.equal(r["disc_labels"].bool(), r["corrupted"] != ids)
    assert (r["corrupted"][~masked] == ids[~masked]).all()  # only masked positions change
    kept = masked & (r["corrupted"] == ids)
    assert kept.sum() > 0 and (r["disc_labels"][kept] == 0).all()  # sampled-correct = original
    assert not torch.isin(r["corrupted"][masked], torch.tensor(special_ids(tok))).any()
    assert abs(masked.float().mean().item() - 0.15) < 0.01
    shown = r["masked"][masked]
    assert abs((shown == tok.mask_token_id).float().mean().item() - 0.85) < 0.02
    loss, logs = obj({"input_ids": ids[:8]})
    assert abs(loss.item() - (logs["mlm_loss"] + 50 * logs["disc_loss"]).item()) < 1e-3


def test_electra_no_gradient_through_sampling() -> None:
    torch.manual_seed(0)
    obj = ELECTRA(_toy_tokenizer(), TINY)
    ids = torch.randint(5, 40, (8, 32))
    # discriminator loss alone leaves the generator's own (unshared) weights without gradient
    obj.gen_weight = 0.0
    loss, _ = obj({"input_ids": ids})
    loss.backward()
    gen_only = [p for n, p in obj.generator.named_parameters() if "embeddings" not in n
                and "generator_lm_head.weight" not in n]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in gen_only)


def test_span_corruption_rate_span_length_and_reassembly() -> None:
    g = _gen(3)
    sentinels = list(range(1000, 1100))
    lens, rates = [], []
    for _ in range(400):
        n = int(torch.randint(20, 200, (1,), generator=g))
        toks = torch.randint(0, 900, (n,), generator=g)
        mask = noise_mask(n, 0.15, 3.0, g)
        rates.append(mask.float().mean().item())
        runs = torch.diff(torch.cat([torch.tensor([0]), mask.int(), torch.tensor([0])]))
        lens.append(mask.sum().item() / (runs == 1).sum().item())
        assert mask.sum().item() == min(max(round(n * 0.15), 1), n - 1)
        inp, tgt = span_corrupt(toks, mask, sentinels, eos=1)
        assert _reassemble(inp[:-1], tgt[:-1], sentinels) == toks.tolist()
    assert abs(sum(rates) / len(rates) - 0.15) < 0.01
    assert abs(sum(lens) / len(lens) - 3.0) < 0.3


def _reassemble(inp: list[int], tgt: list[int], sentinels: list[int]) -> list[int]:
    spans: dict[int, list[int]] = {}
    cur = None
    for t in tgt:
        if t in sentinels:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    out: list[int] = []
    for t in inp:
        out += spans[t] if t in sentinels else [t]
    return out


def test_t5_objective_pairs_reassemble() -> None:
    tok = _toy_tokenizer(seq2seq=True)
    obj = SpanCorruption(tok, TINY)
    ids = torch.randint(20, 60, (16, 40), generator=_gen(4))
    for (inp, tgt), row in zip(obj.make_pairs(ids, torch.ones_like(ids), _gen(5)), ids, strict=True):
        assert inp[-1] == tgt[-1] == tok.eos_token_id
        assert _reassemble(inp[:-1], tgt[:-1], obj.sentinels) == row.tolist()


def test_ul2_mixture_ratios_and_mode_tokens() -> None:
    tok = _toy_tokenizer(seq2seq=True)
    obj = UL2(tok, TINY, r_ratio=0.5, s_ratio=0.2, x_ratio=0.3)
    ids = torch.randint(20, 60, (3000, 24), generator=_gen(6))
    pairs, fams = obj.make_pairs(ids, torch.ones_like(ids), _gen(7))
    for f, want in zip("RSX", (0.5, 0.2, 0.3), strict=True):
        assert abs(fams.count(f) / len(fams) - want) < 0.03
    mode = {tok.convert_tokens_to_ids(t): f for f, t in MODE_TOKENS.items()}
    x_rates = []
    for (inp, tgt), fam, row in zip(pairs, fams, ids, strict=True):
        assert mode[inp[0]] == fam
        body = inp[1:-1]
        if fam == "S":
            assert body + tgt[:-1] == row.tolist()
        else:
            assert _reassemble(body, tgt[:-1], obj.sentinels) == row.tolist()
            if fam == "X":
                x_rates.append(sum(t not in obj.sentinels for t in tgt[:-1]) / len(row))
    assert sum(x_rates) / len(x_rates) > 0.3  # extreme denoisers corrupt far more than 15 %
    no_mode = UL2(tok, TINY, mode_tokens=False)
    inp, _ = no_mode.make_pairs(ids[:4], torch.ones_like(ids[:4]), _gen(8))[0][0]
    assert inp[0] not in mode


def _wordpiece(texts: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    sp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=sp,
                                                           show_progress=False))
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                     special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


CHEM = ["<< Tamoxifen >> strongly inhibits [[ estrogen receptor alpha ]] in breast cells.",
        "The << dopamine agonist >> increased [[ tyrosine hydroxylase ]] activity.",
        "Treatment with << aspirin >> reduced [[ COX-2 ]] expression in Tumor Necrosis Factor assays."]


def test_ernie_masks_whole_entities_never_part() -> None:
    tok = _wordpiece(CHEM * 20)
    obj = ERNIE(tok, TINY, markers=True, heuristic=True)
    ids, units = pack_with_units(CHEM * 40, tok, 32, obj.unit_spec())
    # which tokens are inside an entity (by offsets), for the check
    entity_units = 0
    g = _gen(9)
    for _ in range(20):
        _, labels = obj.corrupt(ids, units, g)
        chosen = labels != -100
        assert torch.equal(chosen.gather(1, units), chosen)
    sizes = torch.bincount((units + 1000 * torch.arange(len(units))[:, None]).flatten())
    entity_units = int((sizes > 1).sum())
    assert entity_units > 0
    # an entity of several tokens is one unit: "estrogen receptor alpha" -> >= 3 tokens
    enc = tok(CHEM[0], return_offsets_mapping=True)
    _, u = pack_with_units([CHEM[0]], tok, len(enc["input_ids"]), obj.unit_spec())
    a, b = entity_spans(CHEM[0], markers=True)[1]
    inside = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and a <= s < b]
    assert len(inside) >= 3 and len({int(u[0, i]) for i in inside}) == 1
    outside = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and not a <= s < b]
    assert all(int(u[0, i]) not in {int(u[0, inside[0]])} for i in outside)


def test_ernie_generation_branch_is_causal_and_nlu_path_is_a_bert() -> None:
    torch.manual_seed(0)
    tok = _toy_tokenizer()
    obj = ERNIE(tok, {**TINY, "layers": 2, "task_layers": 1}).eval()
    assert obj.model.config.num_hidden_layers == 3 and len(obj.unified.nlg_layers) == 1
    ids = torch.randint(5, 40, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = torch.randint(5, 40, (2, 4))
    with torch.no_grad():
        a = obj.unified.nlg_logits(ids, torch.ones_like(ids))
        b = obj.unified.nlg_logits(changed, torch.ones_like(ids))
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-5) and not torch.allclose(a[:, 8:], b[:, 8:])
    assert obj.unified.nlg_head.predictions.decoder.weight is \
        obj.model.bert.embeddings.word_embeddings.weight


def test_build_model_errors() -> None:
    from fmlab.errors import ConfigError

    tok = _toy_tokenizer()
    with pytest.raises(ConfigError, match="unknown key 'hiden'"):
        build_model("bert", {"hiden": 8}, tok)
    with pytest.raises(ConfigError, match="model.arch"):
        build_model("lstm", {}, tok)
    with pytest.raises(ConfigError, match="sentinel"):
        SpanCorruption(tok, TINY)
