"""Adapt-then-Unlearn end to end (``fmlab gan unlearn``): split, adapt, unlearn, measure, save.

Stage 0 splits G's samples with a classifier (or takes user-given sets), stage 1 adapts copies
of G to the negatives with EWC (θ_N^(1..M), one per seed), stage 2 trains the original G on the
positives with a repulsion from θ_N. Metrics, before and after: the share of samples the
classifier puts in the target class, the class histogram, and FID (``lenet5_mnist`` features)
of all samples and of the positive samples against the real images of the other classes.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.gan import create_discriminator, to_gan_input
from fmlab.gan.nets.base import Discriminator, Generator
from fmlab.gan.unlearn import (
    REPULSIONS,
    Repulsion,
    StageConfig,
    check_same_names,
    ewc_penalty,
    extrapolate,
    fisher_diagonal,
    param_snapshot,
    predict,
    split_by_class,
    train_stage,
)
from fmlab.gan.unlearn.guided import GuidedConfig, build_guided, guide_classifier_fn
from fmlab.gan.unlearn.latents import combine
from fmlab.utils.io import jsonable
from fmlab.utils.validation import finite_float

CLASSIFIER_WEIGHTS = {"lenet5_mnist": "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth"}


@dataclass
class UnlearnConfig:
    generator: str
    target_class: int
    out: Path
    discriminator: str | None = None
    arch: str | None = None
    arch_kwargs: dict | None = None
    classifier: str = "lenet5_mnist"
    classifier_weights: str | None = None
    negatives: str | None = None      # npz with uint8 'images'
    positives: str | None = None
    repulsion: str = "nl2"
    gamma: float = 1.0
    ewc_lambda: float = 1.0
    fisher_samples: int = 32
    adapted_models: int = 1           # M
    n_split: int = 5000               # samples drawn for stage 0
    n_eval: int = 5000                # samples drawn for the metrics
    reference: str = "mnist:test"
    seed: int = 0
    adapt: StageConfig = field(default_factory=StageConfig)
    # stage 2: Adam 2e-4 for G and D (issue 8's tuning on held-out digits 3 and 5 against MNIST
    # train images); 2,000 steps, of which the guided stopping rule keeps the chosen one
    # (issue 24's tuning, docs/results/unlearn_mnist/README.md)
    unlearn: StageConfig = field(default_factory=lambda: StageConfig(steps=2000, lr_g=2e-4,
                                                                     lr_d=2e-4))
    # guided stage 2 (anchor on positive latents, negative push, stopping step chosen on
    # validation latents by a guide CNN trained on MNIST train; guided.guide_data null = paper)
    guided: GuidedConfig = field(default_factory=GuidedConfig)
    eval_seed: int = 12345            # z of the metrics; never used for any training choice
    data_root: str | None = None
    db: Path | None = None

    def __post_init__(self) -> None:
        REPULSIONS.get(self.repulsion)
        for k in ("fisher_samples", "adapted_models"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("n_split", "n_eval"):
            if getattr(self, k) < 10:
                raise ConfigError(f"{k} must be >= 10, got {getattr(self, k)}")
        # NaN / inf would train to NaN weights and write them as a success (probe F1)
        self.gamma = finite_float("--gamma", self.gamma, low=0.0)
        self.ewc_lambda = finite_float("--ewc-lambda", self.ewc_lambda, low=0.0)
        if self.target_class < 0:
            raise ConfigError(f"--target-class must be >= 0, got {self.target_class}")


# --------------------------------------------------------------------------------- loading


def load_nets(cfg: UnlearnConfig) -> tuple[Generator, Discriminator, dict[str, Any]]:
    """G (from any form :func:`load_generator` takes) and its D: ``--discriminator FILE`` (same
    ``--arch``), or the D of the run directory's latest checkpoint."""
    from fmlab.gan.io import RUN_JSON, load_generator

    G, info = load_generator(cfg.generator, cfg.arch, cfg.arch_kwargs)
    if cfg.discriminator is not None:
        arch = cfg.arch or info["arch"]
        kw = cfg.arch_kwargs if cfg.arch is not None else {}
        D = create_discriminator(arch, weights=cfg.discriminator, **(kw or {}))
    else:
        D = _run_dir_discriminator(Path(cfg.generator), RUN_JSON)
    return G, D, info


