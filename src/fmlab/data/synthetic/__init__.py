"""Synthetic sources (issue 21): seeded generators over a labelled object pool.

Each generator is one module here with a ``render_<kind>`` function registered by
:func:`register_synthetic`; ``fmlab.data.open_source("<kind>?key=value&...")`` opens it as a
source whose train split uses the pool's train objects and whose test split its test objects.
"""

from fmlab.data.synthetic.registry import SYNTHETIC, SyntheticKind, register_synthetic, synthetic_kinds
from fmlab.data.synthetic.source import SyntheticSource, SyntheticSplit, open_synthetic, parse_synthetic_spec

__all__ = ["SYNTHETIC", "SyntheticKind", "SyntheticSource", "SyntheticSplit", "open_synthetic",
           "parse_synthetic_spec", "register_synthetic", "synthetic_kinds"]
