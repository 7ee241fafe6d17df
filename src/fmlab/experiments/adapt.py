"""The few-shot adaptation experiment behind ``fmlab adapt`` and ``fmlab demo``.

Features come from the content-addressed cache (computed once per backbone × source × views);
the sweep over methods × shots × seeds runs on them with split files drawn from the train split
only; outputs are ``results.json``, ``summary.md``, ``accuracy_vs_shots.png`` and rows in the
results store, each carrying its protocol.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.adapt.registry import default_methods, get_method
from fmlab.errors import ConfigError
from fmlab.utils.io import atomic_write, write_json
from fmlab.utils.validation import non_negative_int

DEFAULT_TEMPLATES = ["a photo of a {}."]

# How `fmlab adapt` provides each input a method may declare in its class's `requires`.
_HOW_TO_PROVIDE = {
    "zeroshot_weights": "zero-shot class weights: pass --text-encoder (e.g. open_clip:<arch> or "
                        "text:minilm) or --clip-model",
    "model": "an image-text model: pass --clip-model RUN_DIR|open_clip:<arch> instead of "
             "--backbone (its image embeddings are then the features)",
    "meta": "a meta-trained initialisation: pass --meta META_DIR (from fmlab adapt meta-train)",
}


@dataclass
class AdaptConfig:
    """What ``fmlab adapt`` runs.

    Attributes:
        backbone: a registry name; None when ``clip_model`` gives the features.
        data: the labelled source spec.
        out: the output folder.
        weights: the backbone's weights file.
        methods: method names (None: the registry's default sweep).
        shots, seeds: the sweep's shots per class and split seeds.
        text_encoder, templates: the zero-shot weights' text encoder and prompt templates.
        views: augmented views per training image (0: none), for methods that use views.
        test_split, data_root: the evaluation split and the named-dataset folder.
        db: the results store (None: do not record).
        progress: show extraction progress.
        clip_model: ``open_clip:<arch>`` or a ``fmlab clip train`` folder (the joint space).
        init_seed: seed of the backbone's random init when no ``weights`` are given (recorded
            in the protocol); None draws it from the global RNG.
        meta: a ``fmlab adapt meta-train`` folder, for the methods that require one (GRAM).
        base_to_new: fit on the base half of the classes, also score the new half
            (:func:`fmlab.adapt.transfer.run_base_to_new`).
        transfer_to: a labelled source whose test split each fitted method is also scored on
            (:func:`fmlab.adapt.transfer.run_cross_dataset`).
    """

    backbone: str | None
    data: str
    out: Path
    weights: str | None = None
    methods: list[str] | None = None
    shots: list[int | str] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    text_encoder: str | None = None
    templates: str | None = None
    views: int = 0
    test_split: str | None = None
    data_root: str | None = None
    db: Path | None = None
    progress: bool | None = None
    clip_model: str | None = None
    init_seed: int | None = 0
    meta: str | None = None
    base_to_new: bool = False
    transfer_to: str | None = None

    def __post_init__(self) -> None:
        if self.methods is None:
            self.methods = default_methods()


def _check_config(cfg: AdaptConfig) -> None:
    """Refuse bad values and unsatisfiable methods before any model is loaded or image read."""
    non_negative_int("--views", cfg.views)
    if cfg.base_to_new and cfg.transfer_to:
        raise ConfigError("give --base-to-new or --transfer-to, not both")
    if cfg.base_to_new or cfg.transfer_to:
        from fmlab.adapt.transfer import check_transferable

        check_transferable(cfg.methods, "--base-to-new" if cfg.base_to_new else "--transfer-to")
    available = {"class_names"}
    if cfg.clip_model:
        available |= {"model", "zeroshot_weights"}
    if cfg.text_encoder:
        available.add("zeroshot_weights")
    if cfg.meta:
        available.add("meta")
    for m in cfg.methods:
        for key in get_method(m).missing(available):
            how = _HOW_TO_PROVIDE.get(key, f"the input {key!r}, which fmlab adapt cannot provide")
            raise ConfigError(f"method {m!r} needs {how}")


def _needs(methods: list[str], key: str) -> bool:
    return any(key in get_method(m).requires for m in methods)


def zeroshot_weights(text_encoder, class_names: list[str], templates: str | None) -> torch.Tensor:
    """Class weights from a text encoder name, or from an image-text model's own text tower."""
    from fmlab.adapt.zeroshot import build_zeroshot_weights
    from fmlab.models.text import create_text_encoder

    if isinstance(text_encoder, str):
        enc = create_text_encoder(text_encoder).encode
    else:
        enc = text_encoder.encode_text
    with torch.no_grad():
        return build_zeroshot_weights(class_names, templates or DEFAULT_TEMPLATES,
                                      lambda texts: enc(texts).float())


