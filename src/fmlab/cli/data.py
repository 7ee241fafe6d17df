"""``fmlab data list | info SOURCE | preview SOURCE | download NAME | shard SOURCE``."""

from __future__ import annotations

import argparse
import json

from fmlab.cli.common import add_data_root


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list, inspect and download datasets",
                       description="List, inspect and download datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    lp = dsub.add_parser("list", help="named datasets and whether they are present",
                         description="Named datasets and whether they are present under the data root.")
    add_data_root(lp)
    lp.set_defaults(func=run_list)
    ip = dsub.add_parser("info", help="counts, classes, shapes, hashes of a source",
                         description="Counts per split, classes, image shape, content hash, provenance.")
    ip.add_argument("source", help="named dataset, npz:PATH, folder:PATH, csv:PATH, jsonl:PATH, "
                    "wds:DIR|PATTERN (tar shards) or a synthetic "
                    "kind (canvas?objects=SOURCE&size=64, see `fmlab data list`)")
    ip.add_argument("--json", action="store_true", help="print JSON")
    add_data_root(ip)
    ip.set_defaults(func=run_info)
    pp = dsub.add_parser("preview", help="a PNG grid of samples with boxes, masks and captions",
                         description="Draw the first N samples of a split (synthetic sources: boxes, "
                                     "instance masks beside each image, captions as titles).")
    pp.add_argument("source", help="any source spec, e.g. canvas or canvas?objects=npz:PATH&size=64")
    pp.add_argument("--split", default="test", help="split to draw (default: test)")
    pp.add_argument("--n", type=int, default=16, help="samples to draw (1..256, default 16)")
    pp.add_argument("--out", required=True, help="the PNG to write")
    add_data_root(pp)
    pp.set_defaults(func=run_preview)
    dp = dsub.add_parser("download", help="download an official archive (mnist, cifar10)",
                         description="Download the official MNIST or CIFAR-10 archive, check its "
                                     "sha256 and convert it to fmlab's npz format in the data root.")
    dp.add_argument("name", choices=["mnist", "cifar10"])
    add_data_root(dp)
    dp.set_defaults(func=run_download)
    sp = dsub.add_parser("shard", help="write a split as WebDataset tar shards (read back as wds:DIR)",
                         description="Write one split as WebDataset tar shards: per sample KEY.png "
                                     "(lossless), KEY.cls or KEY.txt, KEY.json; plus manifest.json "
                                     "(counts, sizes, sha256), written last and atomically.")
    sp.add_argument("source", help="any image source spec (named, npz:, folder:, csv:, jsonl:, wds:)")
    sp.add_argument("--split", required=True, help="the split to write")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--shard-size", type=int, default=10000, help="samples per shard (default 10000)")
    add_data_root(sp)
    sp.set_defaults(func=run_shard)


def run_list(args: argparse.Namespace) -> int:
    from fmlab.data import NAMED, data_root
    from fmlab.data.synthetic import synthetic_kinds
    from fmlab.data.synthetic.source import COMMON_PARAMS
    from fmlab.errors import DataError

    root = data_root(args.data_root)
    print(f"data root: {root}")
    for name, ds in NAMED.items():
        try:
            where = str(ds.locate(root))
        except DataError:
            where = "not present"
        print(f"  {name:<13} {ds.kind:<10} {ds.description}  [{where}]")
    from fmlab.data.text import TEXT_SOURCES

    print("text (fmlab text ...; also text:PATH, jsonl:PATH):")
    for name, ts in TEXT_SOURCES.items():
        try:
            where = str(ts.locate(root, ts.splits[0] if ts.kind == "jsonl" else "all"))
        except DataError:
            where = "not present"
        print(f"  {name:<13} {'text':<10} {ts.description}  [{where}]")
    print("synthetic (KIND?objects=SOURCE&key=value&..., rendered on demand):")
    for name, kind in synthetic_kinds().items():
        keys = ", ".join(f"{k}={v}" for k, v in {**COMMON_PARAMS, **kind.params}.items())
        print(f"  {name:<13} {'synthetic':<10} {kind.description}  [{keys}]")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from fmlab.data import open_source
    from fmlab.data.text import TEXT_SOURCES

    if args.source in TEXT_SOURCES:
        return _text_info(args)
    info = open_source(args.source, args.data_root).info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"source: {info['source']}")
    for k in ("variant", "warning", "file", "folder", "sha256"):
        if k in info:
            print(f"{k}: {info[k]}")
    if info.get("classes"):
        print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    for key, s in info["splits"].items():
        extra = f", {s['n_captions']} captions" if "n_captions" in s else ""
        alias = f" (= {s['split']})" if s["split"] != key else ""
        print(f"split {key}{alias}: {s['n']} images{extra}, shape {tuple(s['image_shape'])}, "
              f"content hash {s['content_hash'][:16]}")
        if "per_class" in s:
            print(f"  per class: {s['per_class']}")
    if info.get("provenance"):
        print(f"provenance: {info['provenance']}")
    return 0


def _text_info(args: argparse.Namespace) -> int:
    """``fmlab data info`` of a named text source: records, words, labels, hashes per split."""
    from fmlab.data.text import text_info

    info = text_info(args.source, args.data_root)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"source: {info['source']} (text)")
    if info.get("classes"):
        print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    if "dedup" in info:
        print(f"de-duplication: {info['dedup']}")
    if "split_file_sha256" in info:
        print(f"seeded split file sha256: {info['split_file_sha256'][:16]}")
    for key, s in info["splits"].items():
        print(f"split {key}: {s['n']} records, {s['words']} words, split hash {s['split_hash'][:16]}")
        if "per_class" in s:
            print(f"  per class: {s['per_class']}")
    print(f"provenance: {info.get('provenance', '')}")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from fmlab.data.synthetic.preview import preview_grid

    path = preview_grid(args.source, args.out, split=args.split, n=args.n, data_root_dir=args.data_root)
    print(f"wrote {path}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from fmlab.data import data_root
    from fmlab.data.download import download

    path = download(args.name, data_root(args.data_root))
    print(f"wrote {path}")
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from fmlab.data import open_source
    from fmlab.data.wds import write_shards

    split = open_source(args.source, args.data_root).split(args.split)
    m = write_shards(split, args.out, shard_size=args.shard_size, source=args.source)
    print(f"wrote {len(m['shards'])} shards, {m['n']} samples, to {args.out} (manifest.json)")
    return 0
