"""Import Ray or say which extra to install; connect to a cluster or start a local one on demand.

Ray is the optional ``dist`` extra. ``--engine ray`` without it fails with one line naming the
extra (exit 2), never an ImportError traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from fmlab.errors import ConfigError

EXTRA_HINT = "--engine ray needs Ray: pip install -e \".[dist]\" (or pip install 'ray[data]')"


def import_ray() -> Any:
    """The ``ray`` module (with ``ray.data``).

    Raises:
        fmlab.errors.ConfigError: Ray is not installed (the message names the extra).
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, initialised: the running session, else ``address``, else a local cluster started now
    (no dashboard, no usage stats) and shut down on exit.

    Args:
        address: a cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); None starts
            a local cluster.
        num_cpus: CPUs of the local cluster (default: the machine's).

    Yields:
        The ``ray`` module.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_data_context(ray: Any) -> Any:
    """Ray Data's context with ordered output and no progress bars (output stays one report)."""
    import logging

    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    with contextlib.suppress(AttributeError):
        ctx.enable_progress_bars = False
    with contextlib.suppress(AttributeError):
        ctx.print_on_execution_start = False
    return ctx
