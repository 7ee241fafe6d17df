"""``fmlab str`` (DPTR workflow): CLI smoke, unknown keys, bit-identical resume, ORP only in
pre-training (at the workflow level), and a run on a tiny npz pool with multi-character class names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "str"
TINY = ["trainer.batch_size=8", "trainer.log_every=1"]


def _mnist_spec(seed: int = 0) -> str:
    return f"strings?objects=mnist&n_train=32&n_test=8&seed={seed}"


def _sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def _align(tmp: Path, spec: str) -> Path:
    out = tmp / "align"
    rc = main(["str", "align", "--config", str(CONFIGS / "align.yaml"), "--out", str(out),
               *_sets(f"data.source={spec}", "trainer.max_steps=2", "towers.dim=16", "towers.width=4",
                      "towers.heads=2", *TINY)])
    assert rc == 0 and (out / "towers.json").is_file()
    return out


def _decoder_sets() -> list[str]:
    return ["decoder.d_model=16", "decoder.heads=2", "decoder.layers=1"]


def _logs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory):
    import os

    if not os.environ.get("FMLAB_DATA"):
        pytest.skip("FMLAB_DATA is not set: MNIST and CIFAR-10 are unavailable")
    tmp = tmp_path_factory.mktemp("str")
    align = _align(tmp, _mnist_spec(5))
    runs = {"align": align}
    for name, config in (("orp", "pretrain_orp.yaml"), ("noorp", "pretrain_noorp.yaml")):
        runs[name] = tmp / name
        assert main(["str", "pretrain", "--config", str(CONFIGS / config), "--out", str(runs[name]),
                     *_sets(f"towers={align}", f"data.source={_mnist_spec()}", "trainer.max_steps=2",
                            "orp.bank_size=16", *_decoder_sets(), *TINY)]) == 0
    for name, init in (("ft", str(runs["orp"])), ("scratch", "none")):
        runs[name] = tmp / name
        assert main(["str", "finetune", "--config", str(CONFIGS / "finetune.yaml"), "--init", init,
                     "--out", str(runs[name]),
                     *_sets(f"towers={align}", f"data.source={_mnist_spec()}", "trainer.max_steps=2",
                            "data.limit=10", *_decoder_sets(), *TINY)]) == 0
    return runs


def test_cli_smoke_eval_records_both_metrics(mnist_runs, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["str", "eval", "--model", str(mnist_runs["ft"]), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "sequence_acc" in out and "char_acc" in out and "n_strings      8" in out
    from fmlab.results import ResultsStore

    rows = ResultsStore(db).query("str")
    assert {r["metric"] for r in rows} == {"sequence_acc", "char_acc"}
    # a pretrain run is read zero-shot on image tokens
    assert main(["str", "eval", "--model", str(mnist_runs["orp"]), "--no-db", "--limit", "4"]) == 0


def test_perturbation_is_applied_only_in_pretraining(mnist_runs):
    orp = [r["logs"] for r in _logs(mnist_runs["orp"]) if "logs" in r]
    assert orp and all(0.0 <= r["beta"] <= 0.1 for r in orp)
    for name in ("noorp", "ft", "scratch"):
        logs = [r["logs"] for r in _logs(mnist_runs[name]) if "logs" in r]
        assert logs and not any("beta" in r for r in logs), name


def test_finetune_from_a_pretrain_run_starts_from_its_decoder(mnist_runs):
    from fmlab.experiments.str import load_str_model

    pre, _ = load_str_model(mnist_runs["orp"])
    ft_info = json.loads((mnist_runs["ft"] / "str_model.json").read_text())
    assert ft_info["init"] == str(mnist_runs["orp"]) and ft_info["train_image_tower"] is False
    ckpt = sorted((mnist_runs["ft"] / "checkpoints").iterdir())
    assert ckpt  # trained two steps from the pre-trained decoder; weights moved but shapes agree
    ft, _ = load_str_model(mnist_runs["ft"])
    for (k, a), (_, b) in zip(pre.decoder.state_dict().items(), ft.decoder.state_dict().items(), strict=True):
        assert a.shape == b.shape, k


def test_unknown_key_and_missing_init_exit_2(tmp_path, capsys):
    rc = main(["str", "finetune", "--config", str(CONFIGS / "finetune.yaml"), "--init", "none",
               "--out", str(tmp_path / "x"), "--set", "decoder.widht=3"])
    assert rc == 2 and "decoder.widht" in capsys.readouterr().err
    rc = main(["str", "finetune", "--config", str(CONFIGS / "finetune.yaml"), "--out", str(tmp_path / "y")])
    assert rc == 2 and "--init" in capsys.readouterr().err
    rc = main(["str", "eval", "--model", str(tmp_path)])
    assert rc == 2 and "str_model.json" in capsys.readouterr().err


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "str_model.safetensors"))


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_resume_is_bit_identical(mnist_runs, tmp_path, command, capsys):
    """A run killed after its step-2 checkpoint and resumed ends where the straight 4-step run ends
    (pretrain: the ORP draws come from the engine-seeded global RNG, so they replay too)."""
    import shutil

    config = {"pretrain": "pretrain_orp.yaml", "finetune": "finetune.yaml"}[command]
    extra = ["--init", str(mnist_runs["orp"])] if command == "finetune" else []
    sets = _sets(f"towers={mnist_runs['align']}", f"data.source={_mnist_spec()}", "orp.bank_size=16"
                 if command == "pretrain" else "data.limit=16", *_decoder_sets(), *TINY,
                 "trainer.checkpoint_every=2", "trainer.max_steps=4")
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert main(["str", command, "--config", str(CONFIGS / config), *extra, "--out", str(straight), *sets]) == 0
    shutil.copytree(straight, crashed)
    (crashed / "str_model.safetensors").unlink()
    (crashed / "checkpoints" / "latest.json").write_text(json.dumps(
        {"step": 2, "weights": "step-00000002.safetensors", "state": "step-00000002.state.pt"}))
    assert main(["str", command, "--resume", str(crashed)]) == 0
    a, b = _weights(straight), _weights(crashed)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_tiny_npz_pool_with_word_class_names(tmp_path):
    """Nothing is hard-wired to digits: a 3-class pool named by words, text-only pre-training without ORP."""
    from fmlab.experiments import str as wf
    from fmlab.experiments.str_config import AlignConfig, FinetuneConfig, PretrainConfig, load_str_config

    rng = np.random.default_rng(0)
    names = np.array(["ring", "bar", "cross"])
    arrays = {f"x_{s}": rng.integers(0, 256, (n, 12, 10), dtype=np.uint8) for s, n in (("train", 30), ("test", 9))}
    arrays |= {"y_train": np.arange(30) % 3, "y_test": np.arange(9) % 3, "class_names": names}
    np.savez(tmp_path / "pool.npz", **arrays)
    spec = f"strings?objects=npz:{tmp_path / 'pool.npz'}&n_train=24&n_test=6&height=16&max_len=4&sep=-&seed=0"
    common = [f"data.source={spec}", "trainer.max_steps=2", "trainer.batch_size=4", "trainer.progress=false"]
    towers = ["towers.dim=8", "towers.width=4", "towers.heads=2"]
    wf.run_align(load_str_config(None, AlignConfig, [*common, *towers]), tmp_path / "a")
    pre = load_str_config(None, PretrainConfig, [*common, f"towers={tmp_path / 'a'}", "orp.perturb=false",
                                                  "decoder.d_model=8", "decoder.heads=2", "decoder.layers=1"])
    wf.run_pretrain(pre, tmp_path / "p")
    wf.run_finetune(load_str_config(None, FinetuneConfig, [*common, f"init={tmp_path / 'p'}", "data.limit=5"]),
                    tmp_path / "f")
    out = wf.run_str_eval(tmp_path / "f")
    assert out["n_strings"] == 6 and 0.0 <= out["sequence_acc"] <= out["char_acc"] + 1e-9 <= 1.0 + 1e-9
    true, pred = out["examples"][0]
    assert set(true.split("-")) <= set(names) and (not pred or set(pred.split("-")) <= set(names))
