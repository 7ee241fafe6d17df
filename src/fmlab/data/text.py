"""Named text sources: ``shakespeare``, ``sst2``, ``chemprot``, ``pico``, ``medabs``, and the
generic ``text:PATH`` / ``jsonl:PATH``.

``load_text(spec, split)`` is the one entry point; it returns a :class:`TextData` (texts, integer
labels and their names, and the ``split_hash``: sha256 of the exact record list, so a number is
always tied to the records it was measured on). Files are read from the data root
(``$FMLAB_DATA``) and never copied: the biomedical corpora are CC BY-SA or of unstated terms.

Splits: ``sst2``, ``chemprot`` and ``pico`` have official train/dev/test files. The one-file
corpora get a seeded split file (:mod:`fmlab.data.text_splits`): ``medabs`` 80/20 stratified by
label after de-duplication (below); ``shakespeare`` 90/10 by contiguous blocks of
:data:`BLOCK_PARAGRAPHS` speeches, so no test line sits between two training lines;
``text:PATH`` / ``jsonl:PATH`` 90/10 by document (stratified when labelled). ``all`` is every
record of a one-file corpus.

``medabs`` de-duplication: the file has 2,888 records but 2,770 distinct texts, and *every*
repeated text (113 abstracts, 231 records) carries conflicting labels. Keeping one copy would make
its label arbitrary, so all records of a conflicting text are dropped: 2,657 records remain, each
text once (counts in ``TextData.extra["dedup"]``). The same records serve as pre-training corpus
(its ``train`` split) and as the 5-class task (scored on ``test``), so pre-training on
``medabs:train`` never sees a test abstract.

``text:PATH``: a document per paragraph (blank-line separated) when the file has blank lines,
else a document per non-empty line. ``jsonl:PATH``: one object per line with ``text`` and an
optional ``label`` (int, or a name: names are sorted to give the label ids).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.data.named import data_root as _data_root
from fmlab.data.text_splits import TextSplitFile, draw_split, subset_indices, validation_split
from fmlab.errors import DataError

__all__ = ["BLOCK_PARAGRAPHS", "TEXT_SOURCES", "TextData", "TextSource", "load_text",
           "records_hash", "text_info", "text_split_file", "validation_split"]

BLOCK_PARAGRAPHS = 50  # shakespeare: speeches per contiguous block of the train/test split
SPLIT_SEED = 0


@dataclass(frozen=True)
class TextData:
    """One split of a text source.

    Attributes:
        texts: the documents / sentences.
        labels: integer label per text (None for unlabelled corpora).
        label_names: name of each label id (None for unlabelled corpora).
        source: the source spec (``"sst2"``, ``"jsonl:/data/x.jsonl"``).
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"all"``.
        split_hash: sha256 of the exact record list (:func:`records_hash`).
        extra: source facts: ``file``/``file_sha256``, ``split_file_sha256`` (one-file
            corpora), ``entities`` (chemprot character spans), ``abstract_id``/``sent_idx``
            (pico), ``dedup`` counts (medabs).
    """

    texts: list[str]
    labels: list[int] | None
    label_names: list[str] | None
    source: str
    split: str
    split_hash: str
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)


@dataclass(frozen=True)
class TextSource:
    """A named text source: where its files are under the data root and how to read them."""

    name: str
    kind: str  # "jsonl" (one file per split), "jsonl1" (one labelled file), "raw"
    files: tuple[tuple[str, str], ...]  # (split, path relative to the data root)
    description: str
    provenance: str
    label_names: tuple[str, ...] | None = None
    test_fraction: float = 0.2

    def locate(self, root: Path, split: str) -> Path:
        files = dict(self.files)
        if split not in files:
            raise DataError(f"text source {self.name!r} has no split {split!r}; it has "
                            f"{', '.join(self.splits)}")
        path = root / files[split]
        if not path.is_file():
            raise DataError(f"text source {self.name!r}: {path} not found under data root {root}; "
                            "set --data-root or FMLAB_DATA")
        return path

    @property
    def splits(self) -> list[str]:
        return [s for s, _ in self.files] if self.kind == "jsonl" else ["train", "test", "all"]


_BIO = "see biomed_text/PROVENANCE.md in the data root; do not ship"
TEXT_SOURCES: dict[str, TextSource] = {s.name: s for s in [
    TextSource("shakespeare", "raw", (("all", "tiny_shakespeare/input.txt"),),
               "Tiny Shakespeare, 1.1 M chars; seeded 90/10 split by contiguous blocks of speeches",
               "karpathy/char-rnn (text public domain); tiny_shakespeare/PROVENANCE.md",
               test_fraction=0.1),
    TextSource("sst2", "jsonl", (("train", "sst2/train.jsonl"), ("dev", "sst2/dev.jsonl"),
                                 ("test", "sst2/test.jsonl")),
               "SST-2 sentiment, 67,349 train phrases / 872 dev / 1,821 test, 2 classes",
               "Socher et al. 2013, no licence stated; sst2/PROVENANCE.md; do not ship",
               ("negative", "positive")),
    TextSource("chemprot", "jsonl", tuple((s, f"biomed_text/chemprot_{s}.jsonl")
                                          for s in ("train", "dev", "test")),
               "ChemProt relations, 4,169 / 2,427 / 3,469, 13 classes, entities << >> [[ ]]", _BIO,
               ("ACTIVATOR", "AGONIST", "AGONIST-ACTIVATOR", "AGONIST-INHIBITOR", "ANTAGONIST",
                "DOWNREGULATOR", "INDIRECT-DOWNREGULATOR", "INDIRECT-UPREGULATOR", "INHIBITOR",
                "PRODUCT-OF", "SUBSTRATE", "SUBSTRATE_PRODUCT-OF", "UPREGULATOR")),
    TextSource("pico", "jsonl", tuple((s, f"biomed_text/nicta_piboso_{s}.jsonl")
                                      for s in ("train", "dev", "test")),
               "NICTA-PIBOSO sentences, 6,979 / 801 / 1,991, 6 classes", _BIO,
               ("background", "intervention", "other", "outcome", "population", "study design")),
    TextSource("medabs", "jsonl1", (("all", "biomed_text/medical_abstracts_test.jsonl"),),
               "Medical Abstracts, 2,657 de-duplicated abstracts, 5 classes; seeded 80/20 split "
               "file", "Schopf et al. 2022, CC BY-SA 3.0; " + _BIO,
               ("neoplasms", "digestive system diseases", "nervous system diseases",
                "cardiovascular diseases", "general pathological conditions")),
]}


def records_hash(texts: list[str], labels: list[int] | None) -> str:
    """sha256 of a record list: one JSON ``[text, label]`` line per record, in order.

    Examples:
        >>> records_hash(["a"], [0]) == records_hash(["a"], [0]) != records_hash(["a"], [1])
        True
    """
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(json.dumps([t, None if labels is None else int(labels[i])],
                            ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def _read_jsonl(path: Path, label_names: tuple[str, ...] | None
                ) -> tuple[list[str], list[int] | None, list[str] | None, list[dict]]:
    """(texts, label ids, label names, other fields per record) of a JSONL file, checked."""
    texts, raw, rest = [], [], []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{path}:{ln}: each line must be an object with a string 'text'")
            texts.append(obj["text"])
            raw.append(obj.get("label"))
            rest.append({k: v for k, v in obj.items() if k not in ("text", "label")})
    if not texts:
        raise DataError(f"{path}: empty corpus (no records)")
    has = [v is not None for v in raw]
    if any(has) and not all(has):
        raise DataError(f"{path}:{has.index(not has[0]) + 1}: some records have a 'label' and some "
                        "do not")
    if not any(has):
        return texts, None, None, rest
    names = list(label_names) if label_names is not None else _label_names_of(raw, path)
    return texts, [_label_id(v, names, path, ln) for ln, v in enumerate(raw, 1)], names, rest


def _label_names_of(raw: list[Any], path: Path) -> list[str]:
    if all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        if min(raw) < 0:
            raise DataError(f"{path}: label {min(raw)} is negative; integer labels are 0..K-1")
        return [str(i) for i in range(max(raw) + 1)]
    if all(isinstance(v, str) for v in raw):
        return sorted(set(raw))
    raise DataError(f"{path}: 'label' must be all integers or all strings")


def _label_id(v: Any, names: list[str], path: Path, ln: int) -> int:
    if isinstance(v, str) and v in names:
        return names.index(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names):
        return v
    raise DataError(f"{path}:{ln}: label {v!r} is outside the label set "
                    f"({', '.join(names)}, or ids 0..{len(names) - 1})")


def _read_raw(path: Path) -> list[str]:
    """Documents of a plain text file: paragraphs when it has blank lines, else lines."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if any(not ln.strip() for ln in lines) and sum(1 for ln in lines if ln.strip()) > 1:
        docs = [p.strip("\n") for p in text.replace("\r\n", "\n").split("\n\n")]
    else:
        docs = lines
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise DataError(f"{path}: empty corpus (no non-blank text)")
    return docs


