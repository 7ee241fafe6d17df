"""``fmlab text pretrain``: plain-transformers loading, exact resume, bad input, bf16, configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.engine.checkpoint import latest_checkpoint
from fmlab.experiments.text_pretrain import (
    build_text_pretrain,
    load_text_pretrain_config,
    run_text_pretrain,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "text"
WORDS = ("the king and queen spoke of << aspirin >> while [[ COX-2 ]] slept in Tumor "
         "Necrosis fields where lords and ladies walk").split()
TINY = ["model.hidden=16", "model.heads=2", "model.layers=1", "model.intermediate=32",
        "model.max_positions=40", "data.block_size=24", "trainer.batch_size=4",
        "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.device=cpu", "schedule.warmup_steps=0", "tokenizer.vocab_size=300"]
HEADS = {"mlm": "BertForMaskedLM", "electra": "ElectraForPreTraining", "clm": "GPT2LMHeadModel",
         "t5": "T5ForConditionalGeneration", "ul2": "T5ForConditionalGeneration",
         "ernie": "BertForMaskedLM"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (12,), generator=g))
             for _ in range(120)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _overrides(corpus: Path, *extra: str, steps: int = 2) -> list[str]:
    return [f"data.source=text:{corpus}", f"trainer.max_steps={steps}", *TINY, *extra]


def _head_class(name: str):
    import transformers

    return getattr(transformers, HEADS[name])


@pytest.mark.parametrize("name", sorted(HEADS))
def test_saved_model_loads_in_plain_transformers_with_the_same_logits(name, corpus, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    cfg = load_text_pretrain_config(CONFIGS / f"{name}_shakespeare.yaml", _overrides(corpus))
    run = tmp_path / "run"
    rec = run_text_pretrain(cfg, run)
    assert rec["step"] == 2 and (run / "model" / "tokenizer.json").is_file()
    # fmlab's model: a fresh objective given the final checkpoint's weights
    _, obj, source = build_text_pretrain(cfg, None, run)
    obj.load_state_dict(load_file(str(latest_checkpoint(run).weights)))
    obj.eval()
    plain = _head_class(name).from_pretrained(run / "model").eval()
    backbone = AutoModel.from_pretrained(run / "model")
    assert AutoTokenizer.from_pretrained(run / "model").vocab_size == obj.model.config.vocab_size
    ids = source.get_batch(torch.arange(2).numpy())["input_ids"]
    kw = {"decoder_input_ids": ids[:, :5]} if name in ("t5", "ul2") else {}
    with torch.no_grad():
        mine, theirs = obj.model(input_ids=ids, **kw).logits, plain(input_ids=ids, **kw).logits
        assert backbone(input_ids=ids, **kw).last_hidden_state.shape[:2] == ids[:, :5].shape[:2] \
            if kw else backbone(input_ids=ids).last_hidden_state.shape[:2] == ids.shape
    torch.testing.assert_close(theirs, mine, rtol=0, atol=0)
    if name == "electra":
        assert (run / "generator" / "model.safetensors").is_file()
    if name == "ernie":
        assert (run / "nlg.safetensors").is_file()


@pytest.mark.parametrize("name", ["electra", "ernie"])
def test_resume_after_a_crash_is_bit_identical(name, corpus, tmp_path, capsys):
    over = _overrides(corpus, "trainer.checkpoint_every=2", steps=4)
    straight = tmp_path / "straight"
    args = ["text", "pretrain", "--config", str(CONFIGS / f"{name}_shakespeare.yaml"),
            "--out", str(straight)] + [a for o in over for a in ("--set", o)]
    assert main(args) == 0
    crashed = tmp_path / "crashed"
    shutil.copytree(straight, crashed)
    shutil.rmtree(crashed / "model")
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002") if isinstance(v, str)
                                       else v) for k, v in info.items()} | {"step": 2}))
    capsys.readouterr()
    assert main(["text", "pretrain", "--resume", str(crashed)]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(crashed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("extra, words", [
    (["tokenizer.vocab_size=3"], "tokenizer.vocab_size"),
    (["data.block_size=64"], "data.block_size"),
    (["objective.mask_prb=0.2"], "objective.mask_prb"),
    (["model.hiden=8"], "model.hiden"),
    (["data.source=text:EMPTY"], "empty"),
])
def test_bad_input_exits_2_naming_it(extra, words, corpus, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    extra = [e.replace("EMPTY", str(empty)) for e in extra]
    args = ["text", "pretrain", "--config", str(CONFIGS / "mlm_shakespeare.yaml"),
            "--out", str(tmp_path / "run")] + [a for o in _overrides(corpus) + extra
                                               for a in ("--set", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmlab: error:") and words in err.lower() if words == "empty" \
        else words in err
    assert "Traceback" not in err


def test_bf16_autocast_runs(corpus, tmp_path):
    cfg = load_text_pretrain_config(CONFIGS / "mlm_shakespeare.yaml",
                                    _overrides(corpus, "trainer.bf16=true"))
    rec = run_text_pretrain(cfg, tmp_path / "run")
    assert rec["last_loss"] is not None and torch.isfinite(torch.tensor(rec["last_loss"]))


def test_every_shipped_config_loads():
    import yaml

    names = sorted(p.stem for p in CONFIGS.glob("*.yaml")  # pre-training configs only
                   if "objective" in (yaml.safe_load(p.read_text()) or {}))
    for want in ("mlm", "electra", "clm", "t5", "ul2", "ernie"):
        assert f"{want}_shakespeare" in names
    assert {"mlm_medabs", "electra_medabs", "ernie_chemprot", "mlm_chemprot"} <= set(names)
    for n in names:
        cfg = load_text_pretrain_config(CONFIGS / f"{n}.yaml")
        assert cfg.data.block_size <= cfg.model.max_positions


def test_init_continues_from_the_saved_model_with_its_vocabulary(corpus, tmp_path):
    """Continued pre-training: zero steps of learning (lr 0, no dropout) leave the weights
    exactly those of ``init``, the tokenizer is ``init``'s, and a size mismatch is refused."""
    from fmlab.errors import ConfigError

    first = tmp_path / "first"
    run_text_pretrain(load_text_pretrain_config(CONFIGS / "mlm_shakespeare.yaml",
                                                _overrides(corpus)), first)
    cont = tmp_path / "cont"
    cfg = load_text_pretrain_config(CONFIGS / "mlm_shakespeare.yaml", _overrides(
        corpus, f"init={first / 'model'}", "optim.lr=0", "optim.weight_decay=0",
        "model.dropout=0", steps=1))
    rec = run_text_pretrain(cfg, cont)
    a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (first, cont))
    assert rec["init"] == str(first / "model") and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "model" / "tokenizer.json").read_text() == \
        (cont / "model" / "tokenizer.json").read_text()
    bad = load_text_pretrain_config(CONFIGS / "mlm_shakespeare.yaml", _overrides(
        corpus, f"init={first / 'model'}", "model.hidden=32", "model.intermediate=64"))
    with pytest.raises(ConfigError, match="init: .* does not fit"):
        run_text_pretrain(bad, tmp_path / "bad")
