"""DPTR pieces: ORP only in pre-training, teacher-forced CE, greedy decoding, memorisation, metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.metrics.text_recognition import character_accuracy, edit_distance, sequence_accuracy
from fmlab.multimodal.dptr import DPTRObjective, image_tokens, orp_perturb
from fmlab.multimodal.textdecoder import (
    BOS,
    EOS,
    PAD,
    CharDecoder,
    CharVocab,
    FixedTextTokens,
    teacher_forced_inputs,
)

D, MAX_LEN = 8, 4


def _labels(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows])


def _pretrain(perturb: bool = True, bank: torch.Tensor | None = None, seed: int = 0, **kw) -> DPTRObjective:
    torch.manual_seed(seed)
    vocab = CharVocab.digits()
    dec = CharDecoder(vocab.size, D, MAX_LEN, d_model=16, heads=2, layers=1)
    bank = torch.randn(7, D) if bank is None else bank
    return DPTRObjective(dec, vocab, text_tokens=FixedTextTokens(vocab, D, MAX_LEN), image_bank=bank,
                         perturb=perturb, **kw)


class _ColumnEncoder(nn.Module):
    """Tiny image encoder: one conv, a (B, D, H, W) map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, D, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images.float()[:, None] / 255)


BATCH = {"labels": _labels([[1, 2], [3, 4, 5], [0, 0, 7, 9]])}


# --- the perturbation is applied only in pre-training -------------------------------------------

@pytest.mark.parametrize("bank_shape", [(7, D), (7, MAX_LEN + 1, D)])
def test_pretrain_memory_is_text_plus_beta_times_a_bank_row(bank_shape):
    bank = torch.randn(*bank_shape)
    obj = _pretrain(bank=bank, beta_max=0.1).train()
    e_text = obj.text_tokens(obj.texts(BATCH))
    mem = obj.memory(BATCH)
    beta, idx = obj.last_beta, obj.last_index
    assert beta.shape == (3,) and bool(((beta >= 0) & (beta <= 0.1)).all()) and bool((beta > 0).all())
    e_img = bank[idx] if bank.ndim == 3 else bank[idx][:, None, :]
    torch.testing.assert_close(mem - e_text, (beta[:, None, None] * e_img).expand_as(mem))
    assert not torch.equal(mem, e_text)


def test_beta_spans_zero_to_beta_max():
    e = torch.zeros(2000, 1, 3)
    _, beta, idx = orp_perturb(e, torch.ones(5, 3), 0.2, torch.Generator().manual_seed(0))
    assert 0 <= float(beta.min()) < 0.01 and 0.19 < float(beta.max()) <= 0.2
    assert set(idx.tolist()) == set(range(5))


def test_pretrain_forward_logs_the_perturbation_and_eval_does_not_perturb():
    obj = _pretrain().train()
    _, logs = obj(BATCH)
    assert 0 <= float(logs["beta"]) <= 0.1
    obj.eval()
    e_text = obj.text_tokens(obj.texts(BATCH))
    assert torch.equal(obj.memory(BATCH), e_text)
    assert "beta" not in obj(BATCH)[1]


def test_predict_never_perturbs_even_in_train_mode():
    obj = _pretrain().train()
    obj.last_beta = None
    obj.predict(BATCH)
    assert obj.last_beta is None


def test_no_perturbation_baseline_reads_the_text_tokens_unchanged():
    obj = _pretrain(perturb=False).train()
    assert torch.equal(obj.memory(BATCH), obj.text_tokens(obj.texts(BATCH)))
    assert "beta" not in obj(BATCH)[1]


def test_finetune_memory_is_the_image_tokens_unchanged():
    pre = _pretrain().train()
    enc = _ColumnEncoder()
    ft = pre.finetune(enc).train()
    assert ft.decoder is pre.decoder and ft.stage == "finetune"
    images = torch.randint(0, 256, (3, 6, 10), dtype=torch.uint8)
    batch = {**BATCH, "images": images}
    torch.testing.assert_close(ft.memory(batch), image_tokens(enc(images)), rtol=0, atol=0)
    assert torch.equal(ft.memory(batch, perturb=True), ft.memory(batch))
    loss, logs = ft(batch)
    assert "beta" not in logs and ft.last_beta is None
    loss.backward()
    assert enc.conv.weight.grad is not None and ft.decoder.head.weight.grad is not None


# --- teacher forcing -----------------------------------------------------------------------------

