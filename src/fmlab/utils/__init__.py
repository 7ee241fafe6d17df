"""Small helpers shared by every package (no torch at import time).

- :mod:`fmlab.utils.validation`: the one set of value checks (``check``, ``positive_int``,
  ``finite_float``, ...); each raises :class:`~fmlab.errors.ConfigError` naming key and value.
- :mod:`fmlab.utils.io`: atomic writes (``atomic_write``, ``atomic_path``, ``write_json``), the
  one JSON converter ``jsonable``, hashing, the cache folder, and ``load_torch_file`` (weights-only
  torch loads with fmlab's own one-line error).
- :mod:`fmlab.utils.parsing`: CLI list parsers (``--shots 1,2,all``, ``--seeds 1,2,3``).

They sit below every other package: nothing here imports from the rest of fmlab except
:mod:`fmlab.errors`.
"""
