"""Manual optimisation (configure_optimizers + training_step), callbacks and the CPU budget."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmlab.engine import DivergenceError, OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig
from fmlab.engine.callbacks import Callback, CPUBudget
from fmlab.engine.checkpoint import latest_checkpoint
from fmlab.errors import ConfigError

from ._objectives import blobs


class TwoPlayer(nn.Module):
    """Two linear maps stepped by two optimisers, with noise from the step's generator."""

    def __init__(self, dim: int = 8, blow_up_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(dim, 1)
        self.b = nn.Linear(dim, 1)
        self.blow_up_at = blow_up_at
        self.steps: list[int] = []

    def configure_optimizers(self, optim):
        return {"a": torch.optim.SGD(self.a.parameters(), lr=optim["a"].lr, momentum=0.9),
                "b": torch.optim.AdamW(self.b.parameters(), lr=optim["b"].lr)}

    def training_step(self, batch, optimizers, step, generator):
        self.steps.append(step)
        x = batch["images"].float()
        noise = torch.randn(x.shape, generator=generator)
        logs = {}
        for name, net in (("a", self.a), ("b", self.b)):
            opt = optimizers[name]
            opt.zero_grad(set_to_none=True)
            loss = (net(x + noise) - 1).pow(2).mean()
            loss.backward()
            opt.step()
            logs[f"{name}_loss"] = float(loss.detach())
        if self.blow_up_at is not None and step == self.blow_up_at:
            logs["a_loss"] = math.nan
        return logs


def _cfg(**kw) -> TrainerConfig:
    base = dict(max_steps=6, batch_size=8, log_every=1, checkpoint_every=3, device="cpu",
                progress=False, tensorboard=False)
    return TrainerConfig(**{**base, **kw})


OPTIM = {"a": OptimConfig(name="sgd", lr=0.1), "b": OptimConfig(lr=0.01)}


def _source():
    x, y = blobs(32)
    return TensorSource(x, y)


def test_named_optimisers_follow_their_own_schedules_and_are_checkpointed(tmp_path):
    sched = ScheduleConfig(name="cosine", warmup_steps=2)
    res = Trainer(TwoPlayer(), _source(), _cfg(), OPTIM, sched, run_dir=tmp_path / "r").fit()
    from fmlab.engine.schedule import warmup_cosine

    for rec in res.history:  # the lr of step s (0-based) is logged on line s + 1
        s = rec["step"] - 1
        assert rec["logs"]["lr_a"] == pytest.approx(warmup_cosine(s, 6, 0.1, 0.0, 2, True))
        assert rec["logs"]["lr_b"] == pytest.approx(warmup_cosine(s, 6, 0.01, 0.0, 2, True))
    state = torch.load(latest_checkpoint(tmp_path / "r").state, weights_only=True)
    assert {"optimizer_a", "optimizer_b", "schedule_a", "schedule_b"} <= set(state)
    assert "momentum_buffer" in str(state["optimizer_a"]) and "exp_avg" in str(state["optimizer_b"])


def test_manual_resume_equals_straight_run_bit_for_bit(tmp_path):
    const = ScheduleConfig(name="constant")  # a cosine's rates would depend on max_steps
    straight = TwoPlayer()
    Trainer(straight, _source(), _cfg(), OPTIM, const, run_dir=tmp_path / "s").fit()
    Trainer(TwoPlayer(), _source(), _cfg(max_steps=3), OPTIM, const, run_dir=tmp_path / "p").fit()
    resumed = TwoPlayer()
    res = Trainer(resumed, _source(), _cfg(), OPTIM, const, run_dir=tmp_path / "p").fit(resume=True)
    assert res.resumed_from == 3 and resumed.steps == [3, 4, 5]
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


def test_manual_step_divergence_names_the_value_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(DivergenceError, match=r"a_loss=nan at step 5; .*checkpoint \(step 3\)"):
        Trainer(TwoPlayer(blow_up_at=4), _source(), _cfg(), OPTIM, run_dir=tmp_path).fit()
    assert latest_checkpoint(tmp_path).step == 3


def test_manual_optimisation_refuses_accumulate_and_grad_clip():
    for kw, key in (({"accumulate": 2}, "trainer.accumulate"), ({"grad_clip": 1.0}, "trainer.grad_clip")):
        with pytest.raises(ConfigError, match=key):
            Trainer(TwoPlayer(), _source(), _cfg(**kw), OPTIM).fit()


class Recorder(Callback):
    key = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.n = 0

    def on_fit_start(self, trainer, resumed_from):
        self.events.append(("start", trainer.step))

    def on_train_step_start(self, trainer):
        self.events.append(("step", trainer.step))

    def on_after_step(self, trainer):
        self.n += 1
        self.events.append(("after", trainer.step))

    def on_fit_end(self, trainer):
        self.events.append(("end", trainer.step))

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_callbacks_hook_order_and_state_survive_resume(tmp_path):
    rec = Recorder()
    Trainer(TwoPlayer(), _source(), _cfg(max_steps=2), OPTIM, run_dir=tmp_path,
            callbacks=[rec]).fit()
    assert rec.events == [("start", 0), ("step", 0), ("after", 1), ("step", 1), ("after", 2),
                          ("end", 2)]
    again = Recorder()
    Trainer(TwoPlayer(), _source(), _cfg(max_steps=3), OPTIM, run_dir=tmp_path,
            callbacks=[again]).fit(resume=True)
    assert again.n == 3 and again.events[0] == ("start", 2)


def test_cpu_budget_stops_checkpoints_and_logs_the_time_used(tmp_path):
    budget = CPUBudget(minutes=1e-9)  # spent by the first step
    res = Trainer(TwoPlayer(), _source(), _cfg(max_steps=50), OPTIM, run_dir=tmp_path,
                  callbacks=[budget]).fit()
    assert res.stopped_early and res.step == 1 and budget.used_s > 0
    assert res.history[-1]["train_cpu_s"] == round(budget.used_s, 3)
    state = torch.load(latest_checkpoint(tmp_path).state, weights_only=True)
    assert latest_checkpoint(tmp_path).step == 1
    assert state["callbacks"]["cpu_budget"]["train_cpu_s"] == budget.used_s
    resumed = CPUBudget(minutes=1e-9)
    res2 = Trainer(TwoPlayer(), _source(), _cfg(max_steps=50), OPTIM, run_dir=tmp_path,
                   callbacks=[resumed]).fit(resume=True)
    assert res2.stopped_early and res2.step == 1 and resumed.used_s == budget.used_s
