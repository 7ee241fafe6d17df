"""``fmlab vlgpt``: VL-GPT (reduced) — tokenizer, train, caption, generate, eval (papers.md entry 27)."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_data_root, add_train_arguments, train_paths

_EXAMPLES = {"tokenizer": "configs/vlgpt/tokenizer_mnist.yaml", "train": "configs/vlgpt/mnist.yaml"}
_LENET = "${FMLAB_DATA}/weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth"


def add_parser(sub) -> None:
    p = sub.add_parser("vlgpt", help="VL-GPT (reduced): one causal model that captions and draws",
                       description="Stage 1 (tokenizer): K continuous image embeddings from a frozen tower "
                                   "and a conv detokenizer. Stage 2 (train): one causal transformer over "
                                   "[image embeddings; caption] in both orders, CE on text + regression "
                                   "of the next image embedding.")
    s = p.add_subparsers(dest="vlgpt_command", metavar="SUBCOMMAND")
    s.required = True
    for name, helptext in (("tokenizer", "stage 1: train the image tokenizer/detokenizer"),
                           ("train", "stage 2: train the causal VL model on a tokenizer run's embeddings")):
        t = s.add_parser(name, help=helptext, description=helptext)
        add_train_arguments(t, _EXAMPLES[name], "trainer.max_steps=50 or data.limit=200")
        t.set_defaults(func=run_train)
    c = s.add_parser("caption", help="greedy captions of a split's first images")
    _model_data(c)
    c.add_argument("--limit", type=int, default=8, help="first M images of the split (default 8)")
    c.set_defaults(func=run_caption)
    g = s.add_parser("generate", help="draw images from captions (a PNG grid)")
    g.add_argument("--model", required=True, help="run directory of fmlab vlgpt train")
    g.add_argument("--caption", action="append", required=True, help="a caption (repeatable)")
    g.add_argument("--out", required=True, help="PNG file to write")
    g.set_defaults(func=run_generate)
    e = s.add_parser("eval", help="caption perplexity vs unigram, text->image class accuracy, sample sheet")
    _model_data(e)
    e.add_argument("--limit", type=int, default=500, help="first M test images (default 500)")
    e.add_argument("--classifier", default=None, help="held-out classifier for drawn images, e.g. lenet5_mnist")
    e.add_argument("--classifier-weights", default=_LENET, help="its weights (default: the MNIST LeNet-5)")
    e.add_argument("--sheet", default=None, help="also write the sample sheet PNG here")
    e.add_argument("--json", default=None, help="also write the metrics as JSON here")
    e.set_defaults(func=run_eval)


def _model_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory of fmlab vlgpt train")
    p.add_argument("--data", default=None, help="source (default: the run's data.source)")
    p.add_argument("--split", default="test")
    add_data_root(p)


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments import vlgpt as wf
    from fmlab.experiments.vlgpt_config import TokenizerTrainConfig, VLGPTTrainConfig, load_vlgpt_config

    config, out, resume = train_paths(args, _EXAMPLES[args.vlgpt_command])
    stage1 = args.vlgpt_command == "tokenizer"
    cfg = load_vlgpt_config(config, TokenizerTrainConfig if stage1 else VLGPTTrainConfig, args.overrides)
    res = (wf.run_tokenizer if stage1 else wf.run_vlgpt_train)(cfg, out, resume=resume)
    logs = ", ".join(f"{k} {v:.4g}" for k, v in res.items() if k not in ("step", "seconds"))
    print(f"vlgpt {args.vlgpt_command}: step {res['step']}, {logs} in {res['seconds']:.0f}s; run in {out}")
    return 0


def run_caption(args: argparse.Namespace) -> int:
    from fmlab.experiments.vlgpt import load_vlgpt
    from fmlab.experiments.vlgpt_eval import test_pairs
    from fmlab.utils.validation import positive_int

    positive_int("--limit", args.limit)
    bundle = load_vlgpt(args.model)
    pairs = test_pairs(bundle, args.data, args.split, args.limit, args.data_root)
    for i, (ref, cap) in enumerate(zip(pairs["captions"], bundle.caption(pairs["images"]))):
        print(f"{i:4d}  {cap!r}  (reference {ref!r})")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from fmlab.experiments.vlgpt import load_vlgpt
    from fmlab.experiments.vlgpt_eval import draw_rows

    bundle = load_vlgpt(args.model)
    _, images = bundle.generate(list(args.caption))
    draw_rows([(images, list(args.caption), "")], args.out)
    print(f"drew {len(images)} image(s) into {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.vlgpt import load_vlgpt
    from fmlab.experiments.vlgpt_eval import run_vlgpt_eval, sample_sheet
    from fmlab.utils.io import write_json
    from fmlab.utils.validation import positive_int

    positive_int("--limit", args.limit)
    bundle = load_vlgpt(args.model)
    out = run_vlgpt_eval(args.model, args.data, args.split, args.limit, args.classifier,
                         args.classifier_weights, args.data_root, bundle=bundle)
    for k, v in out.items():
        if k != "examples":
            print(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    for ref, cap in out["examples"]:
        print(f"  {ref!r:>34} -> {cap!r}")
    if args.json:
        write_json(args.json, out)
    if args.sheet:
        sample_sheet(bundle, args.sheet, args.data, args.split, title=f"VL-GPT (reduced): {args.model}")
        print(f"sample sheet: {args.sheet}")
    return 0
