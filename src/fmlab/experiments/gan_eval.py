"""Generative metrics of a set of fake images against a reference split (``fmlab gan eval``).

The maths is :func:`fmlab.metrics.evaluate`; this module adds what a GAN run needs around it:
the reference given as ``SOURCE:SPLIT``, the known weights of the metric extractors found under
the data root (FID-LeNet needs the shipped LeNet-5), the per-class recall of a conditional
generator under the extractor's own classifier, and :func:`run_gan_eval`, the workflow behind
``fmlab gan eval`` (a generator or a fake-images file in, metrics out, rows to the results store
through :mod:`fmlab.experiments.gan_results`).

Two per-class "recalls" answer different questions about a conditional generator:

- ``class_recall`` (does it follow its labels?): for each class y, the fraction of the samples
  generated with label y that the extractor's classifier (LeNet-5 for MNIST) assigns to y —
  the classifier's recall on class y; reported as the mean over classes and per class. It is
  computed from the same forward pass as the features.
- ``iprdc`` (is each class diverse?): PRDC between the real images of class y and the fakes made
  for y (:func:`fmlab.metrics.intra_prdc`); its recall is the intra-class diversity that ADC-GAN
  claims AC-GAN loses. Logged as ``intra_precision`` / ``intra_recall`` / ``intra_density`` /
  ``intra_coverage`` (means over classes).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.experiments.gan_config import EVAL_METRICS
from fmlab.experiments.gan_results import (  # noqa: F401 - result_rows: experiments/gan.py
    flat_metrics,
    metric_protocol_of,
    metric_records,
    result_rows,
)
from fmlab.utils.validation import check, positive_int

# Extractor weights shipped in the data root (README of /work/shared/data), found by name.
KNOWN_EXTRACTOR_WEIGHTS = {
    "lenet5_mnist": "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth",
    "resnet56_cifar": "weights/resnet_cifar10/resnet56-4bfd9763.th",
}


def parse_metrics(text: str | list[str]) -> list[str]:
    """``"fid,kid"`` (or a list) → the metric names, checked against :data:`EVAL_METRICS`.

    Args:
        text: a comma list or a list of names (case-insensitive; duplicates dropped).

    Returns:
        The names in the order given.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = [m.strip().lower() for m in items if m.strip()]
    bad = [m for m in wanted if m not in EVAL_METRICS]
    if bad or not wanted:
        raise ConfigError(f"--metrics: unknown metric(s) {bad or '[]'}; choose from "
                          f"{', '.join(EVAL_METRICS)}")
    return list(dict.fromkeys(wanted))


def resolve_extractor_weights(name: str, weights: str | os.PathLike | None,
                              data_root: str | os.PathLike | None = None) -> Path | None:
    """The weights file for extractor ``name``: ``weights`` as given (a path relative to the
    data root works too), else the known file under the data root, else None (random init).

    Args:
        name: the extractor name.
        weights: a weights file given by the user, or None.
        data_root: the data root (default ``$FMLAB_DATA``).

    Returns:
        The file, or None when the extractor has no known weights there.
    """
    from fmlab.data import data_root as root_of

    root = root_of(data_root)
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return p
        if not p.is_absolute() and (root / p).is_file():
            return root / p
        raise ModelError(f"extractor weights file not found: {p} (also looked under {root})")
    rel = KNOWN_EXTRACTOR_WEIGHTS.get(name)
    if rel is not None and (root / rel).is_file():
        return root / rel
    return None


def open_reference(spec: str, data_root: str | os.PathLike | None = None):
    """``SOURCE:SPLIT`` (``mnist:test``, ``npz:PATH:test``) → an fmlab ImageSplit.

    Args:
        spec: the reference; the split must be named.
        data_root: the data root for named datasets.

    Returns:
        The split.
    """
    from fmlab.data import open_source, parse_split_spec

    source, split = parse_split_spec(spec)
    if split is None:
        raise ConfigError(f"--ref {spec!r}: name the split, e.g. mnist:test or npz:FILE:test")
    return open_source(source, data_root).split(split)


