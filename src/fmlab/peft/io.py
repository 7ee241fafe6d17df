"""Save an adapter as safetensors + JSON; load it onto a fresh base model with identical outputs.

Directory layout written by :func:`save_adapter`:

- ``fmlab_adapter.json`` — format/version, the stages (method, resolved targets, head, options,
  replay info), the file names and their sha256;
- ``adapter_model.safetensors`` — the tensors of the last (usually only) stage. For LoRA these use
  peft's key names and ``adapter_config.json`` holds peft's ``LoraConfig``, i.e. the directory is
  also a valid peft adapter (``PeftModel.from_pretrained(base, dir)``);
- ``stage<i>_<method>.safetensors`` (+ ``stage<i>_<method>_config.json``) for earlier stages when
  methods were stacked (PELA, then LoRA);
- ``fmlab_extra.safetensors`` — the ``head`` modules' parameters and every persistent buffer
  (BatchNorm running statistics move while training in train mode, so an adapter without them
  would not reproduce the trained model's outputs).

:func:`load_adapter` checks every file against its recorded hash, replays each stage on the base
model (same resolved module names and options), then copies the tensors in, refusing a missing
file, an unknown or unexpected method, a missing or unexpected key and a shape mismatch with an
:class:`~fmlab.errors.FmlabError` that names the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.peft.core import (
    Stage,
    get_method,
    get_record,
    run_stage,
    set_trainable,
    trainable_parameters,
)
from fmlab.peft.targets import is_within
from fmlab.utils.io import atomic_path, sha256_file, write_json

META = "fmlab_adapter.json"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
EXTRA = "fmlab_extra.safetensors"
FORMAT = "fmlab.peft"
VERSION = 1


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata={"format": "pt"})


def _load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read safetensors file ({e})") from None


def _extras(model: nn.Module, heads: list[str]) -> dict[str, Tensor]:
    """Head parameters and persistent buffers, under their current names."""
    persistent = set(model.state_dict(keep_vars=True))
    out: dict[str, Tensor] = {}
    if heads:
        for n, p in model.named_parameters():
            if is_within(n.rpartition(".")[0], heads):
                out[n] = p
    for n, b in model.named_buffers():
        if n in persistent:
            out[n] = b
    return out


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write what :func:`fmlab.peft.apply` added (and what training changed) to ``directory``.

    Only the adapter is written (the stages' own parameters, the head and the buffers), not the
    base weights, so an adapter of a large backbone stays small; :func:`load_adapter` replays it on
    a fresh base.

    Args:
        model: a model :func:`fmlab.peft.apply` was applied to (not merged).
        directory: created if missing; files are written atomically.

    Returns:
        The directory.

    Examples:
        >>> import tempfile, torch
        >>> import fmlab.peft as fp
        >>> def make_base():
        ...     torch.manual_seed(0)
        ...     return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> model = fp.apply(make_base(), "bitfit")
        >>> with torch.no_grad():
        ...     _ = model[0].bias.add_(1.0)  # "training"
        >>> d = fp.save_adapter(model, tempfile.mkdtemp())
        >>> fresh = fp.load_adapter(make_base(), d)
        >>> x = torch.ones(3, 4)
        >>> torch.equal(fresh(x), model(x))
        True
    """
    rec = get_record(model)
    if rec is None or not rec.stages:
        raise ConfigError("save_adapter: the model has no fmlab.peft adapter; call "
                          "fmlab.peft.apply first")
    if rec.merged:
        raise ConfigError("save_adapter: the adapters were merged into the weights; save the "
                          "model's state_dict instead")
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"save_adapter: {d} exists and is not a directory")
    d.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    stages: list[dict[str, Any]] = []
    for i, st in enumerate(rec.stages):
        impl = get_method(st.method)
        last = i == len(rec.stages) - 1
        wname = WEIGHTS if last else f"stage{i}_{st.method}.safetensors"
        _save_tensors(d / wname, impl.to_file(dict(st.refs)))
        entry = st.to_json() | {"weights": wname}
        files.append(wname)
        cfg = impl.config_json(st)
        if cfg is not None:
            cname = CONFIG if last else f"stage{i}_{st.method}_config.json"
            write_json(d / cname, cfg)
            entry["config"] = cname
            files.append(cname)
        stages.append(entry)
    heads = sorted({h for st in rec.stages for h in st.head})
    extra = _extras(model, heads)
    if extra:
        _save_tensors(d / EXTRA, extra)
        files.append(EXTRA)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "stages": stages,
        "extra": EXTRA if extra else None,
        "trainable_parameters": trainable_parameters(model),
        "files": {f: sha256_file(d / f) for f in files},
    }
    write_json(d / META, meta)
    return d


