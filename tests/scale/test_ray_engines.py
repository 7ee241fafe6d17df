"""``--engine ray`` gives the local engine's bytes: curation (JSONL and Parquet) and features.

One local Ray cluster (2 CPUs, no dashboard) serves the module and is shut down after it.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from fmlab.cli.main import main
from fmlab.curate import CurateConfig, curate
from tests.curate.test_cli import write_pool

ray = pytest.importorskip("ray", reason="Ray is the [dist] extra (installed by the dev extra)")


@pytest.fixture(scope="module")
def ray_cluster():
    import os

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def many_units(monkeypatch):
    """Units of ~4 KiB so a small pool is cut into many shards (ordering is then tested)."""
    from fmlab.curate import ray_engine

    monkeypatch.setattr(ray_engine, "UNIT_BYTES", 4096)


def _same_outputs(a, b):
    for name in ("curated.jsonl", "entry_counts.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_curate_ray_jsonl_same_bytes(ray_cluster, many_units, tmp_path, workers):
    cap, ent, _ = write_pool(tmp_path)
    local = curate(CurateConfig(cap, ent, 100, tmp_path / "local", seed=7, workers=1))
    rs = curate(CurateConfig(cap, ent, 100, tmp_path / "ray", seed=7, workers=workers,
                             engine="ray"))
    from fmlab.curate.ray_engine import units_of
    from fmlab.curate.readers import CaptionSource

    assert len(units_of(CaptionSource(cap), workers)) > 10  # really split into many shards
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    assert rs["curated_sha256"] == local["curated_sha256"] and rs["engine"] == "ray"
    assert 0 < rs["pairs_kept"] < rs["pairs_total"]  # the draw really dropped pairs


@pytest.mark.slow  # the local engine's folder == file test runs by default (test_curate_shards)
def test_curate_ray_on_shards_equals_the_single_file(ray_cluster, tmp_path):
    from tests.scale.test_curate_shards import split_pool

    cap, ent, shards = split_pool(tmp_path)
    curate(CurateConfig(cap, ent, 100, tmp_path / "one", seed=5))
    curate(CurateConfig(shards, ent, 100, tmp_path / "ray", seed=5, engine="ray", workers=2))
    _same_outputs(tmp_path / "one", tmp_path / "ray")


@pytest.mark.slow
def test_curate_ray_seed_matters(ray_cluster, many_units, tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    a = curate(CurateConfig(cap, ent, 100, tmp_path / "s7", seed=7, engine="ray", workers=2))
    b = curate(CurateConfig(cap, ent, 100, tmp_path / "s8", seed=8, engine="ray", workers=2))
    assert a["curated_sha256"] != b["curated_sha256"]


@pytest.mark.slow  # default: the JSONL equality test exercises the same Ray pipeline
def test_curate_ray_parquet_row_groups_same_bytes(ray_cluster, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _, ent, recs = write_pool(tmp_path)
    table = pa.Table.from_pylist([{**r, "n": i} for i, r in enumerate(recs)])
    pq.write_table(table, tmp_path / "pool.parquet", row_group_size=97)  # 17 row groups
    cap = tmp_path / "pool.parquet"
    curate(CurateConfig(cap, ent, 50, tmp_path / "local", seed=1, batch_size=128))
    curate(CurateConfig(cap, ent, 50, tmp_path / "ray", seed=1, engine="ray", workers=2))
    _same_outputs(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
def test_curate_ray_bad_line_names_it(ray_cluster, tmp_path):
    cap, ent, _ = write_pool(tmp_path)
    lines = cap.read_text().splitlines(keepends=True)
    lines[700] = "{not json\n"
    cap.write_text("".join(lines))
    rc = main(["curate", "--captions", str(cap), "--entries", str(ent), "-t", "100",
               "--out", str(tmp_path / "o"), "--engine", "ray", "--workers", "2"])
    assert rc == 2 and not (tmp_path / "o" / "curated.jsonl").exists()


def test_features_ray_same_file(ray_cluster, tmp_path, capsys):
    from fmlab.features import load_features

    common = ["features", "extract", "--backbone", "resnet20_cifar", "--data", "cifar10_demo",
              "--split", "test", "--batch-size", "96", "--no-cache"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the actors use one thread: the same kernels, the same bits
    try:
        assert main([*common, "--out", str(tmp_path / "l.safetensors")]) == 0
        assert main([*common, "--out", str(tmp_path / "r.safetensors"), "--engine", "ray",
                     "--workers", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    a, b = load_features(tmp_path / "l.safetensors"), load_features(tmp_path / "r.safetensors")
    assert a.features.shape == (1000, 64)
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
    a.meta.pop("seconds"), b.meta.pop("seconds")
    assert a.meta == b.meta  # the same protocol, hence the same cache key
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["shape"] == [1000, 64]


def test_without_ray_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    """Simulate a machine without Ray: ``import ray`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "ray", None)
    cap, ent, _ = write_pool(tmp_path)
    rc = main(["curate", "--captions", str(cap), "--entries", str(ent), "-t", "100",
               "--out", str(tmp_path / "o"), "--engine", "ray"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and 'pip install -e ".[dist]"' in err
    assert not (tmp_path / "o").exists()
    rc = main(["features", "extract", "--backbone", "resnet20_cifar", "--data", "cifar10_demo",
               "--split", "test", "--out", str(tmp_path / "f.safetensors"), "--engine", "ray"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "[dist]" in err
    assert not (tmp_path / "f.safetensors").exists()
