"""fmlab text finetune: early stopping, one test scoring, results, the random-init baseline, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.text.finetune import macro_f1

from ._tiny import save_tiny_bert, tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A tiny labelled jsonl task and a tiny saved BERT."""
    root = tmp_path_factory.mktemp("task")
    texts, labels = tiny_corpus(120)
    path = root / "task.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in zip(texts, labels, strict=True)))
    return f"jsonl:{path}", save_tiny_bert(root / "model", texts)


def _finetune(task, out, *extra, seeds="1,2"):
    spec, model = task
    return main(["text", "finetune", "--model", str(model), "--task", spec, "--out", str(out),
                 "--seeds", seeds, "--set", "trainer.batch_size=16", "--set", "data.max_length=32",
                 *extra])


def test_results_summary_store_and_test_scored_once(task, tmp_path, monkeypatch):
    import fmlab.text.finetune_run as run

    calls = []
    real = run.predict_test

    def counting(model, ids, bs):
        calls.append(len(ids))
        return real(model, ids, bs)

    monkeypatch.setattr(run, "predict_test", counting)
    assert _finetune(task, tmp_path / "o", "--set", "trainer.epochs=2") == 0
    recs = json.loads((tmp_path / "o" / "results.json").read_text())
    assert calls == [12, 12]  # once per seed, the whole test split (10 % of 120, stratified)
    for r in recs:
        assert {"accuracy", "macro_f1", "val_accuracy", "best_step", "seed", "n_train", "n_val",
                "n_test", "protocol", "test_split_hash", "train_split_hash"} <= set(r)
        assert r["n_train"] + r["n_val"] == 108 and r["n_test"] == 12
        assert r["protocol"]["weights_sha256"] and r["protocol"]["model_type"] == "bert"
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "±" in summary and "macro-F1" in summary
    from fmlab.results import ResultsStore

    rows = ResultsStore(tmp_path / "o" / "fmlab.db", readonly=True).query("text_finetune")
    assert sorted((r["seed"], r["metric"]) for r in rows) == sorted(
        (s, m) for s in (1, 2) for m in ("accuracy", "macro_f1", "val_accuracy"))
    assert {r["split_hash"] for r in rows} == {recs[0]["test_split_hash"]}


def test_early_stopping_keeps_the_best_validation_epoch(task, tmp_path):
    assert _finetune(task, tmp_path / "o", "--set", "trainer.epochs=6", "--set", "optim.lr=3e-3",
                     "--no-db", seeds="3") == 0
    r = json.loads((tmp_path / "o" / "results.json").read_text())[0]
    evals = r["validations"]
    assert len(evals) == 7  # the start, then every epoch end
    best = min(evals, key=lambda e: (-e["val_accuracy"], e["val_loss"]))
    assert r["best_step"] == best["step"] and r["val_accuracy"] == pytest.approx(best["val_accuracy"])
    # patience: with a zero learning rate nothing improves, so training stops after one epoch
    assert _finetune(task, tmp_path / "p", "--set", "trainer.epochs=6", "--set", "optim.lr=0",
                     "--set", "patience=1", "--no-db", seeds="3") == 0
    r = json.loads((tmp_path / "p" / "results.json").read_text())[0]
    assert r["stopped_early"] and r["steps"] == r["n_train"] // 16 and r["best_step"] == 0


def test_random_baseline_is_random_with_the_same_config(task):
    from fmlab.text.classifier import load_backbone

    _, model = task
    pre = load_backbone(str(model))
    rnd = load_backbone(f"random:{model}", init_seed=1)
    assert rnd.random_init and rnd.weights_sha256 is None and pre.weights_sha256
    assert rnd.model.config.to_diff_dict() == pre.model.config.to_diff_dict()
    assert type(rnd.model) is type(pre.model)
    assert rnd.tokenizer.get_vocab() == pre.tokenizer.get_vocab()
    a, b = pre.model.state_dict(), rnd.model.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k].dtype.is_floating_point and a[k].numel() > 1
              and a[k].std() > 0 and not torch.equal(a[k], b[k])]
    trained = [k for k in a if a[k].dtype.is_floating_point and a[k].numel() > 1 and a[k].std() > 0]
    assert differ == trained and len(trained) > 5
    again = load_backbone(f"random:{model}", init_seed=1).model.state_dict()
    other = load_backbone(f"random:{model}", init_seed=2).model.state_dict()
    k = "embeddings.word_embeddings.weight"
    assert torch.equal(again[k], b[k]) and not torch.equal(other[k], b[k])


def test_mean_pooling_for_decoders(tmp_path):
    from fmlab.text.classifier import TextClassifier, load_backbone, resolve_pool

    texts, _ = tiny_corpus(40)
    bb = load_backbone(str(save_tiny_bert(tmp_path / "gpt", texts, kind="gpt")))
    assert bb.model_type == "gpt2" and resolve_pool("auto", bb.model_type) == "mean"
    clf = TextClassifier(bb.model, 2, bb.tokenizer.pad_token_id, "mean", 0.0).eval()
    ids = bb.tokenizer(texts[:2], padding=True, return_tensors="pt")["input_ids"]
    # padding does not change the logits: pad columns are masked and cut
    wide = torch.cat([ids, torch.full((2, 5), bb.tokenizer.pad_token_id)], 1)
    assert torch.allclose(clf(ids), clf(wide), atol=1e-6)


@pytest.mark.parametrize("args,msg", [
    (["--task", "nope"], "unknown text source 'nope'"),
    (["--set", "data.max_length=100"], "data.max_length: 100 is above the 64 positions"),
    (["--set", "data.maxlen=3"], "unknown key 'data.maxlen'"),
    (["--fraction", "1.5"], "--fraction: 1.5"),
])
def test_bad_input_exits_2(task, tmp_path, capsys, args, msg):
    spec, model = task
    argv = ["text", "finetune", "--model", str(model), "--task", spec, "--out", str(tmp_path / "o"),
            "--no-db", *args]
    if args[0] == "--task":
        argv[argv.index(spec) - 1:argv.index(spec) + 1] = []
    assert main(argv) == 2
    assert msg in capsys.readouterr().err


def test_bad_label_and_unlabelled_task_exit_2(task, tmp_path, capsys):
    _, model = task
    (tmp_path / "sst2").mkdir()
    for s in ("train", "dev", "test"):
        (tmp_path / "sst2" / f"{s}.jsonl").write_text('{"text": "a", "label": 0}\n'
                                                      '{"text": "b", "label": 2}\n')
    assert main(["text", "finetune", "--model", str(model), "--task", "sst2", "--out",
                 str(tmp_path / "o"), "--data-root", str(tmp_path), "--no-db"]) == 2
    assert "label 2 is outside the label set" in capsys.readouterr().err
    txt = tmp_path / "c.txt"
    txt.write_text("a b\nc d\n")
    assert main(["text", "finetune", "--model", str(model), "--task", f"text:{txt}", "--out",
                 str(tmp_path / "o2"), "--no-db"]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert main(["text", "finetune", "--model", str(tmp_path / "none"), "--task", "sst2",
                 "--out", str(tmp_path / "o3"), "--no-db"]) == 2
    assert "config.json not found" in capsys.readouterr().err


def test_macro_f1_matches_its_definition():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    f1 = []
    for c in range(5):
        prec = np.mean(y[p == c] == c) if (p == c).any() else 0.0
        rec = np.mean(p[y == c] == c) if (y == c).any() else 0.0
        f1.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    assert macro_f1(y, p) == pytest.approx(np.mean(f1))
    assert macro_f1(np.array([0, 1]), np.array([0, 1])) == 1.0