def _load_backbone(cfg: AdaptConfig):
    """(feature backbone, image-text model or None) from --backbone or --clip-model."""
    from fmlab.models import create_backbone

    if cfg.clip_model:
        if cfg.backbone:
            raise ConfigError("give --backbone or --clip-model, not both (--clip-model's image "
                              "embeddings are the features)")
        if cfg.text_encoder:
            raise ConfigError("--text-encoder: with --clip-model the model's own text tower "
                              "gives the zero-shot weights; drop --text-encoder")
        from fmlab.multimodal.io import joint_image_backbone, load_image_text_model

        model = load_image_text_model(cfg.clip_model)
        return joint_image_backbone(model), model
    if not cfg.backbone:
        raise ConfigError("--backbone is required (or --clip-model for an image-text model)")
    return create_backbone(cfg.backbone, weights=cfg.weights,
                           seed=cfg.init_seed if cfg.weights is None else None), None


def _split_rows(labels, shots, seeds, class_names, base_to_new: bool = False) -> np.ndarray:
    """Union of the train and validation rows of every (shots, seed) split of the sweep (with
    ``base_to_new``: the splits of the base classes' images, as that sweep draws them)."""
    from fmlab.adapt.splits import make_split
    from fmlab.adapt.transfer import base_new_split

    index = np.arange(len(labels))
    if base_to_new:
        base = base_new_split(len(class_names))[0]
        index = np.flatnonzero(np.isin(labels, base))
        labels, class_names = labels[index], list(class_names)[:len(base)]
    rows = set()
    for k in shots:
        for seed in seeds:
            sp = make_split(labels, k, seed, class_names=class_names, n_classes=len(class_names))
            rows.update(index[np.asarray(sp.train, dtype=np.int64)].tolist())
            rows.update(index[np.asarray(sp.val, dtype=np.int64)].tolist())
    return np.asarray(sorted(rows), dtype=np.int64)


def _train_features(bb, train, rows: np.ndarray | None, views: int, progress):
    """Features of the train split, or of its ``rows`` only, scattered into a full-size tensor."""
    from fmlab.data.sources import SubsetSplit
    from fmlab.features import FeatureSet, cached_features

    if rows is None:
        return cached_features(bb, train, n_views=views, seed=0, progress=progress)
    sub = cached_features(bb, SubsetSplit(train, rows), n_views=views, seed=0, progress=progress)
    full = torch.zeros((*sub.features.shape[:-2], len(train), sub.features.shape[-1]))
    full[..., torch.from_numpy(rows), :] = sub.features
    return FeatureSet(full, torch.from_numpy(train.labels), {**sub.meta, "rows_extracted": int(len(rows))})


def _features(cfg: AdaptConfig, bb, train, test, class_names):
    """(train, test, train views or None) features; views only when a selected method uses them."""
    from fmlab.adapt.registry import uses_views
    from fmlab.features import cached_features

    # Without `all`, the splits touch only a few images per class: extract just those rows (the
    # others stay zero and are never indexed), so a 1-16-shot sweep on a 60k-image source does not
    # pay for 60k forward passes.
    needed = None if "all" in cfg.shots else _split_rows(train.labels, cfg.shots, cfg.seeds,
                                                         class_names, cfg.base_to_new)
    ftrain = _train_features(bb, train, needed, 0, cfg.progress)
    ftest = cached_features(bb, test, progress=cfg.progress)
    fviews = None
    if cfg.views and uses_views(cfg.methods):
        fviews = _train_features(bb, train, needed, cfg.views, cfg.progress).features
    return ftrain, ftest, fviews


def _zeroshot(cfg: AdaptConfig, clip, class_names, bb, dim: int) -> torch.Tensor | None:
    """Zero-shot class weights when a selected method requires them, else None."""
    if not _needs(cfg.methods, "zeroshot_weights"):
        return None
    zs = zeroshot_weights(clip if clip is not None else cfg.text_encoder, list(class_names),
                          cfg.templates)
    if zs.shape[1] != dim:
        raise ConfigError(
            f"text encoder {cfg.text_encoder} gives {zs.shape[1]}-d class weights but backbone "
            f"{bb.name} gives {dim}-d features; use the two towers of one model")
    return zs


def _meta(cfg: AdaptConfig, test, test_name: str):
    """The meta-trained initialisation a selected method requires, after the leak check: its
    meta-training images must not include any image of the downstream test split."""
    if not (cfg.meta and _needs(cfg.methods, "meta")):
        return None
    from fmlab.adapt.gram import load_gram_meta
    from fmlab.data.hashing import image_content_hashes

    meta = load_gram_meta(cfg.meta)
    seen = set(meta.image_hashes)
    hits = [i for i, h in enumerate(image_content_hashes(test)) if h in seen]
    if hits:
        raise ConfigError(
            f"--meta {cfg.meta}: its meta-training images ({meta.info.get('source')}) include "
            f"{len(hits)} image(s) of the {cfg.data} {test_name} split (first at test index "
            f"{hits[0]}); meta-train on data disjoint from the test split")
    return meta


