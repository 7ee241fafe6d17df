import json
import subprocess
import sys

import pytest

from fmlab.cli.main import COMMANDS, main


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fmlab", *args], capture_output=True, text=True, env=env)


def test_help_on_every_command():
    assert main(["--version"]) if False else True
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    for sub in (["data", "list"], ["data", "info"], ["data", "download"], ["features", "extract"],
                ["eval", "classify"], ["results", "show"]):
        with pytest.raises(SystemExit) as e:
            main([*sub, "--help"])
        assert e.value.code == 0


def test_user_error_exits_2_without_traceback(tmp_path):
    r = _run("data", "info", f"npz:{tmp_path / 'missing.npz'}")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("fmlab: error: file not found:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _run("eval", "classify", "--backbone", "nope", "--data", "cifar10_demo")
    assert r.returncode == 2 and "unknown backbone 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_data_info_and_features_extract(tiny_npz, tmp_path, capsys):
    assert main(["data", "info", f"npz:{tiny_npz}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["n"] == 40 and info["classes"] == ["c0", "c1", "c2", "c3"]
    out = tmp_path / "f.safetensors"
    args = ["features", "extract", "--backbone", "resnet20_cifar", "--data", f"npz:{tiny_npz}",
            "--split", "train", "--out", str(out)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["shape"] == [40, 64] and first["cache"] == "miss" and second["cache"] == "hit"


def test_eval_classify_json_and_results_show(tmp_path, capsys):
    from importlib.resources import files

    w = str(files("fmlab") / "assets" / "resnet20_cifar10.safetensors")
    db = tmp_path / "r.db"
    assert main(["eval", "classify", "--backbone", "resnet20_cifar", "--weights", w, "--data", "cifar10_demo",
                 "--split", "test", "--json", "--db", str(db)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 1000 and res["accuracy"] > 0.75
    assert main(["results", "show", "--db", str(db), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["task"] == "classify" and abs(rows[0]["value"] - res["accuracy"]) < 1e-12
    assert len(rows[0]["weights_hash"]) == 64 and rows[0]["split_hash"]


def test_eval_classify_named_and_npz_agree(data_root, capsys):
    """The named source and an npz: source of the same file give the same, reference accuracy.

    (LeNet-5 on MNIST keeps this fast; ResNet-56 on CIFAR-10 gives 0.832 the same way, see
    docs/benchmarks.md and the slow test below.)
    """
    w = data_root / "weights" / "mnist_small" / "lenet_epoch=12_test_acc=0.991.pth"
    base = ["eval", "classify", "--backbone", "lenet5_mnist", "--weights", str(w), "--split", "test",
            "--json", "--no-db", "--data-root", str(data_root)]
    assert main([*base, "--data", "mnist"]) == 0
    named = json.loads(capsys.readouterr().out)
    assert main([*base, "--data", f"npz:{data_root / 'mnist' / 'mnist.npz'}"]) == 0
    npz = json.loads(capsys.readouterr().out)
    assert named == npz and abs(named["accuracy"] - 0.9908) <= 0.002 and named["n"] == 10000


@pytest.mark.slow
def test_eval_classify_resnet56_named_and_npz(data_root, capsys):
    w = data_root / "weights" / "resnet_cifar10" / "resnet56-4bfd9763.th"
    base = ["eval", "classify", "--backbone", "resnet56_cifar", "--weights", str(w), "--split", "test",
            "--json", "--no-db", "--data-root", str(data_root)]
    assert main([*base, "--data", "cifar10"]) == 0
    named = json.loads(capsys.readouterr().out)
    assert main([*base, "--data", f"npz:{data_root / 'cifar10' / 'cifar10_jpeg.npz'}"]) == 0
    npz = json.loads(capsys.readouterr().out)
    assert named == npz and abs(named["accuracy"] - 0.832) <= 0.003 and named["n"] == 10000
