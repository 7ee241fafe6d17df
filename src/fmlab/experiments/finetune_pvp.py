"""PVP (Song et al. 2023): pre-train the PEFT modules upstream, then start few-shot runs from them.

Stage 1, ``fmlab finetune pretrain-peft`` (:func:`run_pretrain_peft`), is one ``fmlab finetune``
run — the same code path, :func:`fmlab.experiments.finetune.run_finetune` — with ``shots="all"``
and no validation images (``n_val=0``): the method's modules and a task head of the *upstream*
classes train on the whole train split of the upstream source (``data.limit=M``: a seeded random
subset of M images), the backbone frozen, the last state kept. It writes the usual run
(``OUT/<method>_all_<seed>/adapter/``, ``results.json``, ``summary.md``) plus

- ``pvp.json``: provenance (backbone, weights sha256, upstream source and its train content hash,
  split sha256, the method's resolved options and targets, steps, seed, the adapter's path and
  the sha256 of its tensors file);
- ``upstream_sha256.safetensors``: the sha256 of every upstream training image (uint8 ``(N, 32)``,
  plus its train-split index), for the leak check below.

Stage 2, ``fmlab finetune --init-from PVP_DIR`` (:func:`pvp_init` and :func:`init_modules`): the
run applies its method as usual, then copies stage 1's module tensors in
(:func:`fmlab.peft.init_from_adapter`); the head is fresh (a new ``Linear`` of the downstream
classes, at the class-mean init). The method, its options (all but the random-init ``seed``) and
targets must equal stage 1's, and so must the backbone and its weights (the modules were fitted to
those features); a mismatch is a :class:`~fmlab.errors.ConfigError` naming it.

Leak check (design): the upstream images are hashed once, in stage 1, and stored with the modules,
so stage 2 needs neither the upstream source nor its decoding. Stage 2 hashes every image of the
downstream evaluation split (the whole split, not only ``--max-test``'s subset) and refuses any
overlap, naming how many and one example pair of indices. A hash is the sha256 of the decoded
uint8 pixels with their shape: it catches the same image stored in any container (npz, PNG
folder, the same JPEG), not a re-encoded or resized copy. Upstream = the downstream source's own
train split is allowed: a train split disjoint from the test split passes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.experiments.finetune_settings import FinetuneConfig
from fmlab.data.hashing import split_image_sha256

__all__ = ["HASHES", "PVP_JSON", "init_modules", "pop_limit", "pvp_init",
           "read_pvp", "run_pretrain_peft"]

PVP_JSON = "pvp.json"
HASHES = "upstream_sha256.safetensors"
FORMAT = "fmlab.pvp"
VERSION = 1


def pop_limit(overrides: list[str]) -> tuple[int, list[str]]:
    """Take ``data.limit=M`` out of ``--set`` strings (the fine-tuning settings have no data key).

    Args:
        overrides: ``KEY=VALUE`` strings.

    Returns:
        (M, 0 for all; the other overrides).

    Examples:
        >>> pop_limit(["trainer.max_steps=5", "data.limit=100"])
        (100, ['trainer.max_steps=5'])
    """
    limit, rest = 0, []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() != "data.limit":
            rest.append(item)
            continue
        try:
            limit = int(value)
        except ValueError:
            raise ConfigError(f"--set {item!r}: data.limit must be an integer >= 0") from None
        if limit < 0:
            raise ConfigError(f"--set {item!r}: data.limit must be an integer >= 0")
    return limit, rest


# --------------------------------------------------------------------------- stage 1


def _save_hashes(path: Path, digests: np.ndarray, index: np.ndarray) -> None:
    from safetensors.torch import save_file

    from fmlab.utils.io import atomic_path

    with atomic_path(path) as tmp:
        save_file({"sha256": torch.from_numpy(np.ascontiguousarray(digests)),
                   "index": torch.from_numpy(np.asarray(index, np.int64))}, str(tmp))


def run_pretrain_peft(cfg: FinetuneConfig) -> dict[str, Any]:
    """PVP stage 1: one fine-tuning run on the whole upstream train split, plus the provenance.

    Args:
        cfg: one method, one seed (``shots`` and ``n_val`` are set here: all, 0), ``train_limit``.

    Returns:
        The content of ``pvp.json``.
    """
    from fmlab.experiments.finetune import open_data, run_finetune
    from fmlab.utils.io import sha256_file, write_json

    if len(cfg.methods) != 1 or len(cfg.seeds) != 1:
        raise ConfigError("pretrain-peft: give one --method and one --seed")
    if cfg.init_from is not None:
        raise ConfigError("pretrain-peft: --init-from is for the downstream runs")
    cfg = dataclasses.replace(cfg, shots=["all"], n_val=0)
    rec = run_finetune(cfg)[0]
    train = open_data(cfg)[0]
    out, method, seed = Path(cfg.out), cfg.methods[0], cfg.seeds[0]
    index = getattr(train, "indices", np.arange(len(train)))  # a data.limit subset's rows
    _save_hashes(out / HASHES, split_image_sha256(train), index)
    adapter = Path(f"{method}_all_{seed}") / "adapter"
    stage = json.loads((out / adapter / "fmlab_adapter.json").read_text())["stages"][-1]
    meta = {
        "format": FORMAT, "version": VERSION, "method": method, "options": stage["options"],
        "targets": stage["targets"], "backbone": cfg.backbone,
        "weights": str(Path(cfg.weights).resolve()) if cfg.weights else None,
        "weights_sha256": rec["protocol"]["weights_sha256"], "base_init_seed": cfg.init_seed,
        "upstream": cfg.data, "upstream_train_content_hash": rec["protocol"]["train_content_hash"],
        "n_images": len(train), "data_limit": cfg.train_limit, "split_sha256": rec["split_sha256"],
        "steps": rec["steps"], "seed": seed, "upstream_accuracy": rec["accuracy"],
        "adapter": str(adapter), "adapter_sha256": sha256_file(out / adapter / stage["weights"]),
        "image_hashes": HASHES, "image_hashes_sha256": sha256_file(out / HASHES),
    }
    write_json(out / PVP_JSON, meta)
    return meta


# --------------------------------------------------------------------------- stage 2


def read_pvp(pvp_dir: str | Path) -> dict[str, Any]:
    """``pvp.json`` of a stage-1 directory, checked (format, keys, hash file intact).

    Args:
        pvp_dir: what ``fmlab finetune pretrain-peft`` wrote.

    Returns:
        Its ``pvp.json``.
    """
    from fmlab.utils.io import sha256_file

    path = Path(pvp_dir) / PVP_JSON
    if not path.is_file():
        raise DataError(f"--init-from: {path} is missing: {pvp_dir} is not a "
                        "`fmlab finetune pretrain-peft` directory")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: not a {FORMAT} version {VERSION} file")
    for key in ("method", "backbone", "weights_sha256", "adapter", "image_hashes",
                "image_hashes_sha256", "upstream"):
        if key not in meta:
            raise DataError(f"{path}: lacks key {key!r}")
    hashes = Path(pvp_dir) / meta["image_hashes"]
    if not hashes.is_file() or sha256_file(hashes) != meta["image_hashes_sha256"]:
        raise DataError(f"{hashes} is missing or does not match the sha256 in {path}")
    return meta


def check_leak(pvp_dir: Path, meta: dict[str, Any], test: Any, test_name: str, data: str) -> None:
    """Refuse an upstream that shares an image (same pixels) with the downstream evaluation split.

    Raises:
        DataError: naming the number of shared images and one (test, upstream) index pair.
    """
    from safetensors.torch import load_file

    stored = load_file(str(pvp_dir / meta["image_hashes"]))
    up = stored["sha256"].numpy()
    down = split_image_sha256(test)
    as_bytes = np.dtype((np.void, 32))
    up_v, down_v = up.view(as_bytes).ravel(), down.view(as_bytes).ravel()
    hit = np.flatnonzero(np.isin(down_v, up_v))
    if hit.size:
        j = int(np.flatnonzero(up_v == down_v[hit[0]])[0])
        raise DataError(
            f"--init-from {pvp_dir}: its upstream data ({meta['upstream']} train) overlaps the "
            f"{test_name} split of {data}: {hit.size} of its {len(down_v)} images are identical "
            f"(sha256 of pixels), e.g. {test_name} index {int(hit[0])} = upstream train index "
            f"{int(stored['index'][j])}; pre-train on data disjoint from the evaluation split")


def pvp_init(cfg: FinetuneConfig, base: nn.Module, test: Any, test_name: str) -> dict[str, Any]:
    """Check ``--init-from`` against this experiment; the keys its records get.

    Args:
        cfg: the experiment (``cfg.init_from`` set).
        base: the base backbone (its name and weights hash must be stage 1's).
        test: the downstream evaluation split (leak check).
        test_name: its name.

    Returns:
        ``{"init_from": ..., "init_sha256": ...}`` (the sha256 of stage 1's module tensors).
    """
    d = Path(cfg.init_from)  # type: ignore[arg-type]
    meta = read_pvp(d)
    bad = [m for m in cfg.methods if m != meta["method"]]
    if bad:
        raise ConfigError(f"--init-from {d}: its modules are {meta['method']!r} (pre-trained by "
                          f"pretrain-peft), --method asks for {bad[0]!r}")
    same_init = cfg.weights is not None or meta.get("base_init_seed", 0) == cfg.init_seed
    if cfg.backbone != meta["backbone"] or not same_init:
        raise ConfigError(f"--init-from {d}: pre-trained on --backbone {meta['backbone']} "
                          f"(random-init seed {meta.get('base_init_seed')}), this run is "
                          f"--backbone {cfg.backbone} (seed {cfg.init_seed})")
    if getattr(base, "weights_sha256", None) != meta["weights_sha256"]:
        raise ConfigError(f"--init-from {d}: pre-trained on backbone {meta['backbone']} with "
                          f"weights sha256 {meta['weights_sha256']}, this run's is "
                          f"{getattr(base, 'weights_sha256', None)}")
    check_leak(d, meta, test, test_name, cfg.data)
    return {"init_from": str(d), "init_sha256": meta["adapter_sha256"]}


def init_modules(model: nn.Module, pvp_dir: str | Path) -> str:
    """Copy stage 1's module tensors into ``model``'s (just applied) stage; its sha256."""
    from fmlab.peft import init_from_adapter

    meta = read_pvp(pvp_dir)
    try:
        return init_from_adapter(model, Path(pvp_dir) / meta["adapter"])
    except ConfigError as e:
        raise ConfigError(f"--init-from {pvp_dir}: {e}") from None
