"""File helpers: atomic writes, hashing, JSON.

Nothing fmlab writes may be half-written when a process dies: every writer goes through
:func:`atomic_write` (write a temporary file in the target's folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_CHUNK = 1 << 20


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's 0600 is too strict for outputs)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` and move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _umask_mode())
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary *path* next to ``path``; it replaces ``path`` when the block succeeds.

    For writers that want a file name rather than a file object (``safetensors.torch.save_file``,
    ``matplotlib.savefig``).
    """

    @contextlib.contextmanager
    def _ctx() -> Iterator[Path]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                   suffix=target.suffix or ".tmp")
        os.close(fd)
        os.chmod(tmp, _umask_mode())
        try:
            yield Path(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    return _ctx()


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays show up in results; keep the dependency optional here.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def jsonable(o: Any) -> Any:
    """``o`` with every nested value made JSON-serialisable: the one converter fmlab uses.

    Dicts (keys as ``str``), lists and tuples are walked; numpy and torch scalars become Python
    numbers, arrays and tensors become lists, paths become strings; anything else that JSON
    cannot hold becomes ``str(o)``, so a log line or a record never fails to serialise.

    Examples:
        >>> import numpy as np
        >>> jsonable({"a": np.float32(0.5), 1: (Path("x"), np.arange(2))})
        {'a': 0.5, '1': ['x', [0, 1]]}
    """
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    if hasattr(o, "tolist"):  # numpy/torch scalars give Python numbers, arrays give lists
        return o.tolist()
    return str(o)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object in canonical form (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return sha256_bytes(text.encode())


def cache_dir() -> Path:
    """Root of fmlab's caches: ``$FMLAB_CACHE``, else ``~/.cache/fmlab``. Never the data root."""
    env = os.environ.get("FMLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fmlab"


def load_torch_file(path: str | os.PathLike, what: str = "weights") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one fmlab error instead of torch's advice.

    torch's refusal of a pickle with code in it ends with "Re-running ``torch.load`` with
    ``weights_only`` set to ``False`` will likely succeed" — the wrong advice for a file fmlab
    refuses on purpose. This prints one line naming the file and the refused global.

    Args:
        path: a ``torch.save`` file (zip or legacy format).
        what: what the file is, for the message (``"weights"``, ``"checkpoint state"``).

    Returns:
        The loaded object (tensors, dicts, lists and primitives only).

    Raises:
        fmlab.errors.ModelError: the file is missing, unreadable, or holds pickled code.
    """
    import pickle
    import warnings

    import torch

    from fmlab.errors import ModelError

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's "Detected pickle protocol" note is noise before our error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{what} file not found: {path}") from None
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in lines if "GLOBAL" in ln or "global" in ln), None)
        if detail is not None:
            raise ModelError(f"{path}: refusing to load {what}: the file holds pickled code "
                             f"({detail.removeprefix('WeightsUnpickler error: ')}); fmlab loads only "
                             "tensors (safetensors, or torch.load with weights_only=True)") from None
        # torch's text: advice, then "WeightsUnpickler error:", then the reason on its own line
        reasons = [ln.strip() for ln in lines if ln.strip() and "weights_only" not in ln
                   and "WeightsUnpickler" not in ln]
        raise ModelError(f"{path}: cannot read {what} as a torch file "
                         f"({reasons[0] if reasons else 'not a torch.save file'})") from None
    except Exception as e:  # noqa: BLE001 - junk bytes fail in many ways (struct.error, EOFError, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"{path}: cannot read {what} as a torch file "
                         f"({type(e).__name__}{': ' + msg if msg else ''})") from None
