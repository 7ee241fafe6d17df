"""Peak memory of a block of code, on CPU or CUDA (what ``fmlab finetune`` reports per run).

The measure, named in :attr:`PeakMemory.method`:

* ``cuda_max_allocated``: ``torch.cuda.max_memory_allocated`` minus the allocation at the start;
* ``cpu_vmhwm_delta``: the process's peak resident set size during the block minus its resident
  size at the start, read from ``VmHWM``/``VmRSS`` in ``/proc/self/status`` after resetting the
  peak with ``/proc/self/clear_refs`` (Linux >= 4.0);
* ``cpu_ru_maxrss_delta``: where that is not possible, the growth of
  ``resource.getrusage().ru_maxrss`` (a lower bound: 0 when an earlier block peaked higher).
"""

from __future__ import annotations

import resource
from typing import Any

import torch

__all__ = ["PeakMemory", "release_freed_memory"]


class PeakMemory:
    """Context manager: the peak memory (MB) the block added, and how it was measured.

    Args:
        device: where the block runs; CUDA devices use the allocator's statistics.

    Attributes:
        peak_mb: the peak growth in MiB (NaN until the block has ended).
        method: ``"cuda_max_allocated"``, ``"cpu_vmhwm_delta"`` or ``"cpu_ru_maxrss_delta"``.

    Examples:
        >>> import torch
        >>> with PeakMemory(torch.device("cpu")) as mem:
        ...     x = torch.ones(1000, 1000)
        >>> mem.method in ("cpu_vmhwm_delta", "cpu_ru_maxrss_delta"), mem.peak_mb >= 0
        (True, True)
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.peak_mb = float("nan")

    @staticmethod
    def _status_kb(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self) -> PeakMemory:
        release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._base = self._status_kb("VmRSS")
            self.method = "cpu_vmhwm_delta"
        except OSError:
            self.method = "cpu_ru_maxrss_delta"
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            peak_b = torch.cuda.max_memory_allocated(self.device) - self._base
            self.peak_mb = peak_b / 2**20
        elif self.method == "cpu_vmhwm_delta":
            self.peak_mb = (self._status_kb("VmHWM") - self._base) / 1024
        else:
            self.peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) / 1024


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (``gc.collect`` + glibc ``malloc_trim``).

    Why: otherwise a block's baseline RSS includes memory an earlier block freed but glibc kept,
    which hides this block's growth. A no-op where there is no glibc.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
