"""Multi-pattern substring matching of captions against metadata entries (Aho-Corasick).

One automaton holds every entry key ``" e "``; a caption is scanned once, whatever the number of
entries. The results of many captions are kept compact: per caption the number of distinct
entries it matched, and the matched entry ids concatenated (int32) -- a CSR layout.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

import numpy as np

from fmlab.curate.text import entry_key, spacing, spacing_many
from fmlab.errors import ConfigError


def _automaton_module():
    try:
        import ahocorasick
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "fmlab curate needs the 'pyahocorasick' package: pip install 'fmlab[curate]'"
        ) from None
    return ahocorasick


class EntryMatcher:
    """Find which entries occur, word-boundary aware, in each text.

    ``ignore_case=False`` follows MetaCLIP (case-sensitive); with ``True`` texts and entries are
    lower-cased before matching.
    """

    def __init__(self, entries: Sequence[str], ignore_case: bool = False) -> None:
        if not entries:
            raise ConfigError("EntryMatcher needs at least one entry")
        self.entries = list(entries)
        self.ignore_case = ignore_case
        aho = _automaton_module()
        automaton = aho.Automaton()
        for i, entry in enumerate(self.entries):
            key = entry_key(entry, ignore_case)
            if key in automaton:
                raise ConfigError(f"duplicate entry after normalisation: {entry!r}")
            automaton.add_word(key, i)
        automaton.make_automaton()
        self._automaton = automaton

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, text: str) -> list[int]:
        """Sorted ids of the distinct entries occurring in ``text``."""
        text = spacing(text)
        if self.ignore_case:
            text = text.lower()
        return sorted({v for _, v in self._automaton.iter(text)})

    def match_many(self, texts: Iterable[str], counts: array, ids: array) -> None:
        """Append each text's number of distinct matches to ``counts`` and the ids to ``ids``.

        The hot loop of curation: kept free of per-match Python work beyond one set comprehension.
        """
        scan = self._automaton.iter
        add_ids, add_count = ids.extend, counts.append
        texts = spacing_many(list(texts))
        for text in texts:
            if self.ignore_case:
                text = text.lower()
            found = {v for _, v in scan(text)}
            add_ids(found)
            add_count(len(found))

    def match_batch(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, ids)``: int32 matches per text and the concatenated matched ids."""
        counts, ids = array("i"), array("i")
        self.match_many(texts, counts, ids)
        return as_int32(counts), as_int32(ids)


def as_int32(a: array) -> np.ndarray:
    """An ``array('i')`` as an int32 numpy view, without a copy (the array can no longer grow)."""
    if not len(a):
        return np.zeros(0, np.int32)
    return np.frombuffer(a, dtype=np.intc).view(np.int32)
