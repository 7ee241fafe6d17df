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
