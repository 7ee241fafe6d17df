"""``fmlab report``: a static, offline HTML dashboard of results stores and run folders.

Modules: :mod:`~fmlab.report.collect` (read stores, ``results.json``, run folders),
:mod:`~fmlab.report.aggregate` (mean ± std, best per task), :mod:`~fmlab.report.charts` (chart
specs, PNG fallbacks), :mod:`~fmlab.report.pages` (HTML), :mod:`~fmlab.report.site` (the build).
"""

from fmlab.report.site import build_report

__all__ = ["build_report"]
