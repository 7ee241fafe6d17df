"""``fmlab demo``: the main job on data that ships inside fmlab (no data root, no network).

Compares adaptation methods at several shot counts on ResNet-20 CIFAR-10 features of 2,000
packaged CIFAR-10 test images, prints the table and writes the plot.
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files
from pathlib import Path

from fmlab.utils.helptext import deferred_help


def _help_fields() -> dict[str, str]:
    from fmlab.adapt.registry import help_fields

    return help_fields()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the main job on the embedded demo data (under 2 minutes)",
        description="Few-shot adaptation sweep ({default_methods}) x shots 1,2,4,8,16 x seeds "
                    "1,2,3 on features of the packaged pretrained ResNet-20 over 2,000 packaged "
                    "CIFAR-10 test images.",
        formatter_class=deferred_help(_help_fields),
    )
    p.add_argument("--out", default="fmlab-demo", help="output directory (default ./fmlab-demo)")
    p.add_argument("--methods", default=None,
                   help="comma list of methods: {methods} (default {default_methods})")
    p.add_argument("--shots", default="1,2,4,8,16")
    p.add_argument("--seeds", default="1,2,3")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.adapt import AdaptConfig, run_adapt
    from fmlab.utils.parsing import parse_ints, parse_shots

    t0 = time.perf_counter()
    weights = Path(str(files("fmlab") / "assets" / "resnet20_cifar10.safetensors"))
    cfg = AdaptConfig(
        backbone="resnet20_cifar", weights=str(weights), data="cifar10_demo", out=Path(args.out),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None,
        shots=parse_shots(args.shots), seeds=parse_ints(args.seeds, "--seeds"),
        db=Path(args.out) / "fmlab.db",
    )
    run_adapt(cfg)
    print((Path(args.out) / "summary.md").read_text())
    print(f"plot: {Path(args.out) / 'accuracy_vs_shots.png'}; results: {Path(args.out) / 'results.json'}; "
          f"database: {Path(args.out) / 'fmlab.db'}")
    print(f"report: {_write_report(Path(args.out))}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def _write_report(out: Path) -> str:
    """The demo's HTML report (``OUT/report/index.html``), or why it was skipped."""
    from fmlab.errors import FmlabError
    from fmlab.report import build_report
    from fmlab.report.site import require_plotly

    try:
        require_plotly()
    except FmlabError as e:
        return f"skipped ({e})"
    return str(build_report(out / "report", dbs=[out / "fmlab.db"]))
