"""fmlab: pre-train, adapt, evaluate and compare foundation-model methods.

``import fmlab`` stays light: torch and friends load only when a submodule needs them.
"""

from fmlab.errors import FmlabError

__version__ = "0.1.0"

__all__ = ["FmlabError", "__version__"]
