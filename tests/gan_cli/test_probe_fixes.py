"""Regression tests for the reliability probe's GAN sample/eval/unlearn failures.

Each bad input must end with exit status 2, one ``fmlab: error:`` line naming the flag, file or
value (an uncaught exception would fail the test instead of returning 2), and no output file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fmlab.cli.main import main
from fmlab.gan import create_generator, sample_grid
from fmlab.gan.grid import check_grid_size, grid_shape, tile
from fmlab.gan.io import export_generator

EVAL = ["gan", "eval", "--features", "lenet5_mnist"]


@pytest.fixture
def mlp_weights(tmp_path):
    """A bare MLP state dict (the G--300.ckpt layout) that needs --arch mlp."""
    torch.manual_seed(0)
    path = tmp_path / "G.safetensors"
    save_file(create_generator("mlp").state_dict(), str(path))
    return path


@pytest.fixture
def generator_dir(tmp_path):
    torch.manual_seed(0)
    spec = {"arch": "dcgan", "kwargs": {"z_dim": 8, "ch": 4, "channels": 1, "img_size": 16,
                                        "num_classes": 10}}
    export_generator(create_generator(spec["arch"], **spec["kwargs"]), spec, tmp_path / "gen")
    return tmp_path / "gen"


def _refused(capsys, args, *needles) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fmlab: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.mark.parametrize("extra, needles", [
    (["--arch-kwargs", '{"z_dim": -1}'], ["z_dim", "-1"]),  # gsam-10 (F13)
    (["--arch-kwargs", '{"hidden": 0}'], ["hidden", "0"]),
    (["--nrow", "0"], ["--nrow", "0"]),                      # gsam-12 (F12)
    (["--n", "0"], ["--n", "0"]),
    (["--batch-size", "0"], ["--batch-size", "0"]),
    (["--n", "100000000"], ["--n 100000000", "GiB", "1x28x28"]),  # gsam-13 (F9)
    (["--n", "4", "--nrow", "1000000000"], ["30000000002-pixel grid", "GiB"]),  # a wide grid
])
def test_gan_sample_refuses_bad_values(mlp_weights, tmp_path, capsys, extra, needles):
    out = tmp_path / "s.png"
    _refused(capsys, ["gan", "sample", "--generator", str(mlp_weights), "--arch", "mlp",
                      "--out", str(out), *extra], *needles)
    assert not out.exists() and not list(tmp_path.glob(".s.png*"))


@pytest.mark.parametrize("batch", ["0", "-5"])
def test_gan_eval_refuses_bad_batch_size(generator_dir, digits_npz, capsys, batch):
    # geval-11 (F7): was "range() arg 3 must not be zero"; -5 must not pass as "empty"
    _refused(capsys, [*EVAL, "--generator", str(generator_dir), "--ref", f"npz:{digits_npz}:test",
                      "--metrics", "fid", "--n", "50", "--batch-size", batch],
             "--batch-size", batch)


def test_gan_eval_refuses_a_sample_count_over_the_memory_budget(generator_dir, digits_npz,
                                                                  capsys, tmp_path):
    db = tmp_path / "r.db"
    _refused(capsys, [*EVAL, "--generator", str(generator_dir), "--ref", f"npz:{digits_npz}:test",
                      "--n", "100000000", "--db", str(db)], "--n 100000000", "GiB")
    assert not db.exists()


def test_fake_labels_outside_the_reference_classes_name_file_and_label(digits_npz, tmp_path,
                                                                         capsys):
    # geval-03 (F14): was "intra-FID: class 0 has 0 fake samples"
    x = np.load(digits_npz)["x_test"]
    fakes = tmp_path / "fake_labels_oob.npz"
    np.savez(fakes, images=x, labels=np.full(len(x), 42, np.int64))
    _refused(capsys, [*EVAL, "--fake-images", str(fakes), "--ref", f"npz:{digits_npz}:test",
                      "--metrics", "ifid"], str(fakes), "label 42", "0..9")


def test_failing_unlearn_leaves_no_empty_out_folder(tmp_path, capsys):
    # probe observation (e)
    out = tmp_path / "o"
    _refused(capsys, ["gan", "unlearn", "--generator", str(tmp_path / "nope.ckpt"), "--arch",
                      "mlp", "--target-class", "3", "--out", str(out), "--no-db"], "nope.ckpt")
    assert not out.exists()
    out.mkdir()  # a folder that existed before is left alone
    assert main(["gan", "unlearn", "--generator", str(tmp_path / "nope.ckpt"), "--arch", "mlp",
                 "--target-class", "3", "--out", str(out), "--no-db"]) == 2
    assert out.is_dir()


@pytest.mark.parametrize("n, nrow", [(1, 1), (7, 3), (12, 4), (12, 5), (100, None)])
def test_grid_size_check_uses_the_exact_grid_shape(n, nrow, monkeypatch):
    """The budget is checked on the shape :func:`tile` will allocate: exactly enough passes,
    one byte less is refused."""
    img = (3, 5, 4)
    rows = nrow or math.ceil(math.sqrt(n))
    expect = tile(np.zeros((n, 5, 4, 3), np.uint8), rows).shape
    assert grid_shape(n, img, rows) == expect
    need = math.prod(expect)
    monkeypatch.setenv("FMLAB_MAX_SAMPLE_BYTES", str(need))
    check_grid_size(n, img, nrow)
    monkeypatch.setenv("FMLAB_MAX_SAMPLE_BYTES", str(need - 1))
    with pytest.raises(Exception, match=f"n {n}: {n} images of 3x5x4"):
        check_grid_size(n, img, nrow)


def test_sample_grid_is_the_same_for_any_batch_size(tmp_path):
    torch.manual_seed(0)
    G = create_generator("dcgan", z_dim=8, ch=4, channels=1, img_size=16, num_classes=3)
    one = sample_grid(G, 10, tmp_path / "a.png", seed=3)
    batched = sample_grid(G, 10, tmp_path / "b.png", seed=3, batch_size=3)
    assert np.array_equal(one, batched)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
