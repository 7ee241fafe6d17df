"""fmlab: pre-train, adapt, evaluate and compare foundation-model methods.

``import fmlab`` stays light: torch and friends load only when a submodule needs them.

The packages, one job each, in the order data flows through them (README "Layout"):
:mod:`fmlab.data` (sources, splits, augmentation) → :mod:`fmlab.models` (backbones by registry
name) → :mod:`fmlab.features` (cached features) → :mod:`fmlab.adapt` (estimators) →
:mod:`fmlab.metrics` → :mod:`fmlab.results` (the SQLite store). Training runs through
:mod:`fmlab.engine`, with objectives from :mod:`fmlab.pretrain`, :mod:`fmlab.multimodal`,
:mod:`fmlab.peft` and :mod:`fmlab.gan`. ``docs/adding-a-method.md`` says how to add a method.

Every user mistake raises an :class:`FmlabError` subclass whose message names the file, key or
value at fault; the CLI prints it on one line and exits with status 2.

Examples:
    >>> import fmlab
    >>> from fmlab.errors import ConfigError
    >>> issubclass(ConfigError, fmlab.FmlabError), isinstance(fmlab.__version__, str)
    (True, True)
"""

from fmlab.errors import FmlabError

__version__ = "0.1.0"

__all__ = ["FmlabError", "__version__"]
