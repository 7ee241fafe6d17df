"""``fmlab curate filter``: PASS-style removal of a content category (people) from a source."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_data_root


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        "filter",
        help="drop the images of a category (people) from a source, with a manifest (PASS)",
        description="Drop every image whose caption mentions the category (word-bounded, "
        "case-insensitive keywords with plurals; an image goes when ANY of its captions matches), "
        "whose class is one of the category's classes, or whose class is named in "
        "--drop-classes. Writes OUT/manifest.jsonl (one line per image: split, index, sha256, "
        "kept, reasons), OUT/summary.json (counts) and OUT/filtered.npz (the kept images as an "
        "npz: source for `fmlab pretrain --set data.source=npz:OUT/filtered.npz`). A person "
        "classifier's scores, computed by any model, come in with --scores (drop when score >= "
        "--threshold).",
    )
    p.add_argument("--drop", default="people",
                   help="comma list of categories to drop (known: people; default people; "
                        "'none' with --drop-classes only)")
    p.add_argument("--drop-classes", default="",
                   help="comma list of further class names to drop (labelled sources), e.g. a "
                        "proxy category such as cat,dog")
    p.add_argument("--data", required=True,
                   help="source: coco_mini, cifar10, npz:PATH, jsonl:PATH, csv:PATH, folder:PATH")
    p.add_argument("--scores", default=None,
                   help="an .npz of classifier scores, one array per split name (e.g. train, val) "
                        "with one score per image in the source's order")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="drop an image when its --scores value is >= this (default 0.5)")
    p.add_argument("--out", required=True, help="output directory")
    add_data_root(p)
    p.set_defaults(func=run_filter)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _scores(path: str | None) -> dict | None:
    """{split: scores} from an .npz (no pickles); the errors name the file."""
    if path is None:
        return None
    import numpy as np

    from fmlab.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k], dtype=np.float64).reshape(-1) for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"--scores {path}: not a readable .npz of score arrays ({e})") from None


def run_filter(args: argparse.Namespace) -> int:
    from fmlab.curate.people import get_category
    from fmlab.curate.people_filter import FilterConfig, filter_source

    drop = [] if args.drop.strip().lower() == "none" else _names(args.drop)
    for name in drop:
        get_category(name)  # an unknown category is refused before any data is read
    s = filter_source(FilterConfig(data=args.data, out=Path(args.out), drop=drop,
                                   drop_classes=_names(args.drop_classes),
                                   data_root=args.data_root, scores=_scores(args.scores),
                                   threshold=args.threshold))
    for name, c in s["splits"].items():
        print(f"{name}: {c['images']:,} images, {c['kept']:,} kept, {c['dropped']:,} dropped")
    top = ", ".join(f"{k} ({v})" for k, v in list(s["by_key"].items())[:8])
    print(f"reasons: {s['by_kind']}; top: {top}")
    print(f"wrote {args.out}/manifest.jsonl, summary.json, filtered.npz")
    return 0
