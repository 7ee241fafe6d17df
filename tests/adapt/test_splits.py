"""Split files: deterministic bytes, disjoint nested draws, validated loading, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmlab.adapt import load_split, make_split
from fmlab.errors import DataError
from fmlab.utils.io import sha256_file


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return rng.permutation(np.repeat(np.arange(5), [30, 14, 25, 20, 13]))


def test_k_per_class_disjoint_and_from_train_only(labels):
    s = make_split(labels, 4, seed=1)
    assert np.array_equal(np.bincount(labels[s.train], minlength=5), [4] * 5)
    assert np.array_equal(np.bincount(labels[s.val], minlength=5), [4] * 5)
    assert not set(s.train) & set(s.val)
    s1 = make_split(labels, 1, seed=1)
    assert np.array_equal(np.bincount(labels[s1.val], minlength=5), [1] * 5)  # min(K, 4)


def test_same_inputs_same_bytes_and_hash(tmp_path, labels):
    a = make_split(labels, 8, seed=3)
    b = make_split(labels.copy(), 8, seed=3)
    sha_a = a.save(tmp_path / "a.json")
    sha_b = b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sha_a == sha_b == sha256_file(tmp_path / "a.json") == a.sha256
    assert make_split(labels, 8, seed=4).sha256 != sha_a


def test_train_sets_nested_across_shots(labels):
    small, big = make_split(labels, 2, seed=5), make_split(labels, 8, seed=5)
    assert set(small.train) <= set(big.train)


def test_round_trip(tmp_path, labels):
    s = make_split(labels, 2, seed=7, class_names=list("abcde"))
    s.save(tmp_path / "s.json")
    t = load_split(tmp_path / "s.json", labels=labels)
    assert np.array_equal(s.train, t.train) and np.array_equal(s.val, t.val)
    assert t.class_names == tuple("abcde") and t.shots == 2 and t.seed == 7
    assert t.to_json_bytes() == s.to_json_bytes()
    with pytest.raises(DataError, match="different label array"):
        load_split(tmp_path / "s.json", labels=labels[::-1])


def test_all_shots_keeps_a_validation_draw(labels):
    s = make_split(labels, "all", seed=1)
    counts = np.bincount(labels)
    n_val = np.ceil(0.1 * counts).astype(int)
    assert np.array_equal(np.bincount(labels[s.val]), n_val)
    assert np.array_equal(np.bincount(labels[s.train]), counts - n_val)
    s2 = make_split(labels, "all", seed=1, n_val=2)
    assert np.array_equal(np.bincount(labels[s2.val]), [2] * 5)


def test_too_many_shots_names_the_class(labels):
    with pytest.raises(DataError, match=r"class 4 \('truck'\) has 13 train images"):
        make_split(labels, 10, seed=1, class_names=["a", "b", "c", "d", "truck"])
    with pytest.raises(DataError, match="class 1 has 14"):
        make_split(labels, 16, seed=1)


def test_missing_class_is_named():
    labels = np.array([0, 0, 0, 2, 2, 2])
    with pytest.raises(DataError, match=r"class 1 \('bird'\) has no images"):
        make_split(labels, 1, seed=0, class_names=["cat", "bird", "dog"])
    with pytest.raises(DataError, match="class 1 has no images"):
        make_split(labels, 1, seed=0)
    with pytest.raises(DataError, match="class 3 has no images"):
        make_split(np.array([0, 1, 2, 0, 1, 2]), 1, seed=0, n_classes=4)


@pytest.mark.parametrize("mutate,match", [
    (lambda o: "{oops", "not valid JSON"),
    (lambda o: json.dumps({**o, "format": "x"}), "not an fmlab few-shot split"),
    (lambda o: json.dumps({**o, "train": o["train"] + [10_000]}), "index 10000 is out of range"),
    (lambda o: json.dumps({**o, "val": [-1]}), "index -1 is out of range"),
    (lambda o: json.dumps({**o, "val": o["train"][:1]}), "overlap"),
    (lambda o: json.dumps({k: v for k, v in o.items() if k != "seed"}), "lacks the key"),
    (lambda o: json.dumps({**o, "train": ["a"]}), "integer indices"),
])
def test_bad_split_files_name_the_file(tmp_path, labels, mutate, match):
    s = make_split(labels, 2, seed=1)
    obj = json.loads(s.to_json_bytes())
    path = tmp_path / "broken_split.json"
    path.write_text(mutate(obj))
    with pytest.raises(DataError, match=match) as e:
        load_split(path)
    assert "broken_split.json" in str(e.value)


def test_bad_shots():
    with pytest.raises(DataError, match="shots"):
        make_split(np.array([0, 1]), 0, seed=1)
    with pytest.raises(DataError, match="shots"):
        make_split(np.array([0, 1]), "few", seed=1)