def _read_meta(d: Path) -> dict[str, Any]:
    if not d.is_dir():
        raise DataError(f"adapter directory {d} does not exist")
    path = d / META
    if not path.is_file():
        raise DataError(f"{path} is missing: {d} is not an fmlab adapter directory")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: 'format' is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: unsupported version {meta.get('version')!r} (expected {VERSION})")
    stages = meta.get("stages")
    if not isinstance(stages, list) or not stages:
        raise DataError(f"{path}: 'stages' must be a non-empty list")
    files = meta.get("files")
    if not isinstance(files, dict):
        raise DataError(f"{path}: 'files' must map file names to sha256")
    for name, digest in files.items():
        f = d / name
        if not f.is_file():
            raise DataError(f"adapter file {f} is missing")
        if sha256_file(f) != digest:
            raise DataError(f"adapter file {f} does not match the sha256 recorded in {path}")
    return meta


def _copy_into(dst: dict[str, Tensor], src: dict[str, Tensor], path: Path) -> None:
    for key in dst:
        if key not in src:
            raise DataError(f"{path}: tensor {key!r} is missing")
    for key in src:
        if key not in dst:
            raise DataError(f"{path}: unexpected tensor {key!r} (no such tensor in the model)")
    for key, t in dst.items():
        if tuple(src[key].shape) != tuple(t.shape):
            raise ModelError(f"{path}: tensor {key!r} has shape {list(src[key].shape)}, the model "
                             f"expects {list(t.shape)}")
    with torch.no_grad():
        for key, t in dst.items():
            t.copy_(src[key])


_STAGE_KEYS = ("method", "targets", "head", "options", "info", "weights")


def load_adapter(base_model: nn.Module, directory: str | Path, *,
                 method: str | None = None) -> nn.Module:
    """Rebuild a saved adapter on ``base_model`` (in place; returned) — same outputs as when saved.

    ``base_model`` must be a fresh instance of the architecture the adapter was made on, with the
    same base weights. ``method``, if given, is the method the caller expects (the last stage's);
    anything else is a :class:`ConfigError`. The model comes back with the last stage trainable.

    Args:
        base_model: a fresh base model (no adapter yet).
        directory: what :func:`save_adapter` wrote.
        method: the method expected in the last stage, or None.

    Returns:
        ``base_model`` with the adapter replayed and its saved tensors loaded.

    Examples:
        >>> import tempfile, torch
        >>> import fmlab.peft as fp
        >>> d = fp.save_adapter(fp.apply(torch.nn.Linear(3, 2), "full"), tempfile.mkdtemp())
        >>> model = fp.load_adapter(torch.nn.Linear(3, 2), d, method="full")
        >>> fp.trainable_parameters(model)
        8
    """
    d = Path(directory)
    meta = _read_meta(d)
    meta_path = d / META
    rec = get_record(base_model)
    if rec is not None and rec.stages:
        raise ConfigError("load_adapter: the base model already has fmlab.peft adapters; "
                          "load onto a fresh model")
    stages = meta["stages"]
    last_method = stages[-1].get("method") if isinstance(stages[-1], dict) else None
    if method is not None and last_method != method:
        raise ConfigError(f"{meta_path}: the adapter's method is {last_method!r}, "
                          f"expected {method!r}")
    stage = None
    for i, entry in enumerate(stages):
        if not isinstance(entry, dict):
            raise DataError(f"{meta_path}: stages[{i}] is not an object")
        for key in _STAGE_KEYS:
            if key not in entry:
                raise DataError(f"{meta_path}: stages[{i}] lacks key {key!r}")
        try:
            impl = get_method(entry["method"])
        except ConfigError as e:
            raise ConfigError(f"{meta_path}: stages[{i}].method: {e}") from None
        try:
            opts = impl.parse_options(entry["options"])
        except ConfigError as e:
            raise ConfigError(f"{meta_path}: stages[{i}].options: {e}") from None
        names = dict(base_model.named_modules())
        for t in list(entry["targets"]) + list(entry["head"]):
            if t not in names:
                raise ModelError(f"{meta_path}: module {t!r} of stages[{i}] is not in the base "
                                 f"model ({type(base_model).__name__})")
        stage = Stage(method=entry["method"], patterns=entry.get("patterns"),
                      targets=list(entry["targets"]), head=list(entry["head"]),
                      options=dict(entry["options"]), info=entry["info"])
        cfg_name = entry.get("config")
        cfg_path = d / (cfg_name or CONFIG)
        cfg = json.loads(cfg_path.read_text()) if cfg_name else None
        impl.check_config(stage, cfg, cfg_path)
        run_stage(base_model, stage, opts, replay=True)
        wpath = d / entry["weights"]
        if not wpath.is_file():
            raise DataError(f"adapter file {wpath} is missing")
        _copy_into(dict(stage.refs), impl.from_file(_load_tensors(wpath)), wpath)
    heads = sorted({h for e in stages for h in e["head"]})
    extra_now = _extras(base_model, heads)
    if meta.get("extra"):
        epath = d / meta["extra"]
        _copy_into(extra_now, _load_tensors(epath), epath)
    elif extra_now:
        raise DataError(f"{meta_path}: no {EXTRA} but the model has head parameters or buffers "
                        f"({next(iter(extra_now))!r})")
    assert stage is not None
    set_trainable(base_model, stage)
    return base_model


