"""Text sources: stable split hashes, medabs de-duplication, disjoint splits, named errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmlab.data.text import TEXT_SOURCES, load_text, records_hash, text_split_file
from fmlab.data.text_splits import draw_split, validation_split
from fmlab.errors import DataError

# the records each split held when the loaders were written: a change in parsing, de-duplication
# or the seeded split changes these and must be deliberate
EXPECTED = {
    ("sst2", "test"): (1821, "853fcf658e17667e"),
    ("chemprot", "train"): (4169, "c626e8c38d6b15f3"),
    ("pico", "dev"): (801, "0f287444ae8084b4"),
    ("medabs", "train"): (2126, "3110cee73e6a59ab"),
    ("medabs", "test"): (531, "4250dac82bafa025"),
    ("shakespeare", "test"): (700, "67b5040e87e518dd"),
}


@pytest.mark.parametrize("spec,split", sorted(EXPECTED))
def test_split_hashes_are_stable(data_root, spec, split):
    d = load_text(spec, split, data_root=data_root)
    n, prefix = EXPECTED[(spec, split)]
    assert (len(d), d.split_hash[:16]) == (n, prefix)
    assert d.split_hash == records_hash(d.texts, d.labels)


def test_medabs_dedup_counted_and_no_text_twice(data_root):
    train = load_text("medabs", "train", data_root=data_root)
    test = load_text("medabs", "test", data_root=data_root)
    assert train.extra["dedup"] == {"records": 2888, "distinct_texts": 2770,
                                    "conflicting_texts": 113, "conflicting_records": 231,
                                    "same_label_duplicates": 0, "kept": 2657}
    everything = train.texts + test.texts
    assert len(everything) == len(set(everything)) == 2657
    assert not set(train.texts) & set(test.texts)
    # stratified 80/20: every class is in both splits in about that ratio
    tr, te = np.bincount(train.labels), np.bincount(test.labels)
    assert np.all(np.abs(te / (tr + te) - 0.2) < 0.01)


def test_shakespeare_splits_are_contiguous_blocks_and_disjoint(data_root):
    train = load_text("shakespeare", "train", data_root=data_root)
    test = load_text("shakespeare", "test", data_root=data_root)
    everything = load_text("shakespeare", "all", data_root=data_root)
    assert len(train) + len(test) == len(everything)
    assert not set(train.extra["block"]) & set(test.extra["block"])
    # a test block is a run of consecutive speeches of the file
    ids = [everything.texts.index(t) for t in test.texts[:50]]
    assert ids == list(range(ids[0], ids[0] + 50))


def test_split_file_bytes_are_deterministic(tmp_path, data_root):
    a = text_split_file("medabs", data_root)
    b = text_split_file("medabs", data_root)
    assert a.to_json_bytes() == b.to_json_bytes()
    assert a.save(tmp_path / "s.json") == a.sha256
    assert text_split_file("medabs", data_root, seed=1).sha256 != a.sha256
    obj = json.loads((tmp_path / "s.json").read_text())
    assert obj["format"] == "fmlab.text_split" and not set(obj["train"]) & set(obj["test"])


def test_chemprot_entities_and_labels(data_root):
    d = load_text("chemprot", "test", data_root=data_root)
    assert d.num_classes == 13 and "AGONIST-INHIBITOR" in d.label_names
    spans = d.extra["entities"][0]
    assert {s[2] for s in spans} == {"<<", "[["}
    for start, end, kind in spans:
        piece = d.texts[0][start:end]
        assert piece.startswith(kind) and piece.endswith(">>" if kind == "<<" else "]]")


def test_limit_is_a_seeded_subset_with_its_own_hash(data_root):
    full = load_text("sst2", "dev", data_root=data_root)
    a = load_text("sst2", "dev", data_root=data_root, limit=100)
    assert len(a) == 100 and set(a.texts) <= set(full.texts)
    assert a.split_hash == load_text("sst2", "dev", data_root=data_root, limit=100).split_hash
    assert a.split_hash != full.split_hash


def test_generic_jsonl_and_text(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"doc {i}", "label": int(i % 3)}) + "\n"
                         for i in range(30)))
    train, test = load_text(f"jsonl:{p}", "train"), load_text(f"jsonl:{p}", "test")
    assert train.label_names == ["0", "1", "2"] and len(train) + len(test) == 30
    assert not set(train.texts) & set(test.texts)
    t = tmp_path / "c.txt"
    t.write_text("one line\nanother line\n\nnew paragraph\n")
    assert load_text(f"text:{t}", "all").texts == ["one line\nanother line", "new paragraph"]
    t.write_text("a\nb\nc\n")
    assert load_text(f"text:{t}", "all").texts == ["a", "b", "c"]


@pytest.mark.parametrize("content,match", [
    ("", "empty corpus"),
    ('{"text": "a", "label": 0}\n{"text": "b"}\n', "some records have a 'label'"),
    ('{"txt": "a"}\n', "string 'text'"),
    ("not json\n", "d.jsonl:1: not valid JSON"),
])
def test_bad_jsonl_is_named(tmp_path, content, match):
    p = tmp_path / "d.jsonl"
    p.write_text(content)
    with pytest.raises(DataError, match=match):
        load_text(f"jsonl:{p}", "all")


def test_label_outside_label_set_names_file_line_value(tmp_path, monkeypatch):
    import dataclasses

    (tmp_path / "sst2").mkdir()
    for s in ("train", "dev", "test"):
        (tmp_path / "sst2" / f"{s}.jsonl").write_text('{"text": "a", "label": 0}\n'
                                                      '{"text": "b", "label": 7}\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: label 7 is outside the label set"):
        load_text("sst2", "train", data_root=tmp_path)
    (tmp_path / "cp.jsonl").write_text('{"text": "a", "label": "INHIBITOR"}\n'
                                       '{"text": "b", "label": "NO-RELATION"}\n')
    named = dataclasses.replace(TEXT_SOURCES["chemprot"], files=(("train", "cp.jsonl"),))
    monkeypatch.setitem(TEXT_SOURCES, "chemprot", named)
    with pytest.raises(DataError, match="cp.jsonl:2: label 'NO-RELATION' is outside.*INHIBITOR"):
        load_text("chemprot", "train", data_root=tmp_path)


def test_unknown_source_split_and_empty_text(tmp_path):
    with pytest.raises(DataError, match="unknown text source 'nope'.*sst2"):
        load_text("nope")
    with pytest.raises(DataError, match="has no split 'valid'"):
        load_text("sst2", "valid", data_root=tmp_path)
    t = tmp_path / "e.txt"
    t.write_text("\n \n")
    with pytest.raises(DataError, match="empty corpus"):
        load_text(f"text:{t}", "all")


def test_validation_split_draws_from_train_only_and_keeps_rare_classes():
    labels = [0] * 50 + [1] * 9 + [2]
    tr, va = validation_split(len(labels), 0.1, seed=3, labels=labels)
    assert not set(tr) & set(va) and len(tr) + len(va) == 60
    lab = np.asarray(labels)
    assert sorted(np.bincount(lab[va], minlength=3)) == [0, 1, 5]
    assert 2 in lab[tr]  # a class with one record stays in train
    again = validation_split(len(labels), 0.1, seed=3, labels=labels)
    assert np.array_equal(va, again[1])
    assert not np.array_equal(va, validation_split(len(labels), 0.1, seed=4, labels=labels)[1])


def test_draw_split_is_stratified_and_covers_everything():
    labels = np.repeat(np.arange(4), 25)
    s = draw_split("x", "0" * 64, 100, seed=0, test_fraction=0.2, labels=labels)
    assert np.bincount(labels[s.test]).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([s.train, s.test]).tolist()) == list(range(100))


def test_data_list_and_info_show_text_sources(data_root, capsys):
    from fmlab.cli.main import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in TEXT_SOURCES:
        assert f"  {name} " in out
    assert main(["data", "info", "medabs"]) == 0
    assert "conflicting_texts': 113" in capsys.readouterr().out
