"""Regression tests for the reliability probe's CLI failures (reviews/reliability-probe.md).

Each case: exit status 2, one ``fmlab: error:`` line naming the file, key or value at fault, no
traceback, and nothing left behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from fmlab.cli.main import main
from tests.conftest import make_npz


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmlab: error: "), err
    return lines[0]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _extract(src: Path, out: Path, *extra: str) -> list[str]:
    return ["features", "extract", "--backbone", "resnet20_cifar", "--data", f"npz:{src}", "--split", "train",
            "--out", str(out), "--no-cache", *extra]


# F5: OS errors on output paths ---------------------------------------------------------------

def test_out_is_an_existing_directory(tmp_path, capsys):
    src = make_npz(tmp_path / "s.npz")
    (tmp_path / "outdir").mkdir()
    before = _files(tmp_path)
    assert main(_extract(src, tmp_path / "outdir")) == 2
    err = _err(capsys)
    assert f"{tmp_path / 'outdir'}: is a directory" in err
    assert _files(tmp_path) == before  # no temporary left next to it


def test_parent_of_out_is_a_file(tmp_path, capsys):
    src = make_npz(tmp_path / "s.npz")
    before = _files(tmp_path)
    assert main(_extract(src, tmp_path / "s.npz" / "f.safetensors")) == 2
    assert str(tmp_path / "s.npz") in _err(capsys)
    assert _files(tmp_path) == before


def test_read_only_output_folder_monkeypatched(tmp_path, capsys, monkeypatch):
    """Running as root, chmod does not stop writes: simulate EROFS where the temporary is created."""
    import errno
    import tempfile

    src = make_npz(tmp_path / "s.npz")

    def refuse(*a, dir=None, prefix="", suffix="", **k):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}ab12cd34{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(_extract(src, tmp_path / "ro" / "f.safetensors")) == 2
    err = _err(capsys)
    assert err == f"fmlab: error: {tmp_path / 'ro' / 'f.safetensors'}: Read-only file system"


def _unshare_works(d: Path) -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {d} {d}"], capture_output=True)
    return r.returncode == 0


def test_read_only_bind_mount(tmp_path):
    rodir = tmp_path / "rodir"
    rodir.mkdir()
    if not _unshare_works(rodir):
        pytest.skip("needs root and unshare -m for a read-only bind mount")
    src = make_npz(tmp_path / "s.npz")
    cmd = " ".join([sys.executable, "-m", "fmlab", *_extract(src, rodir / "f.safetensors")])
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {rodir} {rodir} && {cmd}"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{rodir / 'f.safetensors'}: Read-only file system" in r.stderr
    assert not list(rodir.iterdir())


# F6: non-UTF-8 text ---------------------------------------------------------------------------

def test_data_info_jsonl_not_utf8(tmp_path, capsys):
    bad = tmp_path / "nonutf8.jsonl"
    bad.write_bytes(b'\xff\xfe{"image": "a.png", "caption": "caf\xe9"}\n')
    assert main(["data", "info", f"jsonl:{bad}"]) == 2
    err = _err(capsys)
    assert str(bad) in err and "not UTF-8" in err


def test_any_unicode_error_is_one_line(capsys, monkeypatch):
    import fmlab.cli.data as cli_data

    def boom(args):
        b"\xe9".decode("utf-8")

    monkeypatch.setattr(cli_data, "run_list", boom)
    assert main(["data", "list"]) == 2
    assert "not UTF-8" in _err(capsys)


# F7 / F12: batch size and views ----------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--batch-size", "-5"), ("--views", "-1"),
                                        ("--seed", "-1")])
def test_features_extract_refuses_bad_counts(tmp_path, capsys, flag, value):
    src = make_npz(tmp_path / "s.npz")
    out = tmp_path / "o" / "f.safetensors"
    assert main(_extract(src, out, flag, value)) == 2
    err = _err(capsys)
    assert f"{flag}: {value}" in err and "empty" not in err
    assert not out.parent.exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_eval_classify_refuses_bad_batch_size(tmp_path, capsys, value):
    src = make_npz(tmp_path / "s.npz")
    assert main(["eval", "classify", "--backbone", "resnet20_cifar", "--data", f"npz:{src}",
                 "--batch-size", value, "--db", str(tmp_path / "r.db")]) == 2
    assert f"--batch-size: {value}" in _err(capsys)
    assert not (tmp_path / "r.db").exists()


# F8: memory guard on npz sources ---------------------------------------------------------------

def _npz_with_member(path: Path, name: str, payload: bytes, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr(name, payload)
        labels = io.BytesIO()
        np.save(labels, np.zeros(4, np.uint8))
        z.writestr("y_train.npy", labels.getvalue())
    return path


def test_npz_header_claiming_huge_array(tmp_path, capsys):
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                                "shape": (100000, 1000, 1000, 3)})
    p = _npz_with_member(tmp_path / "huge.npz", "x_train.npy", head.getvalue() + b"\0" * 64)
    assert main(["data", "info", f"npz:{p}"]) == 2
    err = _err(capsys)
    assert str(p) in err and "'x_train'" in err and "279.4 GiB" in err


def test_npz_array_over_configured_limit(tmp_path, capsys, monkeypatch):
    src = make_npz(tmp_path / "s.npz")  # x_train: 40*8*8*3 = 7680 bytes
    monkeypatch.setenv("FMLAB_MAX_ARRAY_BYTES", "4096")
    assert main(["data", "info", f"npz:{src}"]) == 2
    err = _err(capsys)
    assert "'x_train'" in err and "7.5 KiB" in err and "4.0 KiB" in err and "FMLAB_MAX_ARRAY_BYTES" in err


def test_npz_zip_bomb_refused_before_decompressing(tmp_path, capsys, monkeypatch):
    import fmlab.data.npz as npz

    monkeypatch.setattr(npz, "RATIO_MIN_BYTES", 1 << 20)  # the real floor is 256 MiB; same logic
    arr = io.BytesIO()
    np.save(arr, np.zeros((4, 512, 512, 3), np.uint8))  # 3 MiB of zeros, deflates ~1000:1
    p = _npz_with_member(tmp_path / "bomb.npz", "x_train.npy", arr.getvalue(), zipfile.ZIP_DEFLATED)
    loads = []
    real = npz.np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(npz.np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: loads.append(key) if key == "x_train" else real(self, key))
    assert main(["data", "info", f"npz:{p}"]) == 2
    err = _err(capsys)
    assert str(p) in err and "'x_train'" in err and "zip bomb" in err and "3.0 MiB" in err and not loads


def test_npz_header_disagreeing_with_zip_entry(tmp_path, capsys):
    arr = io.BytesIO()
    np.save(arr, np.zeros((4, 8, 8, 3), np.uint8))
    p = _npz_with_member(tmp_path / "short.npz", "x_train.npy", arr.getvalue()[:-100])
    assert main(["data", "info", f"npz:{p}"]) == 2
    assert "'x_train': its header claims" in _err(capsys)


# F10 / F11: decompression bombs and images without pixels ---------------------------------------

def _png_claiming(path: Path, width: int, height: int) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_folder_png_decompression_bomb(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "folder_bomb"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / c / f"{i}.png")
    bomb = root / "cat" / "bomb.png"
    _png_claiming(bomb, 100000, 100000)
    argv = ["features", "extract", "--backbone", "resnet20_cifar", "--data", f"folder:{root}",
            "--split", "train", "--out", str(tmp_path / "f.safetensors"), "--no-cache"]
    assert main(argv) == 2
    err = _err(capsys)
    assert str(bomb) in err and "decompression bomb" in err
    assert not (tmp_path / "f.safetensors").exists()


def test_png_between_warning_and_error_limit_is_refused(tmp_path):
    """PIL only warns between MAX_IMAGE_PIXELS and twice that; fmlab refuses those too."""
    from PIL import Image

    from fmlab.data.sources import decode_image
    from fmlab.errors import DataError

    p = tmp_path / "big.png"
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    _png_claiming(p, side, side)
    with pytest.raises(DataError, match="big.png is refused as a decompression bomb"):
        decode_image(p.read_bytes(), "RGB", f"image file {p}")


def test_npz_images_without_pixels(tmp_path, capsys):
    p = tmp_path / "zero_hw.npz"
    np.savez(p, x_train=np.zeros((5, 0, 0, 3), np.uint8), y_train=np.zeros(5, np.uint8))
    assert main(_extract(p, tmp_path / "f.safetensors")) == 2
    err = _err(capsys)
    assert str(p) in err and "height and width must be >= 1" in err


# F19: results show never creates or converts a file ----------------------------------------------

def test_results_show_leaves_a_zero_byte_file_alone(tmp_path, capsys):
    db = tmp_path / "zero.db"
    db.write_bytes(b"")
    assert main(["results", "show", "--db", str(db)]) == 2
    assert str(db) in _err(capsys)
    assert db.stat().st_size == 0 and _files(tmp_path) == ["zero.db"]


def test_results_show_missing_and_not_sqlite(tmp_path, capsys):
    assert main(["results", "show", "--db", str(tmp_path / "missing.db")]) == 2
    assert f"results database not found: {tmp_path / 'missing.db'}" in _err(capsys)
    assert not (tmp_path / "missing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all " * 200)
    before = junk.read_bytes()
    assert main(["results", "show", "--db", str(junk)]) == 2
    assert f"{junk}: not a usable results database" in _err(capsys)
    assert junk.read_bytes() == before


# F15: an empty captions pool ------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_curate_refuses_an_empty_caption_pool(tmp_path, capsys, content):
    caps = tmp_path / "caps_empty.jsonl"
    caps.write_bytes(content)
    entries = tmp_path / "entries.txt"
    entries.write_text("cat\ndog\n")
    out = tmp_path / "cu"
    assert main(["curate", "--captions", str(caps), "--entries", str(entries), "-t", "1", "--out", str(out)]) == 2
    assert f"{caps}: no captions" in _err(capsys)
    assert not out.exists()


# the backbone seed (issue 27 §4): two processes build the same network ----------------------------

def test_two_processes_build_the_same_random_network(tmp_path, capsys):
    src = make_npz(tmp_path / "s.npz", n_train=40, n_test=20)
    train, test, test_again = tmp_path / "train.safetensors", tmp_path / "test.safetensors", tmp_path / "t2.st"
    assert main(_extract(src, train)) == 0  # this process
    base = ["features", "extract", "--backbone", "resnet20_cifar", "--data", f"npz:{src}", "--split", "test"]
    assert main([*base, "--out", str(test_again), "--no-cache"]) == 0
    capsys.readouterr()
    r = subprocess.run([sys.executable, "-m", "fmlab", *base, "--out", str(test), "--no-cache"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    from fmlab.features import load_features

    a, b, b2 = load_features(train), load_features(test), load_features(test_again)
    assert np.array_equal(b.features.numpy(), b2.features.numpy())  # another process, same network
    assert a.meta["init_seed"] == b.meta["init_seed"] == 0 and a.meta["weights_sha256"] is None
    xa, ya = a.numpy()
    xb, yb = b.numpy()
    d = ((xb[:, None, :] - xa[None, :, :]) ** 2).sum(-1)
    acc = float((ya[d.argmin(1)] == yb).mean())
    assert acc >= 0.75  # 4 classes: chance is 0.25


def test_eval_classify_records_protocol_and_init_seed(tmp_path, capsys):
    src = make_npz(tmp_path / "s.npz")
    db = tmp_path / "r.db"
    argv = ["eval", "classify", "--backbone", "resnet20_cifar", "--data", f"npz:{src}", "--json", "--db", str(db)]
    assert main([*argv, "--seed", "3"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*argv, "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # same seed, same network, same accuracy
    assert main(["results", "show", "--db", str(db), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    extra = json.loads(rows[0]["extra"])
    assert rows[0]["backbone"] == "resnet20_cifar" and rows[0]["source"] == f"npz:{src}:test"
    assert rows[0]["method"] == "head" and rows[0]["metric"] == "accuracy" and rows[0]["weights_hash"] is None
    assert extra["init_seed"] == 3 and extra["n"] == 20 and extra["preprocess"]["input_size"] == [32, 32]


# observation (a): a refused weights_only load prints one line of our own -----------------------

class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["torch_zip", "raw_pickle", "raw_pickle_p2"])
def test_malicious_weights_never_run_and_one_line(tmp_path, capsys, kind):
    import pickle

    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    if kind == "torch_zip":
        torch.save({"state_dict": _Evil(str(marker))}, evil)
    else:
        evil.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2 if kind.endswith("p2") else None))
    src = make_npz(tmp_path / "s.npz")
    assert main(_extract(src, tmp_path / "f.safetensors", "--weights", str(evil))) == 2
    err = _err(capsys)
    assert str(evil) in err and "weights_only" not in err.replace("weights_only=True", "")
    if kind != "raw_pickle":  # protocol 4 is refused earlier by torch's reader (unsupported opcode)
        assert "pickled code" in err and "system" in err
    assert not marker.exists()
