"""``fmlab gan train | sample | eval``: train a GAN from a config, draw a grid, score samples.

Each handler parses, calls one library function or workflow and prints. ``gan unlearn`` lives in
:mod:`fmlab.cli.gan_unlearn`; the entry point (:mod:`fmlab.cli.main`) attaches it to this group.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmlab.cli.common import (add_data_root, add_db, add_generator, add_train_arguments, arch_kwargs,
                              resolve_db, train_paths)


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab gan`` and its subcommands; return the group's subparsers (for ``unlearn``)."""
    p = sub.add_parser("gan", help="train, sample and evaluate GANs",
                       description="Train a GAN from a YAML config, sample a grid from a "
                                   "generator, or compute FID/KID/IS/PRDC/intra-FID.")
    gsub = p.add_subparsers(dest="gan_command", metavar="SUBCOMMAND")
    gsub.required = True
    _add_train(gsub)
    _add_sample(gsub)
    _add_eval(gsub)
    return gsub


def _add_train(gsub) -> None:
    t = gsub.add_parser(
        "train", help="train a GAN from a config (checkpoints, grids, metrics, resume)",
        description="Train a GAN. RUN_DIR receives config.yaml, metrics.jsonl, fmlab.db, "
                    "checkpoints/, samples/step_XXXXXX.png and generator.safetensors + .json.")
    add_train_arguments(t, "configs/gan/<name>.yaml", "trainer.max_steps=100")
    add_db(t, default_help="RUN_DIR/fmlab.db")
    t.set_defaults(func=run_train)


def _add_sample(gsub) -> None:
    s = gsub.add_parser("sample", help="write a PNG grid of generator samples",
                        description="Write a PNG grid of samples from a generator.")
    add_generator(s, required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True, help="PNG file")
    s.add_argument("--labels", default=None,
                   help="class(es) for a conditional G: 3 or 0,1,2 (cycled to --n); "
                        "default: 0..K-1 repeated, one class per column")
    s.add_argument("--nrow", type=int, default=None, help="images per row")
    s.add_argument("--caption", action="append", default=None, metavar="TEXT",
                   help="for a caption generator: a caption (repeatable); each gets a row of "
                        "--per-caption images with the text drawn under them")
    s.add_argument("--captions", default=None, metavar="FILE",
                   help="for a caption generator: a UTF-8 text file, one caption per line")
    s.add_argument("--per-caption", type=int, default=8, help="images per caption (default 8)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=500,
                   help="samples per generator pass (the grid is drawn in batches)")
    s.set_defaults(func=run_sample)


def _add_eval(gsub) -> None:
    e = gsub.add_parser(
        "eval", help="FID/KID/IS/PRDC/intra-FID of a generator or of fake images",
        description="Score a generator (--generator) or saved fakes (--fake-images: an npz "
                    "with uint8 'images' N×H×W[×C] and optional 'labels') against a reference "
                    "split. A caption generator (data.conditioning: caption) draws one image per "
                    "caption of the first --n reference images and adds class_acc (held-out "
                    "classifier vs the caption's digit) and thickness/slant agreement.")
    add_generator(e, required=False)
    e.add_argument("--fake-images", default=None, help="npz with 'images' (uint8) [and 'labels']")
    e.add_argument("--ref", required=True, help="SOURCE:SPLIT, e.g. mnist:test")
    e.add_argument("--ref-n", type=int, default=None, help="use the first N reference images")
    e.add_argument("--features", default=None,
                   help="extractor: lenet5_mnist, resnet56_cifar, inception_v3 or a backbone "
                        "(needed for images; a TGANs-C run is scored by its clip classifiers)")
    e.add_argument("--features-weights", default=None,
                   help="extractor weights (default: the known file under the data root)")
    e.add_argument("--metrics", default="fid,kid,prdc",
                   help="comma list of fid,kid,is,prdc,ifid,iprdc,class_recall")
    e.add_argument("--n", type=int, default=None,
                   help="samples to generate (default 10000) or to take from --fake-images")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--judge-steps", type=int, default=None, metavar="N",
                   help="TGANs-C runs: train the held-out digit/direction clip classifiers for N "
                        "steps (default: the run's eval.classifier_steps; cached per N)")
    e.add_argument("--image-text", default=None, metavar="REF",
                   help="caption generators: an image-text model (a fmlab clip train run, e.g. "
                        "runs/clip/mnist_digits, or open_clip:<arch>) that adds clip_score and "
                        "r_precision (99 distractors from other digits) of the generated images "
                        "and of the real ones (*_real)")
    add_data_root(e)
    e.add_argument("--db", default=None, help="also append the results to this SQLite store")
    e.set_defaults(func=run_eval)


