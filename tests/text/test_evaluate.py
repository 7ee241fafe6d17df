"""fmlab text eval: each metric reduces to a known value on a model whose output is fixed."""

from __future__ import annotations

import json

import pytest
import torch

from fmlab.cli.main import main
from fmlab.text.evaluate import evaluate_text_model

from ._tiny import save_tiny_bert, tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    texts, _ = tiny_corpus(200)
    path = root / "c.txt"
    path.write_text("\n".join(texts) + "\n")
    return root, texts, f"text:{path}"


def _zero_head(model_dir, attr_path):
    """Zero the output layer so every prediction is uniform over the vocabulary."""
    import transformers

    cfg = json.loads((model_dir / "config.json").read_text())
    cls = getattr(transformers, cfg["architectures"][0])
    model = cls.from_pretrained(str(model_dir))
    layer = model.get_submodule(attr_path)
    with torch.no_grad():
        layer.weight.zero_()
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
        for name, p in model.named_parameters():
            if name == "cls.predictions.bias":  # BERT adds its own output bias
                p.zero_()
    model.save_pretrained(str(model_dir))
    return model.config.vocab_size


def test_uniform_mlm_has_perplexity_equal_to_the_vocabulary(corpus):
    root, texts, spec = corpus
    d = save_tiny_bert(root / "bert", texts, tie=False)
    v = _zero_head(d, "cls.predictions.decoder")
    r = evaluate_text_model(d, spec, "all", block_size=32, max_blocks=4, pppl_blocks=1)
    m = r["metrics"]
    assert r["kind"] == "mlm" and r["n_blocks"] == 4
    assert m["mlm_perplexity"] == pytest.approx(v, rel=1e-4)
    assert m["pseudo_perplexity"] == pytest.approx(v, rel=1e-4)
    from transformers import AutoTokenizer

    from fmlab.text.packing import pack_blocks

    tok = AutoTokenizer.from_pretrained(str(d))
    first = pack_blocks(texts, tok, 32)[0]
    # every position of the first block but the special ones ([CLS], [SEP] between documents)
    assert m["pseudo_perplexity_tokens"] == sum(int(i) not in tok.all_special_ids for i in first)
    assert abs(m["masked_positions"] / (4 * 31) - 0.15) < 0.08


def test_uniform_decoder_has_perplexity_equal_to_the_vocabulary(corpus):
    root, texts, spec = corpus
    d = save_tiny_bert(root / "gpt", texts, kind="gpt", tie=False)
    v = _zero_head(d, "lm_head")
    m = evaluate_text_model(d, spec, "all", block_size=32, max_blocks=4)["metrics"]
    assert m["perplexity"] == pytest.approx(v, rel=1e-4)
    assert m["continuation_perplexity"] == pytest.approx(v, rel=1e-4)


def test_t5_continuation_perplexity(corpus):
    from transformers import T5Config, T5ForConditionalGeneration

    from fmlab.text.tokenizer import train_tokenizer

    root, texts, spec = corpus
    tok = train_tokenizer(texts, kind="unigram", vocab_size=200)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False))
    model.save_pretrained(str(root / "t5"))
    tok.save_pretrained(str(root / "t5"))
    v = _zero_head(root / "t5", "lm_head")
    r = evaluate_text_model(root / "t5", spec, "all", block_size=32, max_blocks=4,
                            mode_token="[S2S]")
    assert r["kind"] == "seq2seq"
    assert r["metrics"]["continuation_perplexity"] == pytest.approx(v, rel=1e-4)


def test_electra_rtd_without_generator(corpus):
    from transformers import ElectraConfig, ElectraForPreTraining

    from fmlab.text.tokenizer import train_tokenizer

    root, texts, spec = corpus
    tok = train_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    model = ElectraForPreTraining(ElectraConfig(
        vocab_size=len(tok), embedding_size=32, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    with torch.no_grad():  # a discriminator that always says "original"
        model.discriminator_predictions.dense_prediction.weight.zero_()
        model.discriminator_predictions.dense_prediction.bias.fill_(-10.0)
    model.save_pretrained(str(root / "el" / "model"))
    tok.save_pretrained(str(root / "el" / "model"))
    m = evaluate_text_model(root / "el" / "model", spec, "all", block_size=32,
                            max_blocks=16)["metrics"]
    assert m["generator"] == 0.0 and m["rtd_replaced_recall"] == 0.0
    assert m["rtd_accuracy"] == pytest.approx(1 - m["replaced_fraction"])
    assert 0.08 < m["replaced_fraction"] < 0.2  # 15 % corrupted, few samples equal the original


def test_cli_eval_and_errors(corpus, tmp_path, capsys):
    root, texts, spec = corpus
    d = save_tiny_bert(root / "bert2", texts)
    out = tmp_path / "r.json"
    assert main(["text", "eval", "--model", str(d), "--data", spec, "--split", "all",
                 "--max-blocks", "4", "--block-size", "32", "--out", str(out),
                 "--db", str(tmp_path / "r.db")]) == 0
    assert json.loads(out.read_text())["metrics"]["mlm_accuracy"] >= 0
    capsys.readouterr()
    assert main(["text", "eval", "--model", str(d), "--data", spec, "--block-size", "100",
                 "--no-db"]) == 2
    assert "--block-size: 100 is above the 64 positions" in capsys.readouterr().err
    assert main(["text", "eval", "--model", str(tmp_path), "--data", spec, "--no-db"]) == 2
    assert "config.json not found" in capsys.readouterr().err
