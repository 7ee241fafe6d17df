"""``fmlab study domain``: every arm trains on exactly the tokens it reports (general and domain
equal, continued = general part + domain part), the continued arm starts from the general model
and keeps its vocabulary, a rerun redoes no arm, and bad settings exit 2 naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.studies.arms import ArmLedger
from fmlab.studies.domain import load_domain_config, pretrain_arms

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.hidden=16", "model.heads=2", "model.layers=1", "model.intermediate=32",
        "model.max_positions=40", "data.block_size=24", "trainer.batch_size=4",
        "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.device=cpu", "schedule.warmup_steps=0", "tokenizer.vocab_size=120"]
GENERAL = [f"the {w} king spoke of the {v} queen and her {w} lords" for w in
           ("old", "young", "wise", "proud") for v in ("kind", "cruel", "fair")] * 4
DOMAIN = [f"{d} inhibits {k} kinase in {c} carcinoma cells" for d in
          ("imatinib", "gefitinib", "erlotinib") for k in ("tyrosine", "serine")
          for c in ("hepatic", "pulmonary")] * 4


def _cfg(tokens: int, continued: int | None = None):
    sets = [f"budget.tokens={tokens}", "seeds=[3]", "pretrain.config=configs/text/mlm_shakespeare.yaml"]
    if continued is not None:
        sets.append(f"budget.continued_tokens={continued}")
    cfg = load_domain_config(ROOT / "configs" / "study" / "domain.yaml", sets)
    cfg.pretrain.set = TINY
    return cfg


def test_arms_train_on_exactly_the_tokens_they_report(tmp_path, monkeypatch):
    from fmlab.text.objectives.mlm import MLM

    seen: list[int] = []
    original = MLM.forward

    def counting(self, batch):
        seen.append(int(batch["input_ids"].numel()))
        return original(self, batch)

    monkeypatch.setattr(MLM, "forward", counting)
    tokens, continued = 96 * 3 + 40, 96 * 2
    arms = pretrain_arms(_cfg(tokens, continued), ArmLedger(tmp_path), 3, DOMAIN, GENERAL)
    g, c, d = arms["general"], arms["continued"], arms["domain"]
    assert g["tokens"] == d["tokens"] == 96 * 3 <= tokens  # full blocks that fit, equal
    assert c["parts"] == {"general": g["tokens_seen"], "domain": continued}
    assert c["tokens"] == g["tokens"] + continued
    assert sum(seen) == g["tokens_seen"] + d["tokens_seen"] + c["tokens_seen"]
    assert all(r["seed"] == 3 for r in arms.values())


def test_continued_starts_from_general_and_keeps_its_vocabulary(tmp_path, monkeypatch):
    import fmlab.studies.arms as arms_mod

    inits = {}
    original = arms_mod.pretrain_arm

    def spy(config, overrides, run_dir, resume, *, tokens, texts=None, init=None):
        inits[run_dir.name] = init
        return original(config, overrides, run_dir, resume, tokens=tokens, texts=texts, init=init)

    monkeypatch.setattr(arms_mod, "pretrain_arm", spy)
    arms = pretrain_arms(_cfg(96), ArmLedger(tmp_path), 3, DOMAIN, GENERAL)
    assert inits == {"pretrain_general_seed3": None, "pretrain_domain_seed3": None,
                     "pretrain_continued_seed3": arms["general"]["model"]}
    vocab = {a: (Path(arms[a]["model"]) / "tokenizer.json").read_text() for a in arms}
    assert vocab["continued"] == vocab["general"] != vocab["domain"]
    w = {a: load_file(str(Path(arms[a]["model"]) / "model.safetensors")) for a in arms}
    key = "bert.embeddings.word_embeddings.weight"
    assert w["continued"][key].shape == w["general"][key].shape
    assert not (w["continued"][key] == w["general"][key]).all()  # it did train on D


def test_rerun_redoes_no_arm(tmp_path, monkeypatch):
    import fmlab.studies.arms as arms_mod

    cfg = _cfg(96)
    first = pretrain_arms(cfg, ArmLedger(tmp_path), 3, DOMAIN, GENERAL)

    def refuse(*a, **k):
        raise AssertionError("a finished arm was run again")

    monkeypatch.setattr(arms_mod, "pretrain_arm", refuse)
    again = pretrain_arms(cfg, ArmLedger(tmp_path), 3, DOMAIN, GENERAL)
    assert {a: r["weights_sha256"] for a, r in again.items()} == \
        {a: r["weights_sha256"] for a, r in first.items()}


@pytest.mark.parametrize("key,value", [("budget.tokenz", "5"), ("budget.tokens", "0"),
                                       ("seeds", "[1,1]"), ("pretrain.config", "nope.yaml")])
def test_bad_setting_exits_2_naming_the_key(tmp_path, capsys, key, value):
    out = tmp_path / "run"
    assert main(["study", "domain", "--out", str(out), "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_pretrain_set_item_is_refused_before_any_arm(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["study", "domain", "--out", str(out), "--set", "pretrain.set=[model.hiden=8]"]) == 2
    assert "model.hiden" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FMLAB_DATA"), reason="needs FMLAB_DATA (medabs, sst2, ...)")
def test_smoke_study_writes_report_plots_and_store_rows(tmp_path):
    from fmlab.results import ResultsStore

    out = tmp_path / "run"
    args = ["study", "domain", "--config", str(ROOT / "configs/study/domain.yaml"), "--out", str(out),
            "--set", "seeds=[1]", "--set", "budget.tokens=8192", "--set", "corpora.limit=200",
            "--set", "finetune.data.limit=100", "--set", "finetune.trainer.epochs=1",
            "--set", "finetune.data.max_test=100", "--set", "tasks.domain=[pico]"]
    assert main(args) == 0
    for name in ("report.md", "accuracy.png", "tokens_per_word.png", "study.json", "arms.json"):
        assert (out / name).is_file(), name
    rows = ResultsStore(out / "fmlab.db").query(task="study_domain")
    assert {r["method"] for r in rows} == {"general", "continued", "domain"}
    report = (out / "report.md").read_text()
    assert "domain − continued" in report and "tokens/word" in report
