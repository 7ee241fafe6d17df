"""``fmlab diffusion train | sample | transfer``: KIND / dense DDPM runs, sample grids, diversion.

Each handler parses, calls one library function and prints. Score samples with
``fmlab gan eval --fake-images SAMPLES.npz --ref mnist:test --features lenet5_mnist``.
"""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_train_arguments, train_paths

EXAMPLE = "configs/diffusion/<name>.yaml"


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab diffusion`` and its subcommands."""
    p = sub.add_parser("diffusion", help="class-conditional DDPM with KIND learngenes",
                       description="Train a small class-conditional DDPM (dense or KIND layers), "
                                   "sample from it, or divert it to new classes.")
    dsub = p.add_subparsers(dest="diffusion_command", metavar="SUBCOMMAND")
    dsub.required = True
    t = dsub.add_parser("train", help="train (integrate) a diffusion model from a config",
                        description="RUN_DIR receives config.yaml, metrics.jsonl, checkpoints/, "
                                    "model.safetensors + model.json and samples.png.")
    add_train_arguments(t, EXAMPLE, "trainer.max_steps=20")
    t.set_defaults(func=run_train)
    x = dsub.add_parser("transfer", help="divert a trained run to new classes "
                                         "(learngene | lora | scratch | scratch_matched)")
    add_train_arguments(x, "configs/diffusion/transfer_<data>.yaml", "trainer.max_steps=20")
    x.add_argument("--from", dest="source", default=None,
                   help="the integrated run directory (not needed with --resume)")
    x.add_argument("--method", default=None, choices=["learngene", "lora", "scratch", "scratch_matched"],
                   help="what trains (not needed with --resume)")
    x.set_defaults(func=run_transfer)
    s = dsub.add_parser("sample", help="write a PNG grid (and an npz for gan eval)")
    s.add_argument("--model", required=True, help="a finished run directory")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True, help="PNG file (one class per column)")
    s.add_argument("--npz", default=None,
                   help="also write uint8 'images' and 'labels' (original class ids) here")
    s.add_argument("--labels", default=None, help="model classes, e.g. 3 or 0,1,2 (cycled)")
    s.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    s.add_argument("--steps", type=int, default=20, help="DDIM steps")
    s.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_sample)
    return dsub


def _report(res, what: str) -> int:
    how = f" (resumed from step {res.resumed_from})" if res.resumed_from is not None else ""
    loss = f"; last logged loss {res.final_loss:.4f}" if res.final_loss is not None else ""
    print(f"{what} to step {res.step}/{res.max_steps}{how} in {res.train_cpu_s / 60:.2f} CPU-min"
          f"{loss}; trainable {res.info['trainable']:,} of {res.info['total']:,} parameters; "
          f"wrote {res.run_dir}/model.safetensors and samples.png")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.diffusion import load_diffusion_config, run_diffusion

    config, out, resumed = train_paths(args, EXAMPLE)
    cfg = load_diffusion_config(config, args.overrides)
    if cfg.transfer.method != "none":
        raise ConfigError(f"{config}: transfer.method is {cfg.transfer.method!r}; "
                          "use fmlab diffusion transfer")
    return _report(run_diffusion(cfg, out, resume=resumed), f"trained {cfg.name}")


def run_transfer(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.diffusion import load_diffusion_config, run_diffusion

    config, out, resumed = train_paths(args, "configs/diffusion/transfer_<data>.yaml")
    sets = list(args.overrides)
    if not resumed:
        if not args.source or not args.method:
            raise ConfigError("give --from RUN and --method learngene|lora|scratch|scratch_matched")
        sets = [f"transfer.source={args.source}", f"transfer.method={args.method}", *sets]
    cfg = load_diffusion_config(config, sets)
    if cfg.transfer.method == "none":
        raise ConfigError(f"{config}: no transfer.method recorded; give --method")
    res = run_diffusion(cfg, out, resume=resumed)
    extra = (f" (LoRA rank {res.info['lora_r']}; learngene would train "
             f"{res.info['learngene_trainable']:,})" if "lora_r" in res.info else "")
    _report(res, f"diverted {cfg.name} with {cfg.transfer.method}")
    if extra:
        print(extra.strip())
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from fmlab.experiments.diffusion_io import load_model, parse_labels, write_samples
    from fmlab.utils.validation import positive_int

    positive_int("--n", args.n)
    positive_int("--steps", args.steps)
    net, meta = load_model(args.model)
    labels = parse_labels(args.labels, args.n, len(meta["classes"]))
    write_samples(net, meta, args.n, args.out, args.npz, labels, sampler=args.sampler,
                  steps=args.steps, guidance=args.guidance, seed=args.seed)
    extra = f" and {args.npz}" if args.npz else ""
    print(f"wrote {args.out}{extra} ({args.n} samples, classes {meta['classes']})")
    return 0
