"""WebDataset shards: round trip, the ``wds:`` source, bad input, and resume after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.data import open_source
from fmlab.data.sources import SubsetSplit
from fmlab.data.wds import write_shards
from fmlab.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo():
    return SubsetSplit(open_source("cifar10_demo").split("test"), np.arange(0, 1000, 10))


@pytest.fixture
def shards(tmp_path, demo):
    write_shards(demo, tmp_path / "w", shard_size=32, source="cifar10_demo")
    return tmp_path / "w"


def test_round_trip_pixels_labels_manifest(shards, demo):
    m = json.loads((shards / "manifest.json").read_text())
    assert m["n"] == 100 and [s["n"] for s in m["shards"]] == [32, 32, 32, 4]
    for s in m["shards"]:
        data = (shards / s["name"]).read_bytes()
        assert s["bytes"] == len(data) and s["sha256"] == hashlib.sha256(data).hexdigest()
    split = open_source(f"wds:{shards}").split("test")
    idx = np.arange(100)
    np.testing.assert_array_equal(split.get_batch(idx), demo.get_batch(idx))  # PNG: lossless
    np.testing.assert_array_equal(split.labels, demo.labels)
    assert split.class_names == demo.class_names
    # a brace pattern of two shards reads those shards only, with the manifest's class names
    part = open_source(f"wds:{shards}/test-{{000001..000002}}.tar").split("test")
    np.testing.assert_array_equal(part.get_batch(np.arange(64)), demo.get_batch(np.arange(32, 96)))
    assert part.class_names == demo.class_names


def test_shards_are_deterministic_and_readable_by_webdataset(tmp_path, demo, shards):
    write_shards(demo, tmp_path / "again", shard_size=32, source="cifar10_demo")
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (shards / "manifest.json").read_bytes()
    wds = pytest.importorskip("webdataset")
    ds = wds.WebDataset(str(shards / "test-000000.tar"), shardshuffle=False).decode("rgb8")
    first = next(iter(ds))
    np.testing.assert_array_equal(first["png"], demo.get_batch([0])[0])
    assert first["cls"] == int(demo.labels[0]) and first["json"]["index"] == 0


def test_pattern_matching_nothing_exit_2(tmp_path, capsys):
    assert main(["data", "info", f"wds:{tmp_path}/none-{{0..3}}.tar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shard file matches" in err and "none-{0..3}.tar" in err


def test_corrupt_tar_header_exit_2(shards, tmp_path, capsys):
    from fmlab.data.wds import index_shard

    bad = shards / "test-000001.tar"
    header = index_shard(bad)["00000035"]["cls"][0] - 512  # a member header in the middle
    data = bytearray(bad.read_bytes())
    data[header:header + 100] = b"\xff" * 100  # its name and mode: the checksum fails
    bad.write_bytes(bytes(data))
    out = tmp_path / "f.safetensors"
    rc = main(["features", "extract", "--backbone", "resnet20_cifar", "--data", f"wds:{shards}",
               "--split", "test", "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "test-000001.tar" in err and not out.exists()


def test_corrupt_image_member_names_it(shards):
    from fmlab.data.wds import index_shard

    tar = shards / "test-000000.tar"
    off, size = index_shard(tar)["00000030"]["png"]
    data = bytearray(tar.read_bytes())
    data[off:off + size] = b"\x00" * size  # same size, not a PNG any more
    tar.write_bytes(bytes(data))
    split = open_source(f"wds:{shards}").split("test")
    split.get_batch([0, 1])  # the other members still decode
    with pytest.raises(DataError, match=r"test-000000.tar: member 00000030"):
        split.get_batch([30])


def test_shard_cli(tmp_path, capsys):
    assert main(["data", "shard", "cifar10_demo", "--split", "train", "--out", str(tmp_path / "s"),
                 "--shard-size", "400"]) == 0
    assert "3 shards, 1000 samples" in capsys.readouterr().out
    assert main(["data", "shard", "cifar10_demo", "--split", "train", "--out", str(tmp_path / "x"),
                 "--shard-size", "0"]) == 2


# ------------------------------------------------------------------- resume after SIGKILL


def _pretrain(run, shards, resume=False, sleep=0.0):
    if sleep:  # slow every batch down so the kill lands mid-run
        from fmlab.engine.data import SplitSource

        orig = SplitSource.get_batch

        def slow(self, indices):
            time.sleep(sleep)
            return orig(self, indices)

        SplitSource.get_batch = slow
    torch.set_num_threads(1)
    args = (["pretrain", "--resume", str(run)] if resume else
            ["pretrain", "--config", "configs/pretrain/supervised_cifar10.yaml", "--out", str(run),
             "--set", f"data.source=wds:{shards}", "--set", "data.split=test",
             "--set", "data.val_size=0", "--set", "trainer.max_steps=12",
             "--set", "trainer.batch_size=8", "--set", "trainer.checkpoint_every=2",
             "--set", "trainer.log_every=1", "--set", "schedule.warmup_steps=0"])
    os._exit(main(args))


def _fork(*args):
    p = mp.get_context("fork").Process(target=_pretrain, args=args)
    p.start()
    return p


def test_wds_pretrain_sigkill_resume_bit_exact(tmp_path, shards, monkeypatch):
    from safetensors.torch import load_file

    from fmlab.engine.checkpoint import latest_checkpoint

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    ref = _fork(tmp_path / "ref", shards)
    ref.join(120)
    assert ref.exitcode == 0
    run = tmp_path / "run"
    p = _fork(run, shards, False, 0.15)
    deadline = time.monotonic() + 120
    while (c := latest_checkpoint(run)) is None or c.step < 4:
        assert p.is_alive() and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL and latest_checkpoint(run).step < 12
    q = _fork(run, shards, True)
    q.join(120)
    assert q.exitcode == 0
    a, b = load_file(str(run / "encoder.safetensors")), load_file(str(tmp_path / "ref" / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_image_text_split_round_trip(tmp_path, demo):
    from fmlab.data.sources import ImageTextSplit

    owner = np.repeat(np.arange(10), [1, 2, 3, 1, 1, 2, 1, 1, 1, 2])
    caps = [f"caption {j} of image {i}" for j, i in enumerate(owner)]
    images = SubsetSplit(demo, np.arange(10))
    write_shards(ImageTextSplit(images, caps, owner), tmp_path / "it", shard_size=4)
    back = open_source(f"wds:{tmp_path / 'it'}").split("test")
    assert back.captions == caps and np.array_equal(back.caption_image_index, owner)
    np.testing.assert_array_equal(back.images.get_batch(np.arange(10)), images.get_batch(np.arange(10)))


def test_header_parser_matches_tarfile_and_pax_falls_back(shards, tmp_path):
    import io
    import tarfile

    from fmlab.data.wds import _index_with_tarfile, index_shard

    for tar in sorted(shards.glob("*.tar")):
        assert index_shard(tar) == _index_with_tarfile(tar, tar.stat().st_size)
    pax = tmp_path / "pax.tar"  # another writer's shard: a pax header for a long key
    png = (shards / "test-000000.tar").read_bytes()
    off, size = index_shard(shards / "test-000000.tar")["00000000"]["png"]
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in ((("k" * 120) + ".png", png[off:off + size]), (("k" * 120) + ".cls", b"3")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    split = open_source(f"wds:{pax}").split("train")
    assert len(split) == 1 and split.labels.tolist() == [3] and split.get_batch([0]).shape == (1, 32, 32, 3)


def test_gan_training_data_streams_from_shards(shards, demo, tmp_path):
    """``fmlab gan train`` on ``wds:`` keeps no pixels in memory and yields the same batches as
    the in-memory path on the same images."""
    from fmlab.experiments.gan_config import GANDataConfig
    from fmlab.experiments.gan_data import load_train_data

    labelled = load_train_data(GANDataConfig(source=f"wds:{shards}", split="test", limit=40,
                                             channels=3, conditional=True))
    assert labelled.images is None and len(labelled) == 40
    np.savez(tmp_path / "same.npz", x_test=demo.get_batch(np.arange(len(demo))),
             y_test=np.asarray(demo.labels), x_train=demo.get_batch(np.arange(2)),
             y_train=np.asarray(demo.labels)[:2])
    memory = load_train_data(GANDataConfig(source=f"npz:{tmp_path / 'same.npz'}", split="test",
                                           limit=40, channels=3, conditional=True))
    assert memory.images is not None
    idx = np.array([3, 0, 39, 17])
    a, b = labelled.get_batch(idx), memory.get_batch(idx)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