def make_extractor(name: str, weights: str | os.PathLike | None = None,
                   data_root: str | os.PathLike | None = None, batch_size: int = 500):
    """The metric feature extractor ``name`` with its known weights from the data root.

    Args:
        name: a registered extractor or backbone name.
        weights: explicit weights (default: :func:`resolve_extractor_weights`).
        data_root: the data root.
        batch_size: extraction batch size.

    Returns:
        A :class:`fmlab.metrics.FeatureExtractor`.
    """
    from fmlab.metrics import create_extractor

    # without weights the extractor warns that its values are only good for tests, and the
    # protocol records weights_sha256: null
    path = resolve_extractor_weights(name, weights, data_root)
    return create_extractor(name, weights=path, batch_size=batch_size)


def class_recall(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per class y: mean 1[argmax p(x) = y] over samples made with label y; and their mean.

    Args:
        probs: (N, K) class probabilities of the fakes under the extractor's classifier.
        labels: (N,) the labels the fakes were generated with.

    Returns:
        ``{"mean": float, "per_class": {class: recall}}``.

    Examples:
        >>> import numpy as np
        >>> class_recall(np.array([[.9, .1], [.2, .8], [.6, .4]]), np.array([0, 1, 1]))
        {'mean': 0.75, 'per_class': {0: 1.0, 1: 0.5}}
    """
    pred = np.asarray(probs).argmax(1)
    labels = np.asarray(labels)
    per_class = {int(c): float(np.mean(pred[labels == c] == c)) for c in np.unique(labels)}
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}


def check_request(images: np.ndarray, labels: np.ndarray | None, metrics: list[str] | str
                  ) -> list[str]:
    """The metric names, after the checks that need no extractor (so they fail first).

    Args:
        images: the fake images.
        labels: their labels, or None.
        metrics: the requested metrics.

    Returns:
        The parsed metric names.
    """
    wanted = parse_metrics(metrics)
    if len(images) < 2:
        raise DataError(f"need at least 2 fake images, got {len(images)}")
    if labels is None and {"ifid", "iprdc", "class_recall"} & set(wanted):
        which = [m for m in ("ifid", "iprdc", "class_recall") if m in wanted]
        raise ConfigError(f"metric(s) {', '.join(which)} need the class of every fake sample: "
                          "a conditional generator, or 'labels' in the fake-images npz")
    return wanted


def evaluate_fakes(images: np.ndarray, labels: np.ndarray | None, ref: Any, extractor: Any,
                   metrics: list[str], *, num_classes: int | None = None, seed: int = 0,
                   ref_n: int | None = None) -> dict[str, Any]:
    """Every requested metric of uint8 ``images`` against the ImageSplit ``ref``.

    ``class_recall`` is added when the fakes carry labels and the extractor's classifier has
    the generator's ``num_classes`` outputs (or when asked for explicitly).

    Args:
        images: uint8 fakes (N, H, W[, C]).
        labels: their labels, or None.
        ref: the reference split.
        extractor: the feature extractor.
        metrics: the metric names.
        num_classes: the generator's class count (for the automatic class recall).
        seed: the metrics' seed (KID subsets, ...).
        ref_n: use the first ``ref_n`` reference images.

    Returns:
        ``{metric: value, ..., "protocol": {...}}``.
    """
    from fmlab.metrics import evaluate

    wanted = check_request(images, labels, metrics)
    n_out = extractor.num_classes
    auto_recall = (labels is not None and n_out is not None and num_classes is not None
                   and n_out == num_classes)
    if "class_recall" in wanted:
        if n_out is None:
            raise ModelError(f"class_recall needs an extractor with a classifier; "
                             f"{extractor.name!r} has none")
        if labels is not None and len(labels) and int(labels.max()) >= n_out:
            raise DataError(f"class_recall: label {int(labels.max())} is outside the "
                            f"{n_out} classes of extractor {extractor.name!r}")
    do_recall = "class_recall" in wanted or auto_recall
    need_probs = "is" in wanted or do_recall
    feats, probs = extractor.extract(images, probs=need_probs)
    core = [m for m in wanted if m != "class_recall"]
    out: dict[str, Any] = {}
    if core:
        out = evaluate(feats, ref, extractor, core, fake_labels=labels, fake_probs=probs,
                       seed=seed, ref_n=ref_n or None)
        out["protocol"]["fake_input"] = "images"
    if do_recall:
        assert probs is not None and labels is not None
        out["class_recall"] = class_recall(probs, labels)
    if "protocol" not in out:
        from fmlab.metrics import metric_protocol

        out["protocol"] = metric_protocol(extractor, n_real=0, n_fake=len(images), seed=seed,
                                          reference=ref, metrics=wanted, fake_input="images")
    if do_recall:
        out["protocol"]["class_recall"] = f"argmax of {extractor.name} classifier == label"
    return {**{k: v for k, v in out.items() if k != "protocol"}, "protocol": out["protocol"]}


# ------------------------------------------------------------------------- fmlab gan eval


@dataclass
class GANEvalRequest:
    """What ``fmlab gan eval`` scores, and how.

    Attributes:
        ref: the reference split, ``SOURCE:SPLIT`` (``mnist:test``, ``npz:PATH:test``).
        features: the metric extractor (``lenet5_mnist``, ``inception_v3``, a backbone name).
        generator: a run directory, ``generator.safetensors``/``.json``, or a state dict with
            ``arch`` (exactly one of ``generator`` and ``fake_images``).
        arch: the architecture of a bare state dict.
        arch_kwargs: the architecture's options for a bare state dict.
        fake_images: an npz with uint8 ``images`` and optional ``labels``.
        features_weights: the extractor's weights (default: the known file in the data root).
        metrics: a comma list or list of :data:`EVAL_METRICS`.
        n: samples to generate (default 10000) or to take from ``fake_images`` (default all).
        ref_n: use the first ``ref_n`` reference images (None: all).
        seed: the sampling and metric seed.
        batch_size: generation and extraction batch size.
        data_root: the folder of named datasets and known weights.
        db: a results store to append to (None: none).
        image_text: an image-text model (``fmlab clip train`` run, ``open_clip:<arch>``) that
            adds CLIP-score and R-precision; caption generators only.
    """

    ref: str
    features: str
    generator: str | os.PathLike | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    fake_images: str | os.PathLike | None = None
    features_weights: str | os.PathLike | None = None
    metrics: str | list[str] = "fid,kid,prdc"
    n: int | None = None
    ref_n: int | None = None
    seed: int = 0
    batch_size: int = 500
    data_root: str | os.PathLike | None = None
    db: str | os.PathLike | None = None
    image_text: str | os.PathLike | None = None

    def validate(self) -> list[str]:
        """Check the request before anything is read; return the metric names.

        Returns:
            The parsed metric names.
        """
        if (self.generator is None) == (self.fake_images is None):
            raise ConfigError("give exactly one of --generator or --fake-images")
        if self.n is not None:
            check(isinstance(self.n, int) and self.n >= 2, "--n", self.n, "must be >= 2")
        positive_int("--batch-size", self.batch_size)
        return parse_metrics(self.metrics)


@dataclass
class GANEvalResult:
    """What :func:`run_gan_eval` measured.

    Attributes:
        metrics: the metric values and their ``protocol`` (:func:`evaluate_fakes`'s result,
            with the generator or fake-images provenance added to the protocol).
        method: the generator's architecture, or ``"fake_images"``.
        n_fakes: how many fake images were scored.
        run_id: the results-store run id (None without ``db``).
        seconds: wall time of the evaluation.
    """

    metrics: dict[str, Any]
    method: str
    n_fakes: int
    run_id: str | None = None
    seconds: float = 0.0


def _fake_inputs(req: GANEvalRequest, ref: Any
                 ) -> tuple[np.ndarray, np.ndarray | None, int | None, dict[str, Any], str]:
    """``(images, labels, num_classes, provenance, method)`` from the generator or the file."""
    from fmlab.gan.grid import check_sample_bytes
    from fmlab.gan.io import generate_images, load_fake_npz, load_generator

    if req.generator is not None:
        G, info = load_generator(req.generator, req.arch, req.arch_kwargs)
        n = req.n or 10000
        check_sample_bytes("--n", n, G.img_shape, n * math.prod(G.img_shape))
        images, labels = generate_images(G, n, req.seed, batch_size=req.batch_size)
        what = {"generator": {k: info.get(k) for k in ("arch", "kwargs", "weights",
                                                         "weights_sha256", "ema", "step")}}
        return images, labels, G.num_classes or None, what, info["arch"]
    images, labels = load_fake_npz(req.fake_images, req.n)
    k = ref.num_classes
    if labels is not None and len(labels) and k is not None and int(labels.max()) >= k:
        bad = int(labels[np.argmax(labels >= k)])
        raise DataError(f"{req.fake_images}: 'labels' has label {bad} outside 0..{k - 1} (the "
                        f"reference {req.ref} has {k} classes)")
    num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
    return images, labels, num_classes, {"fake_images": str(req.fake_images)}, "fake_images"


def run_gan_eval(req: GANEvalRequest) -> GANEvalResult:
    """Score a generator's samples (or saved fakes) against a reference split.

    Checks the request, reads the reference, draws ``n`` samples (z from ``seed``) or reads the
    fake-images file, checks the inputs before building the extractor (so a bad input fails
    before any extractor warning), computes every metric, and appends the rows to ``db``
    through :meth:`fmlab.results.ResultsStore.record`.

    Args:
        req: the request.

    Returns:
        The metrics, the method name, the number of fakes and the run id.

    Examples:
        >>> import os, tempfile, warnings
        >>> import numpy as np
        >>> d = tempfile.mkdtemp()
        >>> x = np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8)
        >>> y = np.arange(40) % 4
        >>> np.savez(os.path.join(d, "ref.npz"), x_train=x, y_train=y, x_test=x, y_test=y)
        >>> np.savez(os.path.join(d, "fakes.npz"), images=x, labels=y)
        >>> req = GANEvalRequest(ref=f"npz:{d}/ref.npz:test", features="lenet5_mnist",
        ...                      fake_images=os.path.join(d, "fakes.npz"), metrics="fid",
        ...                      data_root=d)
        >>> with warnings.catch_warnings():  # LeNet-5 without its weights warns: tests only
        ...     warnings.simplefilter("ignore")
        ...     out = run_gan_eval(req)
        >>> out.method, out.n_fakes, sorted(out.metrics), out.metrics["protocol"]["n_real"]
        ('fake_images', 40, ['fid', 'protocol'], 40)
    """
    from fmlab.gan.caption_io import is_caption_generator

    if req.generator is not None and req.arch is None and is_caption_generator(req.generator):
        from fmlab.experiments.textgan_eval import run_caption_eval

        return run_caption_eval(req)  # + class_acc / attribute agreement of its captions
    wanted = req.validate()
    if req.image_text is not None:
        raise ConfigError(f"--image-text: {req.generator or req.fake_images} is not a caption "
                          "generator (data.conditioning: caption); CLIP-score and R-precision "
                          "need the captions its images were drawn for")
    t0 = time.perf_counter()
    ref = open_reference(req.ref, req.data_root)
    images, labels, num_classes, what, method = _fake_inputs(req, ref)
    # built after the inputs are checked: a bad input fails before any extractor warning
    check_request(images, labels, wanted)
    ext = make_extractor(req.features, req.features_weights, req.data_root, req.batch_size)
    res = evaluate_fakes(images, labels, ref, ext, wanted, num_classes=num_classes,
                         seed=req.seed, ref_n=req.ref_n)
    res["protocol"].update(what)
    seconds = round(time.perf_counter() - t0, 2)
    run_id = None
    if req.db is not None:
        from fmlab.results import ResultsStore

        records = metric_records(res, method=method, seed=req.seed, extra={"seconds": seconds},
                                 seconds=seconds)
        run_id = ResultsStore(req.db).record("gan", metric_protocol_of(res, req.ref), records)
    return GANEvalResult(metrics=res, method=method, n_fakes=len(images), run_id=run_id,
                         seconds=seconds)
