"""Study arms: the token budget an arm reports is the tokens it trained on; finished arms are
not run again; an interrupted arm resumes from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmlab.errors import ConfigError
from fmlab.studies.arms import ArmLedger, budget_steps, pretrain_arm

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "text" / "mlm_shakespeare.yaml"
TINY = ["model.hidden=16", "model.heads=2", "model.layers=1", "model.intermediate=32",
        "model.max_positions=40", "data.block_size=24", "trainer.batch_size=4",
        "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.device=cpu", "schedule.warmup_steps=0", "tokenizer.vocab_size=200"]
TEXTS = [f"the {w} king spoke of the {v} queen and her {w} lords" for w in
         ("old", "young", "wise", "proud", "pale") for v in ("kind", "cruel", "fair", "sad")] * 4


@pytest.mark.parametrize("tokens", [96 * 3, 96 * 5 + 50])
def test_an_arm_trains_on_exactly_the_tokens_it_reports(tokens, tmp_path, monkeypatch):
    from fmlab.text.objectives.mlm import MLM

    seen = []
    original = MLM.forward

    def counting(self, batch):
        seen.append(int(batch["input_ids"].numel()))
        return original(self, batch)

    monkeypatch.setattr(MLM, "forward", counting)
    rec = pretrain_arm(CONFIG, TINY, tmp_path / "arm", False, tokens=tokens, texts=TEXTS)
    assert sum(seen) == rec["tokens_seen"] <= tokens < rec["tokens_seen"] + 96
    assert rec["budget_tokens"] == tokens and rec["step"] == len(seen)


def test_budget_below_one_step_is_refused():
    assert budget_steps(96, 4, 24) == 1
    with pytest.raises(ConfigError, match="budget.tokens: 95"):
        budget_steps(95, 4, 24)


def test_ledger_skips_finished_arms_and_resumes_interrupted_ones(tmp_path):
    ledger = ArmLedger(tmp_path)
    calls = []

    def crash(run_dir, resume):
        (run_dir / "checkpoints").mkdir(parents=True)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ledger.run("a/seed0", crash)
    assert "a/seed0" not in ArmLedger(tmp_path).records

    def arm(run_dir, resume):
        calls.append((run_dir.name, resume))
        return {"accuracy": 0.75}

    assert ArmLedger(tmp_path).run("b/seed1", arm)["accuracy"] == 0.75
    assert ArmLedger(tmp_path).run("b/seed1", arm)["arm"] == "b/seed1"
    assert calls == [("b_seed1", False)]