def _run_dir_discriminator(run_dir: Path, run_json: str) -> Discriminator:
    from safetensors.torch import load_file

    from fmlab.engine.checkpoint import latest_checkpoint

    ref = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if ref is None or not (run_dir / run_json).is_file():
        raise ConfigError(f"{run_dir}: no discriminator; pass --discriminator FILE (e.g. the "
                          "MLP D--300.ckpt) or a run directory with checkpoints")
    spec = json.loads((run_dir / run_json).read_text())["discriminator"]
    D = create_discriminator(spec["arch"], **spec["kwargs"])
    sd = load_file(str(ref.weights))
    D.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith("D.")})
    return D


def load_classifier(name: str, weights: str | None, data_root: str | None):
    """A backbone with a classifier head, in eval mode; weights default to the known file."""
    from fmlab.data import data_root as root_of
    from fmlab.models import create_backbone

    if weights is None and name in CLASSIFIER_WEIGHTS:
        p = root_of(data_root) / CLASSIFIER_WEIGHTS[name]
        if not p.is_file():
            raise ModelError(f"classifier weights not found: {p}; pass --classifier-weights "
                             "or set FMLAB_DATA")
        weights = str(p)
    if weights is None:
        raise ConfigError(f"--classifier {name}: give --classifier-weights (a random classifier "
                          "cannot say which samples are negatives)")
    bb = create_backbone(name, weights=weights)
    if getattr(bb, "head", None) is None:
        raise ModelError(f"--classifier {name}: the backbone has no classifier head")
    return bb.eval()


