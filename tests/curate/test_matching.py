"""Word-boundary substring matching: MetaCLIP's rule, checked against a naive implementation."""

import numpy as np
import pytest

from fmlab.curate import EntryMatcher, entry_key, load_entries, spacing
from fmlab.errors import DataError


def naive_match(text: str, entries: list[str]) -> list[int]:
    """MetaCLIP v1, written out: pad, space the punctuation, test ``" e " in text`` per entry."""
    t = " " + text + " "
    for c in ",.;:?!`":
        t = t.replace(c, " " + c + " ")
    for c in "\t\n\r":
        t = t.replace(c, " ")
    out = []
    for i, e in enumerate(entries):
        core = e
        for c in ",.;:?!`":
            core = core.replace(c, " " + c + " ")
        if " " + core.strip() + " " in t:
            out.append(i)
    return out


ENTRIES = ["cat", "dog", "hot dog", "u.s.", "new york", "york", "a"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a cat sat", ["a", "cat"]),
        ("category", []),  # no match inside a word
        ("concatenate cats", []),  # nor at a word's start or end
        ("the cat.", ["cat"]),  # punctuation is separated
        ("cat,dog;", ["cat", "dog"]),
        ("hot dog!", ["dog", "hot dog"]),  # overlapping entries all match
        ("the u.s. flag", ["u.s."]),  # entries are normalised like texts
        ("new york city", ["new york", "york"]),
        ("newyork", []),
        ("Cat", []),  # case-sensitive, like MetaCLIP
        ("(cat)", []),  # parentheses are not in MetaCLIP's punctuation list
        ("cat\tdog\nhot\rdog", ["cat", "dog", "hot dog"]),
        ("", []),
    ],
)
def test_word_boundaries(text, expected):
    m = EntryMatcher(ENTRIES)
    assert [ENTRIES[i] for i in m.match(text)] == sorted(expected, key=ENTRIES.index)
    assert m.match(text) == naive_match(text, ENTRIES)


def test_each_entry_counted_once_per_caption():
    m = EntryMatcher(["cat", "dog"])
    counts, ids = m.match_batch(["cat cat cat", "dog cat dog", "bird"])
    assert counts.tolist() == [1, 2, 0]
    assert sorted(ids[1:3].tolist()) == [0, 1] and ids.dtype == np.int32


def test_ignore_case():
    m = EntryMatcher(["Cat", "new York"], ignore_case=True)
    assert m.match("A CAT in NEW YORK.") == [0, 1]


def test_parity_with_naive_on_random_texts():
    rng = np.random.default_rng(0)
    words = ["ab", "abc", "b", "ca", "cab", "a", "bc", "x.y", "z"]
    punct = ["", "", "", ",", ".", "!", "?", ";", ":", "`", "(", "-"]
    entries = sorted({" ".join(rng.choice(words, size=rng.integers(1, 3))) for _ in range(40)})
    m = EntryMatcher(entries)
    texts = []
    for _ in range(300):
        toks = [str(rng.choice(words)) + str(rng.choice(punct)) for _ in range(rng.integers(0, 8))]
        texts.append(" ".join(toks) if rng.random() < 0.8 else "".join(toks))
    counts, ids = m.match_batch(texts)
    off = np.concatenate([[0], np.cumsum(counts)])
    for i, t in enumerate(texts):
        assert sorted(ids[off[i] : off[i + 1]].tolist()) == naive_match(t, entries), t


def test_spacing_and_keys():
    assert spacing("a,b.") == " a , b .  "
    assert entry_key("  u.s. ") == " u . s . "


def test_load_entries(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("cat\n\n  dog  \ncat\nu.s.\ndog\t\n")
    entries, dup = load_entries(p)
    assert entries == ["cat", "dog", "u.s."] and dup == 2
    p.write_text("\n  \n")
    with pytest.raises(DataError, match="no entries"):
        load_entries(p)
    with pytest.raises(DataError, match="not found"):
        load_entries(tmp_path / "missing.txt")


def test_batch_spacing_equals_per_text_spacing():
    from fmlab.curate.text import spacing_many

    rng = np.random.default_rng(3)
    alphabet = list("ab ,.;:?!`\t\n\rxy")
    for n in (1, 63, 64, 200):
        texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 12))) for _ in range(n)]
        assert spacing_many(texts) == [spacing(t) for t in texts]
    texts = ["a\x00b", *(["x."] * 100)]  # a NUL in the batch: per-text fallback
    assert spacing_many(texts) == [spacing(t) for t in texts]