def _protocol(cfg: AdaptConfig, bb, source, train, test, test_name: str, clip, zs) -> dict[str, Any]:
    """The protocol stored with every record of ``results.json``."""
    return {
        "backbone": bb.name, "weights_sha256": bb.weights_sha256, "preprocess": bb.preprocess.to_dict(),
        "source": cfg.data, "train_content_hash": train.content_hash, "test_split": test_name,
        "test_content_hash": test.content_hash, "views": cfg.views,
        "text_encoder": cfg.text_encoder or (f"{cfg.clip_model} (text tower)" if clip else None),
        "clip_model": cfg.clip_model, "meta": cfg.meta,
        "evaluation": ("base_to_new" if cfg.base_to_new else
                       f"cross_dataset:{cfg.transfer_to}" if cfg.transfer_to else "few_shot"),
        "templates": cfg.templates or (DEFAULT_TEMPLATES if zs is not None else None),
        **{k: source.metadata[k] for k in ("variant", "warning") if k in source.metadata},
    }


def _write_reports(cfg: AdaptConfig, records: list[dict], bb, source, test_name: str) -> None:
    """``results.json``, ``summary.md`` and ``accuracy_vs_shots.png`` in ``cfg.out``."""
    from fmlab.adapt.protocol import plot_accuracy_vs_shots, summarize

    out = Path(cfg.out)
    write_json(out / "results.json", records)
    header = (f"# fmlab adapt: {bb.name} on {cfg.data}\n\n"
              f"Accuracy (%) on the {test_name} split, mean ± std over seeds {cfg.seeds}; "
              f"train/val drawn from the train split only.\n")
    if "warning" in source.metadata:
        header += f"\nNote: {source.metadata['warning']}.\n"
    body = summarize(records)
    if records and records[0].get("evaluation") in ("base_to_new", "cross_dataset"):
        from fmlab.adapt.transfer import summarize_transfer

        what = ("Base-to-new: fitted on the base classes only (the table above: base test images "
                "among the base classes); new = the unseen classes' test images among the new "
                "classes; H = harmonic mean." if cfg.base_to_new else
                f"Cross-dataset: fitted on {cfg.data} (the table above), scored on "
                f"{cfg.transfer_to}'s test split among its classes.")
        body += f"\n\n{what}\n\n{summarize_transfer(records)}"
    with atomic_write(out / "summary.md", "w") as f:
        f.write(header + "\n" + body + "\n")
    plot_accuracy_vs_shots(records, out / "accuracy_vs_shots.png")


def run_adapt(cfg: AdaptConfig) -> list[dict]:
    """Run the sweep and write its outputs into ``cfg.out``.

    Args:
        cfg: what to run.

    Returns:
        The sweep's records (as in ``results.json``, each with its ``protocol``).
    """
    from fmlab.adapt.protocol import run_sweep
    from fmlab.data.labelled import open_labelled
    from fmlab.results import Protocol, ResultsStore

    t0 = time.perf_counter()
    _check_config(cfg)
    source, train, test, test_name = open_labelled(cfg.data, cfg.data_root, cfg.test_split,
                                                   command="fmlab adapt")
    bb, clip = _load_backbone(cfg)
    ftrain, ftest, fviews = _features(cfg, bb, train, test, source.class_names)
    zs = _zeroshot(cfg, clip, source.class_names, bb, ftrain.features.shape[-1])
    meta = _meta(cfg, test, test_name)
    sweep = dict(shots=tuple(cfg.shots), seeds=tuple(cfg.seeds), train_view_features=fviews,
                 zeroshot_weights=zs, class_names=source.class_names, model=clip, meta=meta,
                 split_dir=Path(cfg.out) / "splits")
    if cfg.base_to_new or cfg.transfer_to:
        from fmlab.experiments.adapt_transfer import run_transfer

        records, metrics = run_transfer(cfg, bb, clip, ftrain, ftest, sweep)
    else:
        records, metrics = run_sweep(ftrain.features, ftrain.labels, ftest.features,
                                     ftest.labels, cfg.methods, **sweep), ()
    protocol = _protocol(cfg, bb, source, train, test, test_name, clip, zs)
    for r in records:
        r["protocol"] = protocol
    _write_reports(cfg, records, bb, source, test_name)
    if cfg.db is not None:
        ResultsStore(cfg.db).record(
            "adapt", Protocol.of(cfg.data, test_name, backbone=bb, train=train, test=test, views=cfg.views),
            records, ("accuracy", "mean_per_class_recall", *metrics), extra_keys=("shots",),
            seconds_key="fit_seconds")
    write_json(Path(cfg.out) / "run.json", {"seconds": round(time.perf_counter() - t0, 2),
                                            "feature_cache": {"train": ftrain.meta.get("cache"),
                                                              "test": ftest.meta.get("cache")},
                                            **protocol})
    return records
