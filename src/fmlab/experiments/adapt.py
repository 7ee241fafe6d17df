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

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import atomic_write, write_json

DEFAULT_TEMPLATES = ["a photo of a {}."]
VIEW_METHODS = {"gda", "tip", "tipf"}  # methods that can use augmented training views


@dataclass
class AdaptConfig:
    backbone: str | None  # a registry name; None when clip_model gives the features
    data: str
    out: Path
    weights: str | None = None
    methods: list[str] = field(default_factory=lambda: ["ncm", "knn", "linear", "gda", "tip", "tipf"])
    shots: list[int | str] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    text_encoder: str | None = None
    templates: str | None = None
    views: int = 0
    test_split: str | None = None
    data_root: str | None = None
    db: Path | None = None
    progress: bool | None = None
    clip_model: str | None = None  # open_clip:<arch> or a `fmlab clip train` folder: joint space


def _needs_zeroshot(methods: list[str]) -> bool:
    return any(m == "zeroshot" or m.endswith("+zs") for m in methods)


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
    if "coop" in cfg.methods:
        raise ConfigError("method 'coop' learns prompts for an image-text model: pass "
                          "--clip-model RUN_DIR|open_clip:<arch> instead of --backbone")
    return create_backbone(cfg.backbone, weights=cfg.weights), None


def _split_rows(labels, shots, seeds, class_names) -> np.ndarray:
    """Union of the train and validation rows of every (shots, seed) split of the sweep."""
    from fmlab.adapt.splits import make_split

    rows = set()
    for k in shots:
        for seed in seeds:
            sp = make_split(labels, k, seed, class_names=class_names, n_classes=len(class_names))
            rows.update(np.asarray(sp.train).tolist())
            rows.update(np.asarray(sp.val).tolist())
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


def run_adapt(cfg: AdaptConfig) -> list[dict]:
    """Run the sweep and write its outputs into ``cfg.out``; return the records."""
    from fmlab.adapt.protocol import plot_accuracy_vs_shots, run_sweep, summarize
    from fmlab.data import open_source
    from fmlab.features import cached_features
    from fmlab.results import ResultsStore, new_run_id

    t0 = time.perf_counter()
    source = open_source(cfg.data, cfg.data_root)
    if not hasattr(source, "class_names") or source.class_names is None:
        raise DataError(f"{cfg.data} has no class labels; fmlab adapt needs a labelled image source")
    train = source.split("train")
    test_name = cfg.test_split or ("test" if "test" in source.splits else None)
    if test_name is None:
        raise DataError(f"{cfg.data} has no 'test' split; pass --test-split")
    test = source.split(test_name)
    bb, clip = _load_backbone(cfg)
    # Without `all`, the splits touch only a few images per class: extract just those rows (the
    # others stay zero and are never indexed), so a 1-16-shot sweep on a 60k-image source does not
    # pay for 60k forward passes.
    needed = None if "all" in cfg.shots else _split_rows(train.labels, cfg.shots, cfg.seeds, source.class_names)
    ftrain = _train_features(bb, train, needed, 0, cfg.progress)
    ftest = cached_features(bb, test, progress=cfg.progress)
    fviews = None
    if cfg.views and VIEW_METHODS & {m.split("+")[0] for m in cfg.methods}:
        fviews = _train_features(bb, train, needed, cfg.views, cfg.progress).features
    zs = None
    if _needs_zeroshot(cfg.methods):
        if not cfg.text_encoder and clip is None:
            raise ConfigError("zero-shot methods need --text-encoder (e.g. open_clip:<arch> or "
                              "text:minilm) or --clip-model")
        zs = zeroshot_weights(clip if clip is not None else cfg.text_encoder,
                              list(source.class_names), cfg.templates)
        if zs.shape[1] != ftrain.features.shape[-1]:
            raise ConfigError(
                f"text encoder {cfg.text_encoder} gives {zs.shape[1]}-d class weights but backbone "
                f"{bb.name} gives {ftrain.features.shape[-1]}-d features; use the two towers of one model"
            )
    out = Path(cfg.out)
    records = run_sweep(
        ftrain.features, ftrain.labels, ftest.features, ftest.labels, cfg.methods,
        shots=tuple(cfg.shots), seeds=tuple(cfg.seeds), train_view_features=fviews,
        zeroshot_weights=zs, class_names=source.class_names, split_dir=out / "splits",
        method_params={"coop": {"model": clip, "class_names": list(source.class_names)}}
        if "coop" in cfg.methods else None,
    )
    protocol = {
        "backbone": bb.name, "weights_sha256": bb.weights_sha256, "preprocess": bb.preprocess.to_dict(),
        "source": cfg.data, "train_content_hash": train.content_hash, "test_split": test_name,
        "test_content_hash": test.content_hash, "views": cfg.views,
        "text_encoder": cfg.text_encoder or (f"{cfg.clip_model} (text tower)" if clip else None),
        "clip_model": cfg.clip_model,
        "templates": cfg.templates or (DEFAULT_TEMPLATES if zs is not None else None),
        **{k: source.metadata[k] for k in ("variant", "warning") if k in source.metadata},
    }
    for r in records:
        r["protocol"] = protocol
    write_json(out / "results.json", records)
    summary = summarize(records)
    header = (f"# fmlab adapt: {bb.name} on {cfg.data}\n\n"
              f"Accuracy (%) on the {test_name} split, mean ± std over seeds {cfg.seeds}; "
              f"train/val drawn from the train split only.\n")
    if "warning" in source.metadata:
        header += f"\nNote: {source.metadata['warning']}.\n"
    with atomic_write(out / "summary.md", "w") as f:
        f.write(header + "\n" + summary + "\n")
    plot_accuracy_vs_shots(records, out / "accuracy_vs_shots.png")
    if cfg.db is not None:
        run_id = new_run_id()
        rows = []
        for r in records:
            for metric in ("accuracy", "mean_per_class_recall"):
                rows.append({
                    "run_id": run_id, "task": "adapt", "source": f"{cfg.data}:{test_name}",
                    "split_hash": r["split_sha256"], "backbone": bb.name, "weights_hash": bb.weights_sha256,
                    "method": r["method"], "hyperparameters": r.get("hyperparameters"), "seed": r["seed"],
                    "metric": metric, "value": r[metric], "seconds": r["fit_seconds"],
                    "extra": {"shots": r["shots"], "train_content_hash": train.content_hash,
                              "test_content_hash": test.content_hash, "views": cfg.views},
                })
        ResultsStore(cfg.db).append(rows)
    write_json(out / "run.json", {"seconds": round(time.perf_counter() - t0, 2),
                                  "feature_cache": {"train": ftrain.meta.get("cache"),
                                                    "test": ftest.meta.get("cache")},
                                  **protocol})
    return records