def _config_family(config: Path) -> str:
    """The config's top-level ``family`` (``gan`` when absent): ``tganc`` (caption → video) and
    ``story`` (story continuation) are generators with their own experiment."""
    import yaml

    from fmlab.errors import ConfigError

    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{config}: cannot read the config ({e})") from None
    family = data.get("family", "gan") if isinstance(data, dict) else "gan"
    if family not in ("gan", "tganc", "story"):
        raise ConfigError(f"{config}: family {family!r} is unknown; choose gan, tganc or story")
    return family


def _run_family(family: str, config: Path, out: Path, resumed: bool, overrides: list[str]) -> int:
    if family == "tganc":
        from fmlab.experiments.tganc import run_tganc
        from fmlab.experiments.tganc_config import load_tganc_config

        rec = run_tganc(load_tganc_config(config, overrides), out, resume=resumed)
        keys = ("digit_accuracy", "direction_accuracy", "jitter", "real_jitter")
    else:
        from fmlab.experiments.story import run_story
        from fmlab.experiments.story_config import load_story_config

        rec = run_story(load_story_config(config, overrides), out, resume=resumed)
        keys = ("style_consistency", "colour_consistency", "thickness_consistency", "digit_accuracy")
    shown = ", ".join(f"{k} {rec[k]:.4g}" for k in keys if k in rec)
    print(f"trained {rec['name']} ({family}); wrote {out}/results.json" + (f"; {shown}" if shown else ""))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.gan import load_gan_config, train_gan

    config, out, resumed = train_paths(args, "configs/gan/<name>.yaml")
    family = _config_family(config)
    if family != "gan":
        return _run_family(family, config, out, resumed, args.overrides)
    cfg = load_gan_config(config, args.overrides)
    res = train_gan(cfg, out, resume=resumed, db=resolve_db(args, out))
    how = f" (resumed from step {res.resumed_from})" if res.resumed_from is not None else ""
    stop = " (CPU budget reached)" if res.stopped_by_budget else ""
    print(f"trained {cfg.name} to step {res.step}/{res.max_steps}{how}{stop} in "
          f"{res.train_cpu_s / 60:.2f} CPU-min; wrote {out}/generator.safetensors")
    if res.metrics:
        print("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in res.metrics.items()))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from fmlab.gan import sample_grid
    from fmlab.gan.grid import check_grid_size
    from fmlab.gan.io import load_generator, parse_labels
    from fmlab.utils.validation import positive_int

    from fmlab.gan.caption_io import is_caption_generator

    if args.caption is not None or args.captions is not None or (
            args.arch is None and is_caption_generator(args.generator)):
        return _run_caption_sample(args)
    positive_int("--n", args.n)
    if args.nrow is not None:
        positive_int("--nrow", args.nrow)
    positive_int("--batch-size", args.batch_size)
    G, info = load_generator(args.generator, args.arch, arch_kwargs(args))
    check_grid_size(args.n, G.img_shape, args.nrow, key="--n")
    labels = parse_labels(args.labels, args.n, G.num_classes)
    grid = sample_grid(G, args.n, args.out, labels=labels, seed=args.seed, nrow=args.nrow,
                       batch_size=args.batch_size)
    print(f"wrote {args.out} ({args.n} samples of {info['arch']}, {grid.shape[1]}x"
          f"{grid.shape[0]} px)")
    return 0


def _run_caption_sample(args: argparse.Namespace) -> int:
    """``gan sample --caption ... / --captions FILE``: a caption sheet from a caption generator."""
    from fmlab.errors import ConfigError
    from fmlab.experiments.textgan_data import embed_captions
    from fmlab.gan.caption_io import (caption_sheet, generate_from_embeddings,
                                      is_caption_generator, load_caption_generator,
                                      read_caption_file)
    from fmlab.gan.grid import check_grid_size
    from fmlab.utils.validation import positive_int

    positive_int("--per-caption", args.per_caption)
    texts = list(args.caption or [])
    for i, t in enumerate(texts, 1):
        if not t.strip():
            raise ConfigError(f"--caption: caption {i} is empty")
    if args.captions is not None:
        texts += read_caption_file(args.captions)
    if not texts:
        raise ConfigError(f"{args.generator} is a caption generator: give --caption TEXT or "
                          "--captions FILE")
    if args.arch is not None or not is_caption_generator(args.generator):
        raise ConfigError(f"--caption/--captions: {args.generator} is not a caption generator "
                          "(its generator.json has no 'caption' block)")
    G, info = load_caption_generator(args.generator)
    check_grid_size(len(texts) * args.per_caption, G.img_shape, args.per_caption,
                    key="--per-caption")
    emb = embed_captions([t.strip() for t in texts], info["caption"]["encoder"])
    images = generate_from_embeddings(G, emb.repeat(args.per_caption, axis=0), args.seed,
                                      args.batch_size)
    caption_sheet(images, [t.strip() for t in texts], args.per_caption, args.out)
    print(f"wrote {args.out} ({len(texts)} captions x {args.per_caption} samples of "
          f"caption:{info['arch']})")
    return 0


def _video_run(generator: str | None) -> Path | None:
    """The run folder when ``--generator`` names a TGANs-C run (or its generator file)."""
    if generator is None:
        return None
    p = Path(generator)
    run = p if p.is_dir() else p.parent
    cfg = run / "config.yaml"
    return run if cfg.is_file() and _config_family(cfg) == "tganc" else None


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.gan_eval import GANEvalRequest, flat_metrics, run_gan_eval
    from fmlab.utils.io import jsonable

    video = _video_run(args.generator)
    if video is not None:  # caption -> clip: digit / direction accuracy and jitter
        if args.image_text is not None:
            from fmlab.errors import ConfigError

            raise ConfigError(f"--image-text: {video} is a TGANs-C video run; image-text scores "
                              "are for caption-to-image generators")
        from fmlab.experiments.tganc_eval import evaluate_tganc_run

        res = evaluate_tganc_run(video, args.ref, args.n, args.seed, args.data_root,
                                 args.judge_steps)
        print(json.dumps(res) if args.json else "\n".join(f"  {k:20s} {v:.4f}" for k, v in res.items()))
        return 0
    if args.features is None:
        from fmlab.errors import ConfigError

        raise ConfigError("--features: give the feature extractor (e.g. lenet5_mnist)")

    req = GANEvalRequest(
        ref=args.ref, features=args.features, generator=args.generator, arch=args.arch,
        arch_kwargs=arch_kwargs(args), fake_images=args.fake_images,
        features_weights=args.features_weights, metrics=args.metrics, n=args.n,
        ref_n=args.ref_n, seed=args.seed, batch_size=args.batch_size, data_root=args.data_root,
        db=args.db, image_text=args.image_text)
    out = run_gan_eval(req)
    if args.json:
        print(json.dumps(jsonable(out.metrics)))
    else:
        print(f"{out.method} vs {args.ref} ({out.n_fakes} fakes, features {args.features}):")
        for k, v in flat_metrics(out.metrics).items():
            print(f"  {k:14s} {v:.4f}")
    return 0