def _dedup_conflicts(texts: list[str], labels: list[int]) -> tuple[np.ndarray, dict]:
    """Keep each text once; drop every record of a text seen with several labels (module doc)."""
    seen: dict[str, set[int]] = {}
    for t, y in zip(texts, labels, strict=True):
        seen.setdefault(t, set()).add(y)
    count = Counter(texts)
    conflicting = {t for t, ys in seen.items() if len(ys) > 1}
    keep, first = [], set()
    for i, t in enumerate(texts):
        if t in conflicting or t in first:
            continue
        first.add(t)
        keep.append(i)
    stats = {"records": len(texts), "distinct_texts": len(seen),
             "conflicting_texts": len(conflicting),
             "conflicting_records": sum(count[t] for t in conflicting),
             "same_label_duplicates": sum(count[t] - 1 for t in seen if t not in conflicting),
             "kept": len(keep)}
    return np.asarray(keep, np.int64), stats


def _one_file_units(spec: str, src: TextSource | None, path: Path
                    ) -> tuple[list[str], list[int] | None, list[str] | None, np.ndarray, dict]:
    """(texts, labels, names, unit id per text, extra) of a one-file corpus before splitting."""
    extra: dict[str, Any] = {}
    if src is not None and src.kind == "raw" or spec.startswith("text:"):
        texts = _read_raw(path)
        labels = names = None
        per = BLOCK_PARAGRAPHS if src is not None else 1
        unit = np.arange(len(texts)) // per
        if per > 1:
            extra["block"] = unit.tolist()
        return texts, labels, names, unit, extra
    texts, labels, names, _ = _read_jsonl(path, src.label_names if src else None)
    if src is not None and labels is not None:  # medabs
        keep, extra["dedup"] = _dedup_conflicts(texts, labels)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels, names, np.arange(len(texts)), extra


