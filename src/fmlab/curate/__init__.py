"""MetaCLIP-style data curation: substring matching against metadata entries, then balancing.

``curate(CurateConfig(...))`` runs the whole pipeline (``fmlab curate`` on the command line); the
pieces (:class:`EntryMatcher`, :func:`entry_probabilities`, :func:`keep_probabilities`, ...) are
usable on their own. Heavy imports (pyahocorasick, pyarrow, matplotlib) happen on use.
"""

from fmlab.curate.balance import (
    check_threshold,
    entry_counts,
    entry_probabilities,
    keep_probabilities,
    kept_entry_counts,
    sample_keep,
    tail_proportion,
)
from fmlab.curate.matcher import EntryMatcher
from fmlab.curate.pipeline import CurateConfig, curate
from fmlab.curate.readers import CaptionSource, detect_format
from fmlab.curate.text import entry_key, load_entries, spacing

__all__ = [
    "CaptionSource",
    "CurateConfig",
    "EntryMatcher",
    "check_threshold",
    "curate",
    "detect_format",
    "entry_counts",
    "entry_key",
    "entry_probabilities",
    "keep_probabilities",
    "kept_entry_counts",
    "load_entries",
    "sample_keep",
    "spacing",
    "tail_proportion",
]
