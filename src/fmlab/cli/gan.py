"""``fmlab gan train | sample | eval``: train a GAN from a config, draw a grid, score samples."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fmlab.cli.common import add_data_root, add_db, resolve_db


def add_parser(sub) -> None:
    p = sub.add_parser("gan", help="train, sample and evaluate GANs",
                       description="Train a GAN from a YAML config, sample a grid from a "
                                   "generator, or compute FID/KID/IS/PRDC/intra-FID.")
    gsub = p.add_subparsers(dest="gan_command", metavar="SUBCOMMAND")
    gsub.required = True

    t = gsub.add_parser(
        "train", help="train a GAN from a config (checkpoints, grids, metrics, resume)",
        description="Train a GAN. RUN_DIR receives config.yaml, metrics.jsonl, fmlab.db, "
                    "checkpoints/, samples/step_XXXXXX.png and generator.safetensors + .json.")
    t.add_argument("--config", default=None,
                   help="YAML config (configs/gan/*.yaml); default with --resume: RUN_DIR/config.yaml")
    t.add_argument("--out", default=None, help="run directory")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. trainer.max_steps=100 (repeatable)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint")
    add_db(t, default_help="RUN_DIR/fmlab.db")
    t.set_defaults(func=run_train)

    s = gsub.add_parser("sample", help="write a PNG grid of generator samples",
                        description="Write a PNG grid of samples from a generator.")
    _add_generator(s, required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True, help="PNG file")
    s.add_argument("--labels", default=None,
                   help="class(es) for a conditional G: 3 or 0,1,2 (cycled to --n); "
                        "default: 0..K-1 repeated, one class per column")
    s.add_argument("--nrow", type=int, default=None, help="images per row")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_sample)

    e = gsub.add_parser(
        "eval", help="FID/KID/IS/PRDC/intra-FID of a generator or of fake images",
        description="Score a generator (--generator) or saved fakes (--fake-images: an npz "
                    "with uint8 'images' N×H×W[×C] and optional 'labels') against a reference "
                    "split.")
    _add_generator(e, required=False)
    e.add_argument("--fake-images", default=None, help="npz with 'images' (uint8) [and 'labels']")
    e.add_argument("--ref", required=True, help="SOURCE:SPLIT, e.g. mnist:test")
    e.add_argument("--ref-n", type=int, default=None, help="use the first N reference images")
    e.add_argument("--features", required=True,
                   help="extractor: lenet5_mnist, resnet56_cifar, inception_v3 or a backbone")
    e.add_argument("--features-weights", default=None,
                   help="extractor weights (default: the known file under the data root)")
    e.add_argument("--metrics", default="fid,kid,prdc",
                   help="comma list of fid,kid,is,prdc,ifid,iprdc,class_recall")
    e.add_argument("--n", type=int, default=None,
                   help="samples to generate (default 10000) or to take from --fake-images")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_root(e)
    e.add_argument("--db", default=None, help="also append the results to this SQLite store")
    e.set_defaults(func=run_eval)
    from fmlab.cli import gan_unlearn

    gan_unlearn.add_parser(gsub)


def _add_generator(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--generator", required=required,
                   help="RUN_DIR, generator.safetensors/.json, or a state dict with --arch")
    p.add_argument("--arch", default=None,
                   help="architecture of a bare state dict (e.g. mlp for G--300.ckpt)")
    p.add_argument("--arch-kwargs", default=None, help="JSON object of the architecture's options")


def _arch_kwargs(args: argparse.Namespace) -> dict | None:
    from fmlab.errors import ConfigError

    if args.arch_kwargs is None:
        return None
    try:
        kw = json.loads(args.arch_kwargs)
    except ValueError as e:
        raise ConfigError(f"--arch-kwargs: not JSON ({e})") from None
    if not isinstance(kw, dict):
        raise ConfigError("--arch-kwargs: must be a JSON object")
    return kw


def run_train(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.gan import load_gan_config, train_gan

    out = args.out or args.resume
    if out is None:
        raise ConfigError("give --out RUN_DIR (or --resume RUN_DIR)")
    if args.resume and Path(args.resume).resolve() != Path(out).resolve():
        raise ConfigError(f"--resume {args.resume} and --out {out} differ; a run is resumed in "
                          "place, so give one directory")
    if args.resume and not Path(args.resume).is_dir():
        raise ConfigError(f"--resume {args.resume}: no such run directory")
    config = args.config
    if config is None:
        if not args.resume:
            raise ConfigError("give --config FILE (configs/gan/*.yaml)")
        config = Path(args.resume) / "config.yaml"
    cfg = load_gan_config(config, args.overrides)
    res = train_gan(cfg, out, resume=bool(args.resume), db=resolve_db(args, out))
    how = f" (resumed from step {res.resumed_from})" if res.resumed_from is not None else ""
    stop = " (CPU budget reached)" if res.stopped_by_budget else ""
    print(f"trained {cfg.name} to step {res.step}/{res.max_steps}{how}{stop} in "
          f"{res.train_cpu_s / 60:.2f} CPU-min; wrote {out}/generator.safetensors")
    if res.metrics:
        print("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in res.metrics.items()))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.gan.io import load_generator, parse_labels
    from fmlab.gan import sample_grid

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    G, info = load_generator(args.generator, args.arch, _arch_kwargs(args))
    labels = parse_labels(args.labels, args.n, G.num_classes)
    grid = sample_grid(G, args.n, args.out, labels=labels, seed=args.seed, nrow=args.nrow)
    print(f"wrote {args.out} ({args.n} samples of {info['arch']}, {grid.shape[1]}x"
          f"{grid.shape[0]} px)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.gan_eval import (
        check_request,
        evaluate_fakes,
        make_extractor,
        open_reference,
        parse_metrics,
        result_rows,
    )
    from fmlab.gan.io import generate_images, load_fake_npz, load_generator

    if (args.generator is None) == (args.fake_images is None):
        raise ConfigError("give exactly one of --generator or --fake-images")
    if args.n is not None and args.n < 2:
        raise ConfigError(f"--n must be >= 2, got {args.n}")
    metrics = parse_metrics(args.metrics)
    t0 = time.perf_counter()
    ref = open_reference(args.ref, args.data_root)
    if args.generator is not None:
        G, info = load_generator(args.generator, args.arch, _arch_kwargs(args))
        n = args.n or 10000
        images, labels = generate_images(G, n, args.seed, batch_size=args.batch_size)
        num_classes = G.num_classes or None
        what = {"generator": {k: info.get(k) for k in ("arch", "kwargs", "weights",
                                                         "weights_sha256", "ema", "step")}}
        method = info["arch"]
    else:
        images, labels = load_fake_npz(args.fake_images, args.n)
        num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
        what = {"fake_images": str(args.fake_images)}
        method = "fake_images"
    # built after the inputs are checked: a bad input fails before any extractor warning
    check_request(images, labels, metrics)
    ext = make_extractor(args.features, args.features_weights, args.data_root, args.batch_size)
    res = evaluate_fakes(images, labels, ref, ext, metrics, num_classes=num_classes,
                         seed=args.seed, ref_n=args.ref_n)
    res["protocol"].update(what)
    if args.db:
        from fmlab.results import ResultsStore, new_run_id

        ResultsStore(args.db).append(result_rows(
            res, run_id=new_run_id(), method=method, seed=args.seed, source=args.ref,
            extra={"seconds": round(time.perf_counter() - t0, 2)}))
    if args.json:
        print(json.dumps(res, default=_jsonable))
    else:
        from fmlab.experiments.gan_eval import flat_metrics

        print(f"{method} vs {args.ref} ({len(images)} fakes, features {args.features}):")
        for k, v in flat_metrics(res).items():
            print(f"  {k:14s} {v:.4f}")
    return 0


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