def text_split_file(spec: str, data_root: str | os.PathLike | None = None,
                    seed: int = SPLIT_SEED) -> TextSplitFile:
    """The seeded train/test split file of a one-file corpus (``medabs``, ``shakespeare``,
    ``text:PATH``, ``jsonl:PATH``); units are blocks for shakespeare, records otherwise."""
    src, path = _resolve(spec, data_root, "all")
    if src is not None and src.kind == "jsonl":
        raise DataError(f"{spec} has official split files; no seeded split is drawn")
    texts, labels, _, unit, _ = _one_file_units(spec, src, path)
    return _draw(spec, src, path, labels, unit, seed)


def _draw(spec: str, src: TextSource | None, path: Path, labels: list[int] | None,
          unit: np.ndarray, seed: int) -> TextSplitFile:
    from fmlab.data.hashing import file_hash

    n_units = int(unit.max()) + 1
    frac = src.test_fraction if src is not None else 0.1
    strat = labels if labels is not None and n_units == len(unit) else None
    return draw_split(spec, file_hash(path), n_units, seed, frac, strat)


def _resolve(spec: str, data_root: str | os.PathLike | None, split: str
             ) -> tuple[TextSource | None, Path]:
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("text", "jsonl"):
        p = Path(rest).expanduser()
        if not p.is_file():
            raise DataError(f"{spec}: file {p} not found")
        return None, p
    if spec not in TEXT_SOURCES:
        raise DataError(f"unknown text source {spec!r}; named text sources: "
                        f"{', '.join(TEXT_SOURCES)}; or text:PATH, jsonl:PATH")
    src = TEXT_SOURCES[spec]
    root = _data_root(data_root)
    return src, src.locate(root, split if src.kind == "jsonl" else "all")


