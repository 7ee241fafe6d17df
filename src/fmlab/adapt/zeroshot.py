"""Zero-shot classification from text-encoder class weights, and the helper that builds them.

The CLIP_benchmark protocol: every class name is put into every template, each prompt is encoded
and L2-normalised, the class's prompts are averaged and the average renormalised. Scores are
100 · cos(image feature, class weight), CLIP's frozen logit scale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fmlab.adapt.base import (
    ArrayLike,
    Estimator,
    InputError,
    l2_normalize,
    to_labels,
    to_tensor,
)
from fmlab.adapt.registry import register_estimator
from fmlab.errors import ConfigError, DataError

LOGIT_SCALE = 100.0


def load_templates(path: str | os.PathLike) -> list[str]:
    """Read a templates JSON file: a non-empty list of strings, each with one ``{}`` slot."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"templates file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"templates file {p} is not valid JSON: {e}") from None
    try:
        return check_templates(data)
    except DataError as e:
        raise DataError(f"templates file {p}: {e}") from None


def check_templates(templates: object) -> list[str]:
    if not isinstance(templates, list) or not templates:
        raise DataError("templates must be a non-empty JSON list of strings")
    for i, t in enumerate(templates):
        if not isinstance(t, str):
            raise DataError(f"template {i} is not a string: {t!r}")
        if t.count("{}") != 1:
            raise DataError(f"template {i} {t!r} must contain exactly one '{{}}' slot")
    return list(templates)


def build_zeroshot_weights(class_names: Sequence[str],
                           templates: Sequence[str] | str | os.PathLike,
                           encode_text: Callable[[list[str]], ArrayLike]) -> torch.Tensor:
    """Class weights (n_classes, D) from class names, templates and a text encoder.

    ``templates`` is a list of strings with ``{}``, or the path (str or Path) of a JSON file
    holding one.
    ``encode_text(list[str]) -> (n, D)`` is any text encoder (numpy or torch output).
    """
    if isinstance(templates, (str, os.PathLike)):
        tmpl = load_templates(templates)
    else:
        tmpl = check_templates(list(templates))
    if not class_names:
        raise DataError("class_names is empty: zero-shot weights need at least one class")
    rows = []
    for name in class_names:
        prompts = [t.format(name) for t in tmpl]
        emb = to_tensor(encode_text(prompts), f"encode_text output for class {name!r}",
                        torch.float32)
        if emb.ndim != 2 or emb.shape[0] != len(prompts):
            raise DataError(f"encode_text must return ({len(prompts)}, D) for class {name!r}, "
                            f"got {tuple(emb.shape)}")
        rows.append(l2_normalize(l2_normalize(emb).mean(0)))
    return torch.stack(rows)


def zeroshot_scores(X: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """100 · cos(x, w_k) for every row of X and class weight."""
    return LOGIT_SCALE * l2_normalize(X) @ l2_normalize(weights.to(X.dtype)).T


def check_weights(weights: ArrayLike, name: str = "zeroshot_weights") -> torch.Tensor:
    """Class weights as a (n_classes, D) float tensor (refusing NaN/inf and other shapes)."""
    w = to_tensor(weights, name)
    if w.ndim != 2 or w.shape[0] == 0:
        raise ConfigError(f"{name} must have shape (n_classes, D), got {tuple(w.shape)}")
    return w


@register_estimator("zeroshot")
class ZeroShot(Estimator):
    """Training-free classifier from text class weights; columns are classes 0..C−1.

    ``fit`` needs no data (it validates X/y when given, so the sweep can treat every method
    alike); ``decision_function`` is 100 · cosine. It is stateless (scikit-learn's
    ``requires_fit=False``): ``predict`` before ``fit`` uses the weights directly.

    Args:
        class_text_weights: (n_classes, D) text class weights (the sweep fills them in from its
            ``zeroshot_weights`` input).

    Examples:
        >>> import numpy as np
        >>> ZeroShot(np.eye(3)).predict(np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 0.1]]))
        array([1, 0])
    """

    views = "none"
    requires = ("zeroshot_weights",)
    _parameter_constraints: ClassVar[dict[str, list]] = {"class_text_weights": ["array-like"]}

    def __init__(self, class_text_weights: ArrayLike) -> None:
        self.class_text_weights = class_text_weights

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any], **params: Any) -> ZeroShot:
        """Build from the sweep's ``zeroshot_weights`` input (see :meth:`Estimator.from_inputs`).

        Args:
            inputs: ``{"zeroshot_weights": (n_classes, D) weights}``.
            **params: unused further arguments (an error if any).

        Returns:
            The estimator.
        """
        return cls(inputs["zeroshot_weights"], **params)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    #: new classes are new text weights (base-to-new, cross-dataset evaluation)
    transfers_to_new_classes: ClassVar[bool] = True

    def for_classes(self, class_names: Sequence[str], zeroshot_weights: ArrayLike = None) -> ZeroShot:
        """A fitted zero-shot classifier over other classes: their ``zeroshot_weights``
        (one row per name of ``class_names``)."""
        if zeroshot_weights is None or len(zeroshot_weights) != len(class_names):
            raise InputError(f"ZeroShot.for_classes needs one zero-shot weight row per class name "
                             f"({len(class_names)})")
        return ZeroShot(zeroshot_weights).fit()

    def fit(self, X: ArrayLike | None = None, y: ArrayLike | None = None,
            X_val: ArrayLike | None = None, y_val: ArrayLike | None = None) -> ZeroShot:
        """Read the weights; check X and y when given (they are not used).

        Args:
            X: optional (N, D) or (V, N, D) features, checked against the weights' dimension.
            y: optional labels, checked to be classes of the weights.
            X_val: ignored.
            y_val: ignored.

        Returns:
            self.
        """
        self._check_params()
        self.weights_ = check_weights(self.class_text_weights, "class_text_weights")
        self.classes_ = np.arange(self.weights_.shape[0])
        self.n_features_in_ = int(self.weights_.shape[1])
        self.hyperparameters_ = {}
        if X is not None and y is not None:
            Xt = to_tensor(X, "X")
            if Xt.shape[-1] != self.n_features_in_:
                raise InputError(f"X has {Xt.shape[-1]} features but the zero-shot weights have "
                                 f"{self.n_features_in_}")
            yl = to_labels(y)
            if len(yl) != Xt.shape[-2]:
                raise InputError(f"X has {Xt.shape[-2]} samples but y has {len(yl)} labels")
            if yl.size and (yl.min() < 0 or yl.max() >= len(self.classes_)):
                raise InputError(f"y has labels outside 0..{len(self.classes_) - 1}, the classes "
                                 "of the zero-shot weights")
        return self

    def _check_X(self, X: ArrayLike, name: str = "X",
                 dtype: torch.dtype | None = None) -> torch.Tensor:
        if not hasattr(self, "weights_"):
            self.fit()  # stateless: the weights are all there is to fit
        return super()._check_X(X, name, dtype)

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        return zeroshot_scores(X, self.weights_)
