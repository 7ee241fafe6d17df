import numpy as np
import pytest
import torch

from fmlab.data import open_source
from fmlab.errors import DataError
from fmlab.features import cached_features, extract_features, load_features, save_features
from fmlab.models import create_backbone


def test_extract_matches_direct_forward(tiny_npz):
    bb = create_backbone("resnet20_cifar")
    split = open_source(f"npz:{tiny_npz}").split("train")
    fs = extract_features(bb, split, batch_size=7, progress=False)
    with torch.no_grad():
        direct = bb.encode(torch.from_numpy(split.get_batch(range(len(split)))))
    assert fs.features.shape == (40, 64) and torch.allclose(fs.features, direct, atol=1e-5)
    assert torch.equal(fs.labels, torch.from_numpy(split.labels))
    assert fs.meta["split_content_hash"] == split.content_hash and fs.meta["backbone"] == "resnet20_cifar"


def test_cache_hit_and_atomic_file(tiny_npz, monkeypatch):
    import fmlab.features.extract as ex
    from fmlab.utils.io import cache_dir

    bb = create_backbone("resnet20_cifar")
    split = open_source(f"npz:{tiny_npz}").split("train")
    a = cached_features(bb, split, progress=False)
    assert a.meta["cache"] == "miss"
    calls = []
    monkeypatch.setattr(ex, "extract_features", lambda *a, **k: calls.append(1))
    b = cached_features(bb, split, progress=False)
    assert b.meta["cache"] == "hit" and not calls and torch.equal(a.features, b.features)
    # leftovers of an interrupted write never appear: only the final file is in the cache dir
    entries = sorted(p.name for p in (cache_dir() / "features").iterdir())
    assert len(entries) == 1 and entries[0].endswith(".safetensors") and not entries[0].startswith(".")


def test_views_shape_and_determinism(tiny_npz):
    bb = create_backbone("resnet20_cifar")
    split = open_source(f"npz:{tiny_npz}").split("train")
    a = extract_features(bb, split, n_views=3, seed=5, progress=False)
    b = extract_features(bb, split, n_views=3, seed=5, progress=False)
    c = extract_features(bb, split, n_views=3, seed=6, progress=False)
    assert a.features.shape == (3, 40, 64) and torch.equal(a.features, b.features)
    assert not torch.equal(a.features, c.features)


def test_save_load_roundtrip(tiny_npz, tmp_path):
    bb = create_backbone("lenet5_mnist")
    fs = extract_features(bb, open_source(f"npz:{tiny_npz}").split("test"), progress=False)
    p = save_features(fs, tmp_path / "f.safetensors")
    back = load_features(p)
    assert torch.equal(back.features, fs.features) and back.meta["backbone"] == "lenet5_mnist"
    (tmp_path / "bad.safetensors").write_bytes(b"xx")
    with pytest.raises(DataError, match="not a readable fmlab feature file"):
        load_features(tmp_path / "bad.safetensors")


def test_bf16_autocast_close(tiny_npz):
    bb = create_backbone("resnet20_cifar")
    split = open_source(f"npz:{tiny_npz}").split("train")
    f32 = extract_features(bb, split, progress=False).features
    bf16 = extract_features(bb, split, autocast="bf16", progress=False).features
    cos = torch.nn.functional.cosine_similarity(f32, bf16).min()
    assert cos > 0.99 and np.isfinite(bf16.numpy()).all()


def test_random_inits_and_in_memory_changes_never_share_an_entry(tiny_npz):
    """Probe F2: the cache key hashes the trunk's tensors, not the weights-file argument."""
    split = open_source(f"npz:{tiny_npz}").split("train")
    a0 = create_backbone("resnet20_cifar", seed=0)
    a1 = create_backbone("resnet20_cifar", seed=1)
    f0 = cached_features(a0, split, progress=False)
    f1 = cached_features(a1, split, progress=False)
    assert f0.meta["cache"] == f1.meta["cache"] == "miss" and not torch.equal(f0.features, f1.features)
    again = cached_features(create_backbone("resnet20_cifar", seed=0), split, progress=False)
    assert again.meta["cache"] == "hit" and torch.equal(again.features, f0.features)
    with torch.no_grad():
        a0.trunk.conv1.weight.mul_(0.5)  # changed in memory: same name, same (absent) weights file
    changed = cached_features(a0, split, progress=False)
    fresh = extract_features(a0, split, progress=False)
    assert changed.meta["cache"] == "miss" and torch.equal(changed.features, fresh.features)
    assert not torch.equal(changed.features, f0.features)


def test_stale_temporaries_are_swept_fresh_ones_kept(tiny_npz):
    """Probe F16: a writer killed mid-write leaves '.<key>.safetensors.<rand>.safetensors'."""
    import os
    import time

    from fmlab.features.extract import STALE_TEMP_SECONDS
    from fmlab.utils.io import cache_dir

    root = cache_dir() / "features"
    root.mkdir(parents=True)
    old = root / ".abc.safetensors.k2j4h5g6.safetensors"
    old_tmp = root / ".x.json.k2j4h5g6.tmp"
    fresh = root / ".def.safetensors.a1b2c3d4.safetensors"
    keep = root / "notes.txt"
    for p in (old, old_tmp, fresh, keep):
        p.write_bytes(b"half")
    past = time.time() - STALE_TEMP_SECONDS - 60
    for p in (old, old_tmp, keep):
        os.utime(p, (past, past))
    bb = create_backbone("resnet20_cifar", seed=0)
    cached_features(bb, open_source(f"npz:{tiny_npz}").split("train"), progress=False)
    assert not old.exists() and not old_tmp.exists() and fresh.exists() and keep.exists()


@pytest.mark.parametrize("kw,key", [({"batch_size": 0}, "batch_size"), ({"batch_size": -5}, "batch_size"),
                                    ({"n_views": -1}, "n_views")])
def test_bad_counts_are_refused(tiny_npz, kw, key):
    from fmlab.errors import ConfigError

    split = open_source(f"npz:{tiny_npz}").split("train")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        extract_features(create_backbone("resnet20_cifar", seed=0), split, progress=False, **kw)