def init_from_adapter(model: nn.Module, directory: str | Path, *,
                      ignore_options: tuple[str, ...] = ("seed",)) -> str:
    """Start the last stage of ``model`` at the tensors of a saved adapter (PVP's stage 2).

    Unlike :func:`load_adapter`, ``model`` already carries its stage (applied by this run) and only
    the stage's own tensors are copied: the head and the buffers stay as they are, so a run can
    start pre-trained modules with a fresh task head of another size. The saved stage must be the
    same method on the same modules with the same options, or the tensors would mean something
    else; options in ``ignore_options`` (the random init's ``seed``: overwritten here) may differ.

    Args:
        model: a model :func:`fmlab.peft.apply` was applied to.
        directory: what :func:`save_adapter` wrote.
        ignore_options: options that need not match.

    Returns:
        The sha256 of the tensors file copied in (the init's identity).

    Raises:
        ConfigError: another method, other targets or other options (named, with both values).

    Examples:
        >>> import tempfile, torch
        >>> import fmlab.peft as fp
        >>> d = fp.save_adapter(fp.apply(torch.nn.Linear(3, 2), "bitfit"), tempfile.mkdtemp())
        >>> len(init_from_adapter(fp.apply(torch.nn.Linear(3, 2), "bitfit"), d))
        64
    """
    d = Path(directory)
    meta = _read_meta(d)
    path = d / META
    rec = get_record(model)
    if rec is None or not rec.stages:
        raise ConfigError("init_from_adapter: the model has no fmlab.peft adapter; apply one first")
    saved, now = meta["stages"][-1], rec.stages[-1]
    if saved.get("method") != now.method:
        raise ConfigError(f"{path}: the saved modules are {saved.get('method')!r}, this run's "
                          f"method is {now.method!r}")
    old = saved.get("options") or {}
    diff = [k for k in sorted(set(old) | set(now.options))
            if k not in ignore_options and old.get(k) != now.options.get(k)]
    if diff:
        raise ConfigError(f"{path}: {now.method} option(s) differ from the saved modules': " + ", ".join(
            f"{k}={now.options.get(k)!r} (saved {old.get(k)!r})" for k in diff))
    if list(saved.get("targets") or []) != list(now.targets):
        raise ConfigError(f"{path}: the saved modules adapt {saved.get('targets')}, this run "
                          f"targets {now.targets}")
    wpath = d / saved["weights"]
    _copy_into(dict(now.refs), get_method(now.method).from_file(_load_tensors(wpath)), wpath)
    return str(meta["files"][saved["weights"]])
