"""``fmlab study uda|pseudolabel`` at toy size: the UDA arms never read a target label (shuffled
target labels give bit-identical models), and every pre-training arm trains on exactly the tokens
it reports (the MLM arm and the pseudo-label arm of one budget)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fmlab.errors import ConfigError

pytestmark = pytest.mark.skipif(not os.environ.get("FMLAB_DATA"),
                                reason="needs FMLAB_DATA (SST-2 and Tiny Shakespeare)")

TINY = ["model.hidden=16", "model.heads=2", "model.layers=1", "model.intermediate=32",
        "model.max_positions=48", "data.block_size=32", "trainer.batch_size=4",
        "trainer.log_every=1", "trainer.device=cpu", "schedule.warmup_steps=0",
        "tokenizer.vocab_size=300"]
COMMON = [f"base.set={json.dumps(TINY)}", "base.corpus_limit=60", "base.tokens=640",
          "budget.tokens=512", "budget.set=[]", "seeds=[3]", "finetune.trainer.epochs=1",
          "finetune.trainer.batch_size=8", "finetune.data.max_length=40",
          "finetune.trainer.device=cpu"]


def _uda_cfg():
    from fmlab.studies.uda import load_uda_config

    return load_uda_config(None, [*COMMON, "shift.source_limit=48", "shift.target_limit=60",
                                  "shift.max_test=40", 'prompt.label_words=["the","a"]'])


def _check_shift(cfg):
    """The domains are apart and the target texts carry no labels."""
    from fmlab.studies.uda import build_shift

    shift = build_shift(cfg.shift)
    assert all(len(t.split()) <= cfg.shift.source_max_words for t in shift.source.texts)
    assert all(len(t.split()) >= cfg.shift.target_min_words for t in shift.target_texts)
    assert not set(shift.source.texts) & set(shift.target_texts)
    assert all(isinstance(t, str) for t in shift.target_texts)  # texts only, no labels
    assert shift.target_test.split == "test" and len(shift.target_test) == 40


def _shuffled_load_text(real, min_words):
    """load_text with every target label (train phrases of >= min_words words, test split)
    permuted; source labels untouched."""
    from dataclasses import replace

    def load(spec, split="train", **kw):
        d = real(spec, split, **kw)
        if spec != "sst2":
            return d
        labels = np.array(d.labels)
        rng = np.random.default_rng(123)
        if split == "train":
            idx = np.flatnonzero([len(t.split()) >= min_words for t in d.texts])
            labels[idx] = 1 - labels[idx]  # flip every target label
        else:
            labels = rng.permutation(labels)
        return replace(d, labels=[int(x) for x in labels], split_hash=d.split_hash + "-shuffled")
    return load


def test_uda_arms_never_see_target_labels_shuffled_labels_give_identical_models(tmp_path,
                                                                                 monkeypatch):
    import fmlab.data.text as text_data
    from fmlab.studies.uda import run_uda

    cfg = _uda_cfg()
    _check_shift(cfg)
    a = run_uda(cfg, tmp_path / "a", db=None)
    monkeypatch.setattr(text_data, "load_text",
                        _shuffled_load_text(text_data.load_text, cfg.shift.target_min_words))
    b = run_uda(cfg, tmp_path / "b", db=None)
    pre = {p["what"]: p["weights_sha256"] for p in a["pretrain"]}
    assert pre == {p["what"]: p["weights_sha256"] for p in b["pretrain"]}
    assert set(pre) == {"base", "cpt_source", "cpt_target"}
    keys = ("test_predictions_sha256", "val_accuracy", "validations", "best_step")
    for ra, rb in zip(a["records"], b["records"], strict=True):
        assert ra["arm_name"] == rb["arm_name"]
        assert {k: ra[k] for k in keys} == {k: rb[k] for k in keys}, ra["arm_name"]
    # the shuffle did reach the target test labels (so the test could fail)
    assert a["shift"]["test_split_hash"] != b["shift"]["test_split_hash"]
    assert [r["arm_name"] for r in a["records"]] == cfg.arms
    assert (tmp_path / "a" / "report.md").is_file() and (tmp_path / "a" / "accuracy.png").is_file()


def test_pseudolabel_study_arms_train_on_exactly_the_tokens_they_report(tmp_path, monkeypatch):
    from fmlab.studies.arms import ArmLedger
    from fmlab.studies.pseudolabel import load_pseudolabel_config, run_pseudolabel
    from fmlab.text.objectives.mlm import MLM
    from fmlab.text.pseudolabel import SoftTargetClassification

    seen: dict[str, int] = {}
    current = [""]
    run, mlm_fwd, pl_fwd = ArmLedger.run, MLM.forward, SoftTargetClassification.forward

    def tracked_run(self, key, fn):
        current[0] = key
        return run(self, key, fn)

    def count(fwd, tokens):
        def wrapped(self, batch):
            seen[current[0]] = seen.get(current[0], 0) + tokens(batch)
            return fwd(self, batch)
        return wrapped

    monkeypatch.setattr(ArmLedger, "run", tracked_run)
    monkeypatch.setattr(MLM, "forward", count(mlm_fwd, lambda b: int(b["input_ids"].numel())))
    monkeypatch.setattr(SoftTargetClassification, "forward",
                        count(pl_fwd, lambda b: int(b["attention_mask"].sum())))
    cfg = load_pseudolabel_config(None, [*COMMON, "pool.labelled=40", "pool.unlabelled=30",
                                         "pool.fractions=[0.5,1.0]", "pool.max_test=30",
                                         "min_finetune_steps=2", "pseudo.trainer.batch_size=4",
                                         "pseudo.trainer.device=cpu", "pseudo.schedule.warmup_steps=0"])
    out = run_pseudolabel(cfg, tmp_path / "pl", db=tmp_path / "pl.db")
    arms = json.loads((tmp_path / "pl" / "arms.json").read_text())
    pre = {k: v for k, v in arms.items() if not k.startswith("ft/")}
    assert sorted(pre) == ["base/seed3", "mlm/seed3", "pseudolabel/f0.5/seed3",
                           "pseudolabel/f1/seed3"]
    for key, rec in pre.items():
        assert seen[key] == rec["tokens_seen"] <= rec["budget_tokens"], key
    # the MLM arm and the pseudo-label arms share one budget (512 tokens here)
    assert {pre[k]["budget_tokens"] for k in pre if k != "base/seed3"} == {512}
    assert len(out["records"]) == 6 and Path(out["report"]).is_file()
    assert {r["arm_name"] for r in out["records"]} == {"none", "mlm", "pseudolabel"}


def test_unknown_keys_and_bad_arms_are_refused_by_name():
    from fmlab.studies.pseudolabel import load_pseudolabel_config
    from fmlab.studies.uda import load_uda_config

    with pytest.raises(ConfigError, match="budget.tokns"):
        load_uda_config(None, ["budget.tokns=5"])
    with pytest.raises(ConfigError, match="arms"):
        load_uda_config(None, ["arms=[cpt_nowhere]"])
    with pytest.raises(ConfigError, match="pseudo.targets"):
        load_pseudolabel_config(None, ["pseudo.targets=argmax"])
