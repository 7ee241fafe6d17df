"""WdsStream: each sample once per epoch over ranks x workers, a seeded shuffle buffer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from fmlab.data import open_source
from fmlab.data.sources import SubsetSplit
from fmlab.data.wds import write_shards
from fmlab.data.wds_stream import WdsStream


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("wds")
    split = SubsetSplit(open_source("cifar10_demo").split("test"), np.arange(0, 1000, 25))
    write_shards(split, out, shard_size=4)  # 40 samples in 10 shards
    return out


def keys(ds) -> list[str]:
    return [s["key"] for s in ds]


def test_shuffle_buffer_is_seeded_and_complete(shards):
    plain = keys(WdsStream(str(shards), buffer=0))
    assert sorted(plain) == [f"{i:08d}" for i in range(40)]
    a, b = keys(WdsStream(str(shards), seed=1, buffer=8)), keys(WdsStream(str(shards), seed=1, buffer=8))
    c = keys(WdsStream(str(shards), seed=2, buffer=8))
    assert a == b and a != c and sorted(a) == sorted(plain)
    e1 = WdsStream(str(shards), seed=1, buffer=8)
    e1.set_epoch(1)
    assert keys(e1) != a  # a new order each epoch


def test_dataloader_workers_split_shards(shards):
    loader = torch.utils.data.DataLoader(WdsStream(str(shards), buffer=4), batch_size=None,
                                         num_workers=2, collate_fn=lambda s: s["key"])
    seen = list(loader)
    assert sorted(seen) == [f"{i:08d}" for i in range(40)]  # once each, over both workers


def _rank(rank: int, world: int, port: int, shards: str, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        got = {}
        for epoch in (0, 1):
            ds = WdsStream(shards, seed=3, buffer=4)
            ds.set_epoch(epoch)
            got[epoch] = keys(ds)
        with open(f"{out}/{rank}.json", "w") as f:
            json.dump(got, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_gloo_each_sample_once_per_epoch(shards, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(_rank, args=(2, port, str(shards), str(tmp_path)),
                                          nprocs=2, start_method="fork")
    r0 = json.loads((tmp_path / "0.json").read_text())
    r1 = json.loads((tmp_path / "1.json").read_text())
    for epoch in ("0", "1"):
        assert r0[epoch] and r1[epoch] and not set(r0[epoch]) & set(r1[epoch])
        assert sorted(r0[epoch] + r1[epoch]) == [f"{i:08d}" for i in range(40)]
    assert r0["0"] != r0["1"]  # shards re-dealt and reshuffled per epoch
