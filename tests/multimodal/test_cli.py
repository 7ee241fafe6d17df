"""``fmlab clip``: user mistakes exit 2 with one line naming the culprit."""

from __future__ import annotations

import pytest

from fmlab.cli.main import main


@pytest.mark.parametrize("argv,needle", [
    (["clip", "train", "--out", "OUT"], "--config"),
    (["clip", "train", "--config", "CFG", "--out", "OUT", "--set", "loss.nme=clip"], "loss.nme"),
    (["clip", "train", "--config", "CFG", "--out", "OUT", "--set", "loss.name=simclr"], "simclr"),
    (["clip", "zeroshot", "--model", "nowhere/run", "--data", "npz:SRC"], "nowhere/run"),
    (["clip", "retrieval", "--model", "open_clip:ViT-S-32", "--data", "npz:SRC"], "no captions"),
    (["clip", "zeroshot", "--model", "M", "--data", "npz:SRC", "--classes", "zebra"], "zebra"),
])
def test_bad_input_exits_2(tmp_path, capsys, argv, needle):
    from tests.conftest import make_npz

    src = make_npz(tmp_path / "s.npz")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  image: resnet20_cifar\n")
    argv = [a.replace("CFG", str(cfg)).replace("OUT", str(tmp_path / "o")).replace("SRC", str(src))
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_clip_results_go_through_the_protocol(tmp_path):
    """experiments/clip.py records via Protocol.of + ResultsStore.record: one row per metric (counts and
    chance levels excluded) with the columns the hand-built rows had."""
    import json
    from types import SimpleNamespace

    from fmlab.experiments.clip import _record
    from fmlab.results import ResultsStore

    db = tmp_path / "r.db"
    model = SimpleNamespace(name="clip(a+b)", weights_sha256="ab12", spec=None)
    _record(db, "clip_zeroshot", "npz:x.npz", "test", "h1", model,
            {"acc1": 0.5, "acc5": 0.75, "n_images": 10, "chance_acc1": 0.1}, {"model": "M"}, 1.5)
    rows = ResultsStore(db, readonly=True).query()
    assert [(r["metric"], r["value"]) for r in rows] == [("acc1", 0.5), ("acc5", 0.75)]
    r = rows[0]
    assert (r["task"], r["source"], r["split_hash"], r["backbone"], r["weights_hash"], r["method"], r["seconds"]) == (
        "clip_zeroshot", "npz:x.npz:test", "h1", "clip(a+b)", "ab12", "clip_zeroshot", 1.5)
    assert json.loads(r["extra"]) == {"model": "M"} and r["seed"] is None
    assert _record(None, "clip_zeroshot", "npz:x.npz", "test", "h1", model, {"acc1": 1.0}, {}, 0.0) is None