def classifier_fn(bb) -> Any:
    """uint8 images → numpy logits, without gradients."""
    def fn(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return bb(torch.as_tensor(np.ascontiguousarray(images))).numpy()
    return fn


def load_image_set(path: str, what: str) -> np.ndarray:
    from fmlab.gan.io import load_fake_npz

    images, _ = load_fake_npz(path)
    if len(images) < 2:
        raise DataError(f"{what} {path}: needs at least 2 images")
    return images


# ------------------------------------------------------------------------------- metrics


class Evaluator:
    """Target share, class histogram and FID of a generator against the real non-target images.

    The reference features are computed once; every generator is scored on the same z (``seed``).
    """

    def __init__(self, classifier, target_class: int, reference: str = "mnist:test",
                 data_root: str | None = None, n: int = 5000, seed: int = 12345) -> None:
        from fmlab.experiments.gan_eval import make_extractor, open_reference

        self.classify = classifier_fn(classifier)
        self.target, self.n, self.seed = int(target_class), int(n), int(seed)
        self.extractor = make_extractor("lenet5_mnist", None, data_root)
        split = open_reference(reference, data_root)
        if split.labels is None:
            raise DataError(f"reference {reference}: needs labels to drop the target class")
        keep = np.flatnonzero(np.asarray(split.labels) != self.target)
        self.ref_feats = np.concatenate([f for _, f, _ in self.extractor.iter_split(split, keep)])
        self.reference = reference
        self.protocol = {"extractor": self.extractor.protocol, "reference": reference,
                         "reference_n": int(len(keep)),
                         "reference_hash": getattr(split, "content_hash", None),
                         "n_fake": self.n, "z_seed": self.seed}

    def __call__(self, G: Generator) -> dict[str, Any]:
        from fmlab.gan.io import generate_images
        from fmlab.metrics import fid

        images, _ = generate_images(G, self.n, self.seed)
        pred = predict(self.classify, images)
        feats = self.extractor(images)
        pos = pred != self.target
        k = max(10, int(pred.max()) + 1)
        return {
            "target_share": float(np.mean(pred == self.target)),
            "histogram": np.bincount(pred, minlength=k).tolist(),
            "fid": float(fid(self.ref_feats, feats)),
            "fid_positives": float(fid(self.ref_feats, feats[pos])) if pos.sum() > 2 else None,
        }


# -------------------------------------------------------------------------------- stages


def adapt_negatives(G: Generator, D: Discriminator, negatives: torch.Tensor, cfg: StageConfig,
                    ewc_lambda: float, fisher_samples: int, seed: int
                    ) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Stage 1 on copies of G and D: returns θ_N and the logs (G and D are not touched)."""
    Ga, Da = copy.deepcopy(G), copy.deepcopy(D)
    theta_g = param_snapshot(G)
    fisher = fisher_diagonal(Ga, Da, fisher_samples, torch.Generator().manual_seed(seed))

    def penalty(m):
        e = ewc_penalty(m, theta_g, fisher, ewc_lambda)
        return e, {"ewc": float(e.detach())}

    logs = train_stage(Ga, Da, negatives, cfg, penalty if ewc_lambda > 0 else None, seed)
    return param_snapshot(Ga), logs


def unlearn_positives(G: Generator, D: Discriminator, positives: torch.Tensor,
                      anchors: list[dict[str, torch.Tensor]] | None, cfg: StageConfig,
                      kind: str, gamma: float, seed: int, extra=None, select=None
                      ) -> tuple[Generator, list[dict[str, float]], float | None]:
    """Stage 2 on copies: G trained on positives with the repulsion (none when ``anchors`` is
    None: the fine-tune baseline) plus ``extra`` (the latent terms, a penalty) and, with a
    ``select`` callback (:class:`~fmlab.gan.unlearn.stopping.SelectStep`), the chosen step's
    weights instead of the last. Returns (new G, logs, d₀)."""
    Gu, Du = copy.deepcopy(G), copy.deepcopy(D)
    rep = Repulsion(Gu, anchors, kind, gamma) if anchors else None
    logs = train_stage(Gu, Du, positives, cfg, combine([rep, extra]), seed,
                       [select] if select is not None else [])
    if select is not None:
        select.load_best(Gu)
    return Gu, logs, (rep.d0 if rep else None)


def prepare_guide(cfg: GuidedConfig, data_root: str | None, target_class: int):
    """(guide, reference features of the other classes, guide train accuracy), or Nones when
    ``cfg.guide_data`` is None (the paper's setup)."""
    from fmlab.gan.unlearn.guide import guide_from_split
    from fmlab.gan.unlearn.guided import reference_features

    if cfg.guide_data is None:
        return None, None, None
    guide, acc = guide_from_split(cfg.guide_data, data_root, cfg.guide)
    ref = (reference_features(guide, cfg.guide_data, data_root, target_class)
           if cfg.select_every > 0 else None)
    return guide, ref, acc


def extrapolated(G: Generator, theta_n: dict[str, torch.Tensor], gamma: float) -> Generator:
    """A copy of G with parameters θ_N + γ(θ_G − θ_N)."""
    Ge = copy.deepcopy(G)
    new = extrapolate(theta_n, param_snapshot(G), gamma)
    with torch.no_grad():
        for k, p in Ge.named_parameters():
            if k in new:
                p.copy_(new[k])
    return Ge


# ----------------------------------------------------------------------------------- run


def stage0_sets(cfg: UnlearnConfig, G: Generator, split_clf) -> tuple[Any, Any]:
    """Stage 0: the negatives and positives, from files or by splitting G's samples with
    ``split_clf`` (the guide when there is one, else the classifier)."""
    neg = load_image_set(cfg.negatives, "--negatives") if cfg.negatives is not None else None
    pos = load_image_set(cfg.positives, "--positives") if cfg.positives is not None else None
    if neg is None or pos is None:
        split = split_by_class(G, split_clf, cfg.target_class, cfg.n_split, cfg.seed)
        neg = split.negatives if neg is None else neg
        pos = split.positives if pos is None else pos
    return neg, pos


def _guide_record(gcfg: GuidedConfig, guide, guide_acc, terms, select) -> dict[str, Any] | None:
    """What the report says about the guided stage 2 (None: the paper's setup)."""
    if guide is None:
        return None
    latents = None if not hasattr(terms, "sets") else {
        "positive": len(terms.sets.z_pos), "negative": len(terms.sets.z_neg)}
    return {"data": gcfg.guide_data, "train_accuracy": guide_acc, "latents": latents,
            "selection": None if select is None else select.summary()}


def export_run(cfg: UnlearnConfig, info: dict[str, Any], out: Path,
               gens: dict[str, Generator]) -> dict[str, str]:
    """Write the unlearned generator (``gens["after"]``) and one sample grid per generator;
    returns the grid file names."""
    from fmlab.gan import sample_grid
    from fmlab.gan.io import export_generator

    spec = {"arch": info["arch"], "kwargs": info.get("kwargs") or {}}
    export_generator(gens["after"], spec, out, writer="fmlab.experiments.unlearn",
                     source_generator=str(cfg.generator), target_class=cfg.target_class,
                     repulsion=cfg.repulsion, gamma=cfg.gamma)
    grids = {}
    for name, g in gens.items():
        grids[name] = f"samples_{name}.png"
        sample_grid(g, 64, out / grids[name], seed=cfg.seed, nrow=8)
    return grids


def run_unlearn(cfg: UnlearnConfig) -> dict[str, Any]:
    """All stages; writes generator.safetensors(+.json), samples_{before,adapted,after}.png,
    report.json and results-store rows under ``cfg.out``; returns the report."""
    from fmlab.utils.io import write_json

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)  # created by the first write, after every input has been read and checked
    G, D, info = load_nets(cfg)
    bb = load_classifier(cfg.classifier, cfg.classifier_weights, cfg.data_root)
    clf = classifier_fn(bb)
    guide, ref_feats, guide_acc = prepare_guide(cfg.guided, cfg.data_root, cfg.target_class)
    split_clf = clf if guide is None else guide_classifier_fn(guide)

    neg, pos = stage0_sets(cfg, G, split_clf)
    shape = (G.img_shape[0], G.img_shape[1])
    neg_t = to_gan_input(neg, channels=shape[0], size=shape[1])
    pos_t = to_gan_input(pos, channels=shape[0], size=shape[1])

    evaluator = Evaluator(bb, cfg.target_class, cfg.reference, cfg.data_root, cfg.n_eval,
                          cfg.eval_seed)
    before = evaluator(G)

    # Stage 1
    anchors, adapt_logs = [], []
    for m in range(cfg.adapted_models):
        theta_n, logs = adapt_negatives(G, D, neg_t, cfg.adapt, cfg.ewc_lambda,
                                        cfg.fisher_samples, cfg.seed + 1000 * m)
        anchors.append(theta_n)
        adapt_logs.append(logs)
    adapted = extrapolated(G, anchors[0], 0.0)  # θ_N^(1) itself, for its metrics and grid
    adapted_metrics = evaluator(adapted)

    # Stage 2
    terms = select = None
    if guide is not None:
        terms, select = build_guided(G, guide, ref_feats, cfg.target_class, cfg.guided,
                                     cfg.seed, cfg.eval_seed)
    Gu, unlearn_logs, d0 = unlearn_positives(G, D, pos_t, anchors, cfg.unlearn, cfg.repulsion,
                                             cfg.gamma, cfg.seed, terms, select)
    after = evaluator(Gu)
    check_same_names(G.state_dict(), Gu.state_dict(), "unlearned generator")

    grids = export_run(cfg, info, out, {"before": G, "adapted": adapted, "after": Gu})

    report = {
        "config": jsonable(asdict(cfg)),
        "generator": {k: info.get(k) for k in ("arch", "kwargs", "weights", "weights_sha256")},
        "stage0": {"negatives": int(len(neg)), "positives": int(len(pos)),
                   "from": {"negatives": cfg.negatives or "classifier",
                            "positives": cfg.positives or "classifier"}},
        "stage1": {"logs": adapt_logs},
        "stage2": {"d0": d0, "distance_normalisation": "d / d0, d0 = d(theta_G, theta_N)",
                   "logs": unlearn_logs,
                   "guide": _guide_record(cfg.guided, guide, guide_acc, terms, select)},
        "metrics": {"before": before, "adapted": adapted_metrics, "after": after},
        "protocol": evaluator.protocol,
        "files": {"generator": "generator.safetensors", "grids": grids},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "report.json", report)
    if cfg.db is not None:
        _store(cfg, report)
    return report


def _store(cfg: UnlearnConfig, report: dict[str, Any]) -> None:
    """Before/after target share and FIDs as ``gan_unlearn`` rows of the results store."""
    from types import SimpleNamespace

    from fmlab.results import Protocol, ResultsStore

    proto = report["protocol"]
    ext = proto["extractor"]
    backbone = SimpleNamespace(name=ext.get("backbone") or ext.get("extractor"),
                               weights_sha256=ext.get("weights_sha256"))
    protocol = Protocol.of(cfg.reference, split_hash=proto.get("reference_hash"), backbone=backbone)
    hp = {"repulsion": cfg.repulsion, "gamma": cfg.gamma, "ewc_lambda": cfg.ewc_lambda,
          "target_class": cfg.target_class, "adapted_models": cfg.adapted_models,
          "adapt_steps": cfg.adapt.steps, "unlearn_steps": cfg.unlearn.steps}
    records = [{"method": cfg.repulsion, "hyperparameters": hp, "seed": cfg.seed,
                "metric": f"{metric}_{when}", "value": report["metrics"][when][metric],
                "seconds": report["seconds"],
                "extra": {"histogram": report["metrics"][when]["histogram"]}}
               for when in ("before", "after") for metric in ("target_share", "fid", "fid_positives")
               if report["metrics"][when][metric] is not None]
    ResultsStore(cfg.db).record("gan_unlearn", protocol, records)
