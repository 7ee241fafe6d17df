"""``fmlab pretrain``: pre-train a backbone with one objective from a YAML config."""

from __future__ import annotations

import argparse
import sys
import warnings

from fmlab.cli.common import add_train_arguments, train_paths
from fmlab.utils.helptext import deferred_help


def _help_fields() -> dict[str, str]:
    from fmlab.pretrain import OBJECTIVES

    return {"objectives": ", ".join(OBJECTIVES.names())}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="pre-train a backbone with one registered objective",
        description="Pre-train a backbone with one registered objective (the config's "
                    "objective.name; an unknown name lists them). RUN_DIR receives config.yaml "
                    "(resolved), metrics.jsonl, checkpoints/, encoder.safetensors and "
                    "encoder.json (how to load it: create_backbone(architecture, "
                    "weights=RUN_DIR/encoder.safetensors, **kwargs)). Runs DDP under "
                    "`torchrun --nproc_per_node N -m fmlab pretrain ...`. Objectives: {objectives}.",
        formatter_class=deferred_help(_help_fields))
    add_train_arguments(p, "configs/pretrain/simclr_cifar10.yaml",
                        "trainer.max_steps=100, data.limit=2000, objective.temperature=0.5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the run directory, load the config, train, print where the encoder is."""
    from fmlab.experiments.pretrain import load_pretrain_config, run_pretrain

    config, out, resumed = train_paths(args, "configs/pretrain/<objective>_<data>.yaml")
    cfg = load_pretrain_config(config, args.overrides)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        res = run_pretrain(cfg, out, resume=resumed)
    if not res.is_main:
        return 0
    how = f" (resumed from step {res.resumed_from})" if res.resumed_from is not None else ""
    loss = f", loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"pre-trained {cfg.model.arch} with {cfg.objective.name} to step "
          f"{res.step}/{res.max_steps}{how}{loss}")
    if res.monitor:
        print("monitor: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(res.monitor.items())))
    if res.encoder:
        print(f"wrote {out}/encoder.safetensors; load it with {res.encoder['load']}")
        if res.encoder.get("load_check") != "ok":
            print(f"warning: load check {res.encoder.get('load_check')}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings (collapse alarms, a random teacher) as one line, without source excerpts."""
    print(f"fmlab: warning: {message}", file=sys.stderr)