def test_teacher_forced_loss_equals_hand_computed_cross_entropy():
    torch.manual_seed(0)
    vocab = CharVocab(["a", "b"])
    dec = CharDecoder(vocab.size, 4, 3, d_model=8, heads=2, layers=1).eval()
    targets = vocab.encode_texts(["ab", "b"], 3)
    assert targets.tolist() == [[3, 4, EOS, PAD], [4, EOS, PAD, PAD]]
    assert teacher_forced_inputs(targets).tolist() == [[BOS, 3, 4, EOS], [BOS, 4, EOS, PAD]]
    obj = DPTRObjective(dec, vocab, text_tokens=lambda texts: torch.randn(len(texts), 2, 4), perturb=False).eval()
    torch.manual_seed(1)
    loss, logs = obj({"texts": ["ab", "b"]})
    torch.manual_seed(1)
    memory = torch.randn(2, 2, 4)
    logits = dec(memory, teacher_forced_inputs(targets)).tolist()
    terms = []
    for i, row in enumerate(targets.tolist()):
        for t, y in enumerate(row):
            if y != PAD:
                z = logits[i][t]
                terms.append(math.log(sum(math.exp(v) for v in z)) - z[y])
    assert len(terms) == 5
    assert float(loss.detach()) == pytest.approx(sum(terms) / 5, rel=1e-5)


# --- greedy decoding -----------------------------------------------------------------------------

class _Scripted(CharDecoder):
    """Writes symbol 3 until position ``stop[row]``, then EOS; PAD and BOS score highest of all."""

    def __init__(self, stop: list[int] | None) -> None:
        super().__init__(5, 2, MAX_LEN, d_model=4, heads=1, layers=1)
        self.stop = stop

    def _decode(self, mem, inputs):
        b, t = inputs.shape
        logits = torch.zeros(b, t, self.vocab_size)
        logits[..., PAD] = logits[..., BOS] = 100.0
        logits[..., 3] = 10.0
        if self.stop is not None:
            for i, s in enumerate(self.stop):
                logits[i, s:, EOS] = 20.0
        return logits


def test_greedy_stops_at_eos_and_pads_after():
    ids = _Scripted([1, 3]).greedy(torch.zeros(2, 1, 2))
    assert ids.tolist() == [[3, EOS, PAD, PAD], [3, 3, 3, EOS]]
    assert CharVocab(["x", "y"]).decode(ids) == ["x", "xxx"]


def test_greedy_respects_max_length():
    dec = _Scripted(None)
    ids = dec.greedy(torch.zeros(2, 1, 2))
    assert ids.tolist() == [[3] * MAX_LEN + [EOS]] * 2
    assert dec.greedy(torch.zeros(1, 1, 2), max_len=2).tolist() == [[3, 3, EOS]]


def test_greedy_agrees_with_teacher_forcing_on_its_own_output():
    torch.manual_seed(0)
    dec = CharDecoder(13, D, MAX_LEN, d_model=16, heads=2, layers=2).eval()
    memory = torch.randn(4, 5, D)
    ids = dec.greedy(memory)
    logits = dec(memory, teacher_forced_inputs(ids))
    logits[..., [PAD, BOS]] = float("-inf")
    for i in range(4):
        row = ids[i].tolist()
        end = row.index(EOS) if EOS in row else len(row)
        if end < MAX_LEN:
            assert logits[i, : end + 1].argmax(-1).tolist() == row[: end + 1]


# --- a Trainer fit memorises a handful of strings ------------------------------------------------

def test_trainer_fit_memorises_five_strings():
    from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig
    from fmlab.engine.data import TensorSource

    rows = [[1, 2, 3], [3, 2, 1], [7, 7], [4, 0, 5, 9], [8]]
    labels = _labels(rows)
    obj = _pretrain(beta_max=0.1)
    src = TensorSource(torch.zeros(5, 1), labels)
    Trainer(obj, src, TrainerConfig(max_steps=60, batch_size=5, log_every=20, progress=False, tensorboard=False,
                                    device="cpu"),
            OptimConfig(lr=3e-3), ScheduleConfig(name="constant")).fit()
    obj.eval()
    truth = obj.vocab.labels_to_texts(labels)
    assert truth == ["123", "321", "77", "4059", "8"]
    pred = obj.predict({"labels": labels})
    assert sequence_accuracy(pred, truth) == 1.0 and character_accuracy(pred, truth) == 1.0


# --- vocabulary and checks -----------------------------------------------------------------------

