"""PASS-style filter: keyword matching, per-image reasons, class filter, manifest, CLI errors."""

import json

import numpy as np
import pytest
from PIL import Image

from fmlab.cli.main import main
from fmlab.curate.people import (
    PEOPLE_KEYWORDS,
    KeywordMatcher,
    caption_reasons,
    classes_to_drop,
    get_category,
    score_reasons,
    word_forms,
)
from fmlab.curate.people_filter import FilterConfig, filter_source, read_manifest
from fmlab.data import open_source
from fmlab.errors import ConfigError, DataError
from tests.conftest import make_npz

PEOPLE = KeywordMatcher(PEOPLE_KEYWORDS)


@pytest.mark.parametrize("text,expected", [
    ("A man riding a horse.", ["man"]),
    ("Two MEN and three Women", ["man", "woman"]),
    ("children playing; a child's toy", ["child"]),
    ("a group of people", ["person"]),
    ("the skiers on a slope", ["skier"]),
    ("the man's hat", ["man"]),
    ("a woman.", ["woman"]),
    ("(girl)", ["girl"]),
])
def test_keywords_match_plurals_case_possessive(text, expected):
    assert PEOPLE.find(text) == expected


@pytest.mark.parametrize("text", [
    "a manual on the table", "Germany in winter", "a mannequin shop", "boyfriend", "the kidney", "a ski slope", "surfboards on sand",
    "mankind", "herbs", "shelf", "theme",
])
def test_keywords_respect_word_boundaries(text):
    assert PEOPLE.find(text) == []


def test_word_forms_irregular_and_regular():
    assert "women" in word_forms("woman") and "people" in word_forms("person")
    assert word_forms("bus") == ["bus", "buses"]
    assert word_forms("Skier") == ["skier", "skiers"]


def _tokens_match(text: str, words: set[str]) -> bool:
    """Independent reference: lower-case, split on non-letters, compare with every form."""
    import re

    return any(t in words for t in re.split(r"[^a-z]+", text.lower().replace("'s", "")))


def test_caption_reasons_match_independent_tokenizer():
    """Random captions from a vocabulary: an image has a reason iff one of its captions holds a
    keyword form as a whole token; the reason names the caption's rank and the keyword."""
    rng = np.random.default_rng(0)
    vocab = ["a", "dog", "manual", "men", "on", "Woman", "kid.", "grass", "kidney", "skiers,",
             "boyfriend", "car", "people"]
    forms = {f for k in PEOPLE_KEYWORDS for f in word_forms(k)}
    n_img, caps, idx = 60, [], []
    for i in range(n_img):
        for _ in range(rng.integers(1, 5)):
            caps.append(" ".join(rng.choice(vocab, size=rng.integers(1, 6))))
            idx.append(i)
    reasons = caption_reasons(caps, np.array(idx), n_img, PEOPLE)
    for i in range(n_img):
        mine = [c for c, j in zip(caps, idx) if j == i]
        assert bool(reasons[i]) == any(_tokens_match(c, forms) for c in mine)
        assert len(reasons[i]) == sum(_tokens_match(c, forms) for c in mine)
    assert 0 < sum(bool(r) for r in reasons) < n_img  # both kinds occur


def test_class_filter_category_keywords_and_extra():
    names = ["baby", "cat", "Woman", "fishermen_boat", "dog", "mango"]
    got = classes_to_drop(names, get_category("people"), ["dog"])
    assert set(got) == {0, 2, 3, 4}
    assert got[0] == "class 'baby'" and got[4] == "class 'dog' (--drop-classes)"
    assert classes_to_drop(names, None, ["cat"]) == {1: "class 'cat' (--drop-classes)"}
    with pytest.raises(ConfigError, match="'zebra'"):
        classes_to_drop(names, None, ["zebra"])


def test_score_hook_threshold_inclusive():
    r = score_reasons(np.array([0.49, 0.5, 0.93]), 0.5)
    assert r[0] == [] and r[1] == ["classifier score 0.500 >= 0.5"] and len(r[2]) == 1


def _check_manifest(out, summary):
    recs = read_manifest(out / "manifest.jsonl")
    for r in recs:
        assert r["kept"] == (not r["reasons"])  # never dropped without a reason, kept with none
        assert len(r["sha256"]) == 16
    for split, c in summary["splits"].items():
        mine = [r for r in recs if r["split"] == split]
        assert c["images"] == len(mine) and c["kept"] == sum(r["kept"] for r in mine)
        assert [r["index"] for r in mine] == list(range(len(mine)))
    assert sum(summary["by_kind"].values()) == sum(len(r["reasons"]) for r in recs)
    return recs


