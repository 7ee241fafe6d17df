"""The SQLite results store, its tables, and the protocol every stored number carries."""

from fmlab.results.protocol import Protocol
from fmlab.results.store import COLUMNS, ResultsStore, format_rows, git_sha, new_run_id

__all__ = ["COLUMNS", "Protocol", "ResultsStore", "format_rows", "git_sha", "new_run_id"]
