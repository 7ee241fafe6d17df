"""Data sources: named datasets, ``npz:``, ``folder:``, ``csv:``/``jsonl:`` image-text files,
``wds:`` WebDataset tar shards.

``open_source(spec, data_root=None)`` is the one entry point; it returns an :class:`ImageSource`
(labelled images) or an :class:`ImageTextSource` (images with captions).
"""

from __future__ import annotations

import os
from pathlib import Path

from fmlab.data.named import NAMED, data_root
from fmlab.data.sources import (
    ImageSource,
    ImageSplit,
    ImageTextSource,
    ImageTextSplit,
)
from fmlab.errors import DataError

__all__ = ["NAMED", "ImageSource", "ImageSplit", "ImageTextSource", "ImageTextSplit", "data_root",
           "open_source", "parse_split_spec"]


def open_source(spec: str, data_root_dir: str | os.PathLike | None = None):
    """Open a data source by spec: a named dataset, ``npz:PATH``, ``folder:PATH``, ``csv:PATH``
    or ``jsonl:PATH``.

    Args:
        spec: the source spec; named datasets: ``mnist``, ``cifar10``, ``coco_mini``,
            ``cifar10_demo`` (shipped with the package); synthetic kinds (``canvas``,
            ``canvas?objects=SPEC&size=64``, see :mod:`fmlab.data.synthetic`).
        data_root_dir: folder of the named datasets (default ``$FMLAB_DATA``, else
            ``~/.cache/fmlab/data``).

    Returns:
        An :class:`ImageSource` (labelled images) or an :class:`ImageTextSource` (captions).

    Raises:
        fmlab.errors.DataError: unknown spec, missing or malformed file (the message names it).

    Examples:
        >>> src = open_source("cifar10_demo")
        >>> test = src.split("test")
        >>> len(test), test.get_batch([0, 1]).shape, src.class_names[:2]
        (1000, (2, 32, 32, 3), ['airplane', 'automobile'])
    """
    from fmlab.data.folder import open_folder_source
    from fmlab.data.imagetext import open_coco_mini, open_table_source
    from fmlab.data.npz import open_npz_source
    from fmlab.data.synthetic.registry import synthetic_kind_of

    if synthetic_kind_of(spec) is not None:  # canvas?objects=npz:PATH&size=64 (issue 21)
        from fmlab.data.synthetic.source import open_synthetic

        return open_synthetic(spec, data_root_dir)
    if ":" in spec:
        kind, _, path = spec.partition(":")
        if kind == "npz":
            return open_npz_source(path)
        if kind == "folder":
            return open_folder_source(path)
        if kind in ("csv", "jsonl"):
            return open_table_source(path)
        if kind == "wds":  # WebDataset tar shards (issue 26): a folder or a glob/brace pattern
            from fmlab.data.wds import open_wds_source

            return open_wds_source(path)
        raise DataError(f"unknown source kind {kind!r} in {spec!r}; use npz:, folder:, csv:, jsonl: "
                        "or wds:")
    if spec not in NAMED:
        raise DataError(f"unknown dataset {spec!r}; named datasets: {', '.join(NAMED)}; "
                        "or use npz:PATH, folder:PATH, csv:PATH, jsonl:PATH")
    ds = NAMED[spec]
    path = ds.locate(data_root(data_root_dir))
    if spec == "coco_mini":
        return open_coco_mini(path)
    return open_npz_source(path, name=spec, provenance=ds.provenance, metadata=ds.metadata_for(path))


def parse_split_spec(spec: str) -> tuple[str, str | None]:
    """``SOURCE:SPLIT`` → (source, split), keeping ``npz:PATH`` intact (``npz:a.npz:test``)."""
    from fmlab.data.synthetic.registry import synthetic_kind_of

    if synthetic_kind_of(spec) is not None:  # canvas?objects=npz:a.npz[:test]
        src, _, split = spec.rpartition(":")
        return (src, split) if split in ("train", "test", "val") else (spec, None)
    kinds = ("npz:", "folder:", "csv:", "jsonl:", "wds:")
    head = next((k for k in kinds if spec.startswith(k)), "")
    rest = spec[len(head):]
    if ":" in rest:
        src, _, split = rest.rpartition(":")
        if split in ("train", "test", "val") or not Path(rest).exists():
            return head + src, split
    return spec, None