def test_filter_labelled_npz_manifest_and_source(tmp_path):
    src = make_npz(tmp_path / "d.npz", n_train=40, n_test=20, n_classes=4)
    z = dict(np.load(src))
    z["class_names"] = np.asarray(["person", "cat", "boy", "truck"])
    np.savez(src, **z)
    out = tmp_path / "f"
    s = filter_source(FilterConfig(f"npz:{src}", out, drop=["people"], drop_classes=["truck"]))
    recs = _check_manifest(out, s)
    assert s["splits"]["train"] == {"images": 40, "kept": 10, "dropped": 30}
    assert s["by_key"] == {"class 'person'": 15, "class 'boy'": 15, "class 'truck'": 15}
    filt = open_source(f"npz:{out / 'filtered.npz'}")
    tr = filt.split("train")
    assert len(tr) == 10 and set(tr.labels.tolist()) == {1}
    assert filt.class_names == ["person", "cat", "boy", "truck"]
    kept = [r["index"] for r in recs if r["split"] == "train" and r["kept"]]
    np.testing.assert_array_equal(tr.get_batch(np.arange(10)), z["x_train"][kept])


def _jsonl_source(tmp_path):
    caps = {"a": ["A dog on grass", "a brown dog"], "b": ["A man with a kite", "a kite"],
            "c": ["a red car", "Two WOMEN near a car"], "d": ["manual typewriter"]}
    lines = []
    for k, cs in caps.items():
        Image.new("RGB", (8, 8), (ord(k), 0, 0)).save(tmp_path / f"{k}.png")
        lines += [json.dumps({"image": f"{k}.png", "caption": c}) for c in cs]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return f"jsonl:{tmp_path / 'pairs.jsonl'}"


def test_filter_image_text_any_caption(tmp_path):
    out = tmp_path / "f"
    s = filter_source(FilterConfig(_jsonl_source(tmp_path), out))
    recs = _check_manifest(out, s)
    assert [r["kept"] for r in recs] == [True, False, False, True]
    assert recs[1]["reasons"] == ["caption 0 matches 'man'"]
    assert recs[2]["reasons"] == ["caption 1 matches 'woman'"]
    filt = open_source(f"npz:{out / 'filtered.npz'}")
    assert len(filt.split("train")) == 2 and filt.class_names == ["unlabelled"]


def test_cli_filter_and_errors(tmp_path, capsys):
    spec = _jsonl_source(tmp_path)
    assert main(["curate", "filter", "--data", spec, "--out", str(tmp_path / "o")]) == 0
    assert "2 kept, 2 dropped" in capsys.readouterr().out
    assert main(["curate", "filter", "--drop", "people,animals", "--data", spec,
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "'animals'" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o2").exists()  # refused before anything was written
    assert main(["curate", "filter", "--drop", "none", "--drop-classes", "cat", "--data", spec,
                 "--out", str(tmp_path / "o3")]) == 2
    assert "no labels" in capsys.readouterr().err


def test_curate_balancing_still_requires_its_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        main(["curate", "--captions", "x.jsonl"])
    assert e.value.code == 2
    assert "--entries" in capsys.readouterr().err


def test_coco_mini_counts(data_root, tmp_path):
    out = tmp_path / "coco"
    s = filter_source(FilterConfig("coco_mini", out, data_root=str(data_root)))
    _check_manifest(out, s)
    assert set(s["splits"]) == {"train", "val"}  # "test" is an alias of "val": filtered once
    assert sum(c["images"] for c in s["splits"].values()) == 159
    dropped = sum(c["dropped"] for c in s["splits"].values())
    assert 50 < dropped < 110  # COCO: roughly half the images show people


def test_classifier_scores_hook_adds_reasons(tmp_path):
    """Scores given to the filter (the hook a person classifier would fill) drop the images at or
    over the threshold, on top of the caption reasons; wrong-length scores are refused."""
    spec = _jsonl_source(tmp_path)
    out = tmp_path / "f"
    s = filter_source(FilterConfig(spec, out, scores={"train": np.array([0.7, 0.1, 0.9, 0.2])},
                                   threshold=0.6))
    recs = _check_manifest(out, s)
    assert [r["kept"] for r in recs] == [False, False, False, True]
    assert recs[0]["reasons"] == ["classifier score 0.700 >= 0.6"]
    assert recs[2]["reasons"] == ["caption 1 matches 'woman'", "classifier score 0.900 >= 0.6"]
    assert s["by_kind"] == {"caption": 2, "classifier": 2}
    with pytest.raises(DataError, match="3 values for 4 images"):
        filter_source(FilterConfig(spec, tmp_path / "g", scores={"train": np.zeros(3)}))


def test_cli_scores_file(tmp_path, capsys):
    """--scores FILE.npz (one array per split) and --threshold reach the filter; a bad file exits 2."""
    spec = _jsonl_source(tmp_path)
    np.savez(tmp_path / "s.npz", train=np.array([0.7, 0.1, 0.9, 0.2]))
    out = tmp_path / "o"
    assert main(["curate", "filter", "--data", spec, "--scores", str(tmp_path / "s.npz"),
                 "--threshold", "0.6", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["kept"] for r in recs] == [False, False, False, True]
    (tmp_path / "bad.npz").write_text("not a zip")
    capsys.readouterr()
    assert main(["curate", "filter", "--data", spec, "--scores", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "Traceback" not in err
