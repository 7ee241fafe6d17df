"""The SQLite results store and its tables."""

from fmlab.results.store import COLUMNS, ResultsStore, format_rows, git_sha, new_run_id

__all__ = ["COLUMNS", "ResultsStore", "format_rows", "git_sha", "new_run_id"]
