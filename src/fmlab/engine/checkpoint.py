"""Checkpoints that survive SIGKILL at any instant.

Layout under ``RUN_DIR/checkpoints/``::

    step-00000012.safetensors   every tensor of the objective's state_dict (weights, EMA copies,
                                queues, centres)
    step-00000012.state.pt      optimiser, schedule, RNG and data-order state (plain tensors and
                                dicts; read back with ``torch.load(weights_only=True)``)
    latest.json                 {"step": 12, "weights": ..., "state": ...}

Each file is written atomically, and ``latest.json`` is replaced only after both files of its
step are complete, so a crash leaves either the new checkpoint or the previous one — never half
of one. Old checkpoints beyond ``keep_last`` are deleted after the pointer moves.
"""

from __future__ import annotations

import json
import os
import random
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fmlab.errors import DataError, ModelError
from fmlab.utils.io import _umask_mode, atomic_path, atomic_write, load_torch_file

CKPT_DIR = "checkpoints"
LATEST = "latest.json"
_STEP_RE = re.compile(r"^step-(\d+)\.(safetensors|state\.pt)$")


@dataclass(frozen=True)
class CheckpointRef:
    step: int
    weights: Path
    state: Path


def tensor_state(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``module.state_dict()`` into CPU tensors for safetensors and everything else.

    Tensors that share storage (tied weights) are cloned so safetensors accepts them; loading
    through ``load_state_dict`` restores the values into the tied parameters.
    """
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {}
    seen: set[int] = set()
    for name, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            extra[name] = value
            continue
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        elif ptr != -1:
            seen.add(ptr)
        tensors[name] = t
    return tensors, extra


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, else None.

    Examples:
        >>> first_non_finite({"a": torch.ones(2), "b": torch.tensor([0.0, float("nan")])})
        'b'
    """
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                      metadata: dict[str, str] | None = None) -> None:
    """The one safetensors writer: atomic, byte-reproducible, with the umask's file mode.

    ``save_file`` recreates the temporary file, dropping the mode ``atomic_path`` set (outputs
    were 0600), and writes its header in hash-map order (see :func:`_sort_safetensors_header`).

    Args:
        tensors: name -> contiguous CPU tensor.
        path: the ``.safetensors`` file (replaced only when the write succeeded).
        metadata: string metadata for the header.
    """
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        _sort_safetensors_header(tmp)
        os.chmod(tmp, _umask_mode())


def _sort_safetensors_header(path: Path) -> None:
    """Rewrite the JSON header of a safetensors file with sorted keys, in place.

    The Rust writer keeps the header (and its ``__metadata__``) in hash maps, so the same tensors
    and metadata came out in a different key order from one process to the next, and the file's
    sha256 — the ``weights_sha256`` that results and caches are keyed on — changed with it. The
    sorted header has the same length (same keys and values, compact separators); tensor offsets
    are relative to the end of the header, so the data is untouched.
    """
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        header = json.loads(raw)
        canon = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(canon) > n:  # never grow the header (it would move the data); keep the writer's order
            return
        f.seek(8)
        f.write(canon + b" " * (n - len(canon)))


def save_weights(module: nn.Module, path: str | os.PathLike,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write ``module``'s tensors as safetensors, atomically. Non-tensor state is dropped.

    Args:
        module: the module whose ``state_dict`` tensors are written.
        path: the ``.safetensors`` file.
        metadata: string metadata stored in the header.

    Returns:
        ``path``.

    Raises:
        ModelError: a tensor holds NaN or infinity (nothing is written: an export of a diverged
            model must not look like a success).
    """
    tensors, _ = tensor_state(module)
    path = Path(path)
    bad = first_non_finite(tensors)
    if bad is not None:
        raise ModelError(f"{path}: refusing to write weights with non-finite values "
                         f"(first: {bad!r})")
    write_safetensors(tensors, path, metadata)
    return path


def rng_state() -> dict[str, Any]:
    """Process-wide RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], [int(v) for v in np_state[1]], int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | os.PathLike, step: int, module: nn.Module,
                    state: dict[str, Any], keep_last: int = 2) -> CheckpointRef:
    """Write the checkpoint of ``step`` and move ``latest.json`` to it (see module docstring)."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    weights = ckpt_dir / f"step-{step:08d}.safetensors"
    state_path = ckpt_dir / f"step-{step:08d}.state.pt"
    tensors, extra = tensor_state(module)
    write_safetensors(tensors, weights, {"step": str(step)})
    full = dict(state, step=step, model_extra=extra, format=1)
    with atomic_write(state_path, "wb") as f:
        torch.save(full, f)
    with atomic_write(ckpt_dir / LATEST, "w") as f:
        json.dump({"step": step, "weights": weights.name, "state": state_path.name}, f)
        f.write("\n")
    _prune(ckpt_dir, step, keep_last)
    return CheckpointRef(step, weights, state_path)


def _prune(ckpt_dir: Path, current: int, keep_last: int) -> None:
    steps: dict[int, list[Path]] = {}
    for p in ckpt_dir.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            steps.setdefault(int(m.group(1)), []).append(p)
    older = sorted(s for s in steps if s <= current)
    doomed = older[:-keep_last] + [s for s in steps if s > current]  # > current: a dead run's
    for s in doomed:
        for p in steps[s]:
            p.unlink(missing_ok=True)
    # temporary files of a writer that was killed mid-write (ours are complete by now)
    for p in ckpt_dir.iterdir():
        if p.name.startswith((".step-", f".{LATEST}.")):
            p.unlink(missing_ok=True)


def latest_checkpoint(run_dir: str | os.PathLike) -> CheckpointRef | None:
    """The checkpoint ``latest.json`` points to, or None when the run has none yet."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    pointer = ckpt_dir / LATEST
    if not pointer.exists():
        return None
    try:
        info = json.loads(pointer.read_text())
        ref = CheckpointRef(int(info["step"]), _inside(ckpt_dir, info["weights"], pointer),
                            _inside(ckpt_dir, info["state"], pointer))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{pointer}: unreadable checkpoint pointer ({e})") from None
    for p in (ref.weights, ref.state):
        if not p.exists():
            raise DataError(f"{pointer}: points to missing file {p.name}")
    return ref


def _inside(ckpt_dir: Path, name: Any, pointer: Path) -> Path:
    """``ckpt_dir / name`` for a plain file name that stays in ``ckpt_dir`` (probe F18: a
    pointer naming ``../../etc/passwd`` must not be followed)."""
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name
            or name in (".", "..") or (ckpt_dir / name).resolve().parent != ckpt_dir.resolve()):
        raise DataError(f"{pointer}: refusing checkpoint file name {name!r}: it must be a file "
                        f"name inside {ckpt_dir}")
    return ckpt_dir / name


def load_checkpoint(ref: CheckpointRef, module: nn.Module,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights into ``module`` (strict) and return the saved training state."""
    try:
        tensors = load_file(str(ref.weights), device=str(device))
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise DataError(f"{ref.weights}: cannot read checkpoint weights ({e})") from None
    try:
        state = load_torch_file(ref.state, "checkpoint state")
    except ModelError as e:  # pickled code, or gone: one line naming the file
        raise DataError(str(e)) from None
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise DataError(f"{ref.state}: cannot read checkpoint state ({e})") from None
    full = dict(tensors)
    full.update(state.get("model_extra", {}))
    missing, unexpected = module.load_state_dict(full, strict=False)
    if missing or unexpected:
        raise DataError(f"{ref.weights}: does not match the objective "
                        f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return state
