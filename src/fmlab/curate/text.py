"""MetaCLIP text normalisation and the metadata (entries) file.

MetaCLIP v1 matches an entry ``e`` in a text when ``" e "`` occurs in the text after the text was
padded with spaces and the punctuation ``, . ; : ? ! ``` was surrounded by spaces. That makes the
matching word-boundary aware without a tokenizer: "cat" matches "a cat." but not "category".
We apply the *same* normalisation to the entries, so an entry that contains punctuation
("u.s.") still matches the normalised text.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmlab.errors import DataError

PUNCTUATION = ",.;:?!`"
# one translate table: punctuation gets spaces around it; control whitespace becomes a space, and so
# does NUL, which the matcher may use as a separator.
_TABLE = str.maketrans(
    {**{c: f" {c} " for c in PUNCTUATION}, "\t": " ", "\n": " ", "\r": " ", "\x00": " "}
)


def spacing(text: str) -> str:
    """MetaCLIP's ``spacing``: pad with spaces, space out punctuation, tabs/newlines -> space."""
    return f" {text.translate(_TABLE)} "


def spacing_many(texts: list[str]) -> list[str]:
    """``[spacing(t) for t in texts]``, done on one joined string: ~6x less CPU for big batches.

    NUL joins the texts; a batch that already holds a NUL falls back to the per-text path.
    """
    if len(texts) < 64:
        return [spacing(t) for t in texts]
    big = "\x00".join(texts)
    if big.count("\x00") != len(texts) - 1:
        return [spacing(t) for t in texts]
    for c in PUNCTUATION:
        if c in big:
            big = big.replace(c, f" {c} ")
    for c in "\t\n\r":
        if c in big:
            big = big.replace(c, " ")
    return f" {big} ".replace("\x00", "  \x00  ").split(" \x00 ")


def entry_key(entry: str, ignore_case: bool = False) -> str:
    """The string searched for: the normalised entry, stripped, between single spaces."""
    core = entry.translate(_TABLE).strip()
    if ignore_case:
        core = core.lower()
    return f" {core} "


def load_entries(path: str | os.PathLike, ignore_case: bool = False) -> tuple[list[str], int]:
    """Read one entry per line (UTF-8). Blank lines are skipped.

    Entries whose normalised form repeats an earlier one are dropped (they would match the same
    texts and be counted twice). Returns ``(entries, n_duplicates)``; raises :class:`DataError` when
    the file is missing, unreadable or holds no entry.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"entries file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"entries file {path} is not UTF-8 text: {e}") from None
    entries: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for line in lines:
        entry = line.strip()
        if not entry:
            continue
        key = entry_key(entry, ignore_case)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        entries.append(entry)
    if not entries:
        raise DataError(f"entries file {path} holds no entries (one entry per line expected)")
    return entries, duplicates
