"""MetaCLIP-style data curation: substring matching against metadata entries, then balancing;
and PASS-style filtering of a category (people) with a per-image manifest (``filter_source``).

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
from fmlab.curate.people import KeywordMatcher, get_category
from fmlab.curate.people_filter import FilterConfig, filter_source
from fmlab.curate.pipeline import CurateConfig, curate
from fmlab.curate.readers import CaptionSource, detect_format
from fmlab.curate.text import entry_key, load_entries, spacing

__all__ = [
    "CaptionSource",
    "CurateConfig",
    "EntryMatcher",
    "FilterConfig",
    "KeywordMatcher",
    "check_threshold",
    "curate",
    "detect_format",
    "entry_counts",
    "entry_key",
    "entry_probabilities",
    "filter_source",
    "get_category",
    "keep_probabilities",
    "kept_entry_counts",
    "load_entries",
    "sample_keep",
    "spacing",
    "tail_proportion",
]