def load_text(spec: str, split: str = "train", *, data_root: str | os.PathLike | None = None,
              limit: int | None = None, seed: int = SPLIT_SEED) -> TextData:
    """Load one split of a text source.

    Args:
        spec: a named source (:data:`TEXT_SOURCES`), ``text:PATH`` or ``jsonl:PATH``.
        split: ``train``, ``test``, ``dev`` (official-split sources) or ``all`` (one-file ones).
        data_root: folder of the named datasets (default ``$FMLAB_DATA``).
        limit: keep this many records, a seeded subset in file order (None: all).
        seed: seed of the one-file split and of the ``limit`` subset (a data property: keep 0
            unless studying split variance).

    Returns:
        The split's :class:`TextData`.

    Raises:
        DataError: unknown source or split, missing file, empty corpus, a label outside the
            label set (the message names the file, line and value).

    Examples:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "d.jsonl")
        >>> _ = open(p, "w").write("".join(f'{{"text": "doc {i}", "label": "{"ab"[i % 2]}"}}\\n'
        ...                                for i in range(20)))
        >>> d = load_text(f"jsonl:{p}", "test")
        >>> len(d), d.label_names, len(load_text(f"jsonl:{p}", "train"))
        (2, ['a', 'b'], 18)
    """
    from fmlab.data.hashing import file_hash

    src, path = _resolve(spec, data_root, split)
    extra: dict[str, Any] = {"file": str(path), "file_sha256": file_hash(path)}
    if src is not None and src.kind == "jsonl":
        texts, labels, names, rest = _read_jsonl(path, src.label_names)
        if spec == "chemprot":
            extra["entities"] = [_entity_spans(t) for t in texts]
        for key in ("abstract_id", "sent_idx"):
            if rest and key in rest[0]:
                extra[key] = [r.get(key) for r in rest]
    else:
        texts, labels, names, unit, more = _one_file_units(spec, src, path)
        extra.update(more)
        sf = _draw(spec, src, path, labels, unit, seed)
        extra["split_file_sha256"] = sf.sha256
        keep = np.flatnonzero(np.isin(unit, sf.indices(split)))
        texts = [texts[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
        if "block" in extra:
            extra["block"] = [extra["block"][i] for i in keep]
    sub = subset_indices(len(texts), limit, seed)
    if len(sub) < len(texts):
        texts = [texts[i] for i in sub]
        labels = None if labels is None else [labels[i] for i in sub]
        for key in ("entities", "abstract_id", "sent_idx", "block"):
            if key in extra:
                extra[key] = [extra[key][i] for i in sub]
        extra["limit"] = int(limit)  # type: ignore[arg-type]
    if not texts:
        raise DataError(f"{spec}:{split}: empty corpus (no records)")
    return TextData(texts, labels, names, spec, split, records_hash(texts, labels), extra)


def _entity_spans(text: str) -> list[list[Any]]:
    """Character spans ``[start, end, kind]`` of the ``<< >>`` and ``[[ ]]`` entities, markers
    included (ERNIE-style entity masking masks them whole)."""
    spans = []
    for kind, (o, c) in (("<<", ("<<", ">>")), ("[[", ("[[", "]]"))):
        start = text.find(o)
        while start >= 0:
            end = text.find(c, start + 2)
            if end < 0:
                break
            spans.append([start, end + 2, kind])
            start = text.find(o, end + 2)
    return sorted(spans)


def text_info(spec: str, data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Counts, label counts and hashes of every split of a text source (``fmlab data info``)."""
    src, _ = _resolve(spec, data_root, "train" if spec in TEXT_SOURCES else "all")
    splits = src.splits if src is not None else ["train", "test", "all"]
    out: dict[str, Any] = {"source": spec, "kind": "text", "splits": {}}
    if src is not None:
        out["provenance"] = src.provenance
        out["classes"] = list(src.label_names) if src.label_names else None
    for s in splits:
        d = load_text(spec, s, data_root=data_root)
        info = {"n": len(d), "split_hash": d.split_hash,
                "words": sum(len(t.split()) for t in d.texts)}
        if d.labels is not None:
            info["per_class"] = np.bincount(d.labels, minlength=d.num_classes).tolist()
            out["classes"] = d.label_names
        if "split_file_sha256" in d.extra:
            out["split_file_sha256"] = d.extra["split_file_sha256"]
        if "dedup" in d.extra:
            out["dedup"] = d.extra["dedup"]
        out["splits"][s] = info
    return out