def test_vocab_labels_texts_and_multi_character_symbols():
    v = CharVocab.digits()
    assert v.encode_labels(_labels([[0, 9]]), 3).tolist() == [[3, 12, EOS, PAD]]
    assert torch.equal(v.encode_texts(["09"], 3), v.encode_labels(_labels([[0, 9]]), 3))
    w = CharVocab(["cat", "ca", "t"])
    assert w.split("catcat") == [0, 0] and w.split("cat") == [0]
    s = CharVocab(["cat", "dog"], sep=" ")
    assert s.labels_to_texts(torch.tensor([[1, 0, -1]])) == ["dog cat"] and s.split("dog cat") == [1, 0]
    with pytest.raises(DataError, match="'x'"):
        v.split("1x")
    with pytest.raises(ConfigError, match="max_len 2"):
        v.encode_labels(_labels([[1, 2, 3]]), 2)


def test_bad_configuration_names_the_parameter():
    vocab = CharVocab.digits()
    dec = CharDecoder(vocab.size, D, MAX_LEN, d_model=16, heads=2, layers=1)
    with pytest.raises(ConfigError, match="text_tokens"):
        DPTRObjective(dec, vocab)
    with pytest.raises(ConfigError, match="image_bank"):
        DPTRObjective(dec, vocab, text_tokens=FixedTextTokens(vocab, D, MAX_LEN))
    with pytest.raises(ConfigError, match="image_encoder"):
        DPTRObjective(dec, vocab, stage="finetune")
    with pytest.raises(ConfigError, match="stage"):
        DPTRObjective(dec, vocab, stage="eval", text_tokens=FixedTextTokens(vocab, D, MAX_LEN))
    with pytest.raises(ConfigError, match="beta_max"):
        _pretrain(beta_max=float("nan"))
    with pytest.raises(ConfigError, match="heads"):
        CharDecoder(13, D, MAX_LEN, d_model=10, heads=4)
    with pytest.raises(ModelError, match="memory"):
        dec(torch.zeros(1, 2, D + 1), torch.tensor([[BOS]]))
    with pytest.raises(ModelError, match="image_bank"):
        orp_perturb(torch.zeros(2, 3, D), torch.zeros(4, D + 1))


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_on_hand_examples():
    assert edit_distance("1234", "1243") == 2 == edit_distance("1243", "1234")
    assert edit_distance("", "") == 0 and edit_distance("abc", "") == 3
    assert sequence_accuracy(["12", "3", ""], ["12", "4", ""]) == pytest.approx(2 / 3)
    # 1 - mean(2/4, 0, 1/2 ("12" vs "1": one deletion over max length 2), 1 ("9" vs ""))
    acc = character_accuracy(["1243", "", "12", "9"], ["1234", "", "1", ""])
    assert acc == pytest.approx(1 - (0.5 + 0 + 0.5 + 1) / 4)
    assert character_accuracy(["abc"], ["abc"]) == 1.0
    with pytest.raises(ConfigError, match="pred_texts"):
        sequence_accuracy(["1"], ["1", "2"])
    with pytest.raises(ConfigError, match="true_texts"):
        character_accuracy([], [])


def test_tower_text_tokens_feed_pretraining(tiny_text_tower_factory):
    from fmlab.multimodal.dptr import TowerTextTokens

    tower = tiny_text_tower_factory()
    proj = nn.Linear(32, D, bias=False)
    tokens = TowerTextTokens(tower, proj)
    texts = ["12", "3456"]
    e = tokens(texts)
    mask = tower.tokenize(texts)["attention_mask"]
    assert e.shape == (2, mask.shape[1], D)
    assert bool((e[mask == 0] == 0).all())
    torch.manual_seed(0)
    vocab = CharVocab.digits()
    dec = CharDecoder(vocab.size, D, MAX_LEN, d_model=16, heads=2, layers=1)
    obj = DPTRObjective(dec, vocab, text_tokens=tokens, image_bank=torch.randn(3, D)).train()
    loss, logs = obj({"texts": texts})
    loss.backward()
    assert proj.weight.grad is None and dec.head.weight.grad is not None  # the text side stays frozen
    assert len(obj.predict({"texts": texts})) == 2


def test_rendered_strings_are_a_finetune_batch():
    import numpy as np

    from fmlab.data.synthetic.strings import render_strings

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    out = render_strings(pool, np.arange(20) % 10, np.arange(4), seed=0, min_len=3, max_len=MAX_LEN, height=16)
    batch = {"images": torch.as_tensor(out["images"]), "labels": torch.as_tensor(out["labels"])}
    ft = _pretrain().finetune(_ColumnEncoder())
    assert ft.texts(batch) == list(out["texts"])
    loss, _ = ft(batch)
    assert torch.isfinite(loss)
    pred = ft.eval().predict(batch)
    assert len(pred) == 4 and all(len(p) <= MAX_LEN for p in pred)
