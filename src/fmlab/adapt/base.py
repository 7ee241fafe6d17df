"""The estimator contract shared by every few-shot method, and the input checks behind it.

Estimators are scikit-learn estimators (:class:`sklearn.base.BaseEstimator` and
:class:`~sklearn.base.ClassifierMixin`: ``clone``, ``get_params``/``set_params``, ``score``,
pipelines and ``cross_val_score`` work) that compute in torch on CPU, because the few-shot
protocol fits hundreds of tiny models and numpy/scipy overheads dominate there. As scikit-learn
requires, ``__init__`` only stores its arguments; they are checked in ``fit`` (against the
class's ``_parameter_constraints``), and fitted state ends in ``_``.

Inputs may be numpy arrays or torch tensors; outputs are numpy arrays. float64 inputs are computed
in float64 (so parity tests can be tight); anything else is computed in float32.

Training features with augmented views
--------------------------------------
``fit`` accepts ``X`` of shape ``(N, D)`` or ``(V, N, D)``: ``V`` augmented views of the same ``N``
training images, with ``y`` of length ``N``. Each estimator says how it uses views through its
class attribute ``views``: ``"samples"`` keeps every view as a training sample (GDA, NCM, linear
probe), ``"mean"`` averages the L2-normalised views into one feature per image (Tip-Adapter's
cache keys, k-NN), ``"none"`` means the estimator does not use training views, and the few-shot
sweep never gives it any. Validation and test features are always ``(N, D)``.

Errors are fmlab's (:class:`~fmlab.errors.DataError`, :class:`~fmlab.errors.ConfigError`, so the
CLI prints one line) and scikit-learn's at once (:class:`InputError` is a ``ValueError``,
:class:`ParameterError` an ``InvalidParameterError``, :class:`NotFittedError` sklearn's own), so
scikit-learn's tools and checks recognise them.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from fmlab.errors import ConfigError, DataError

ArrayLike = Any  # numpy array or torch tensor


class InputError(DataError, ValueError):
    """Features or labels an estimator cannot use (a ``ValueError`` too, as scikit-learn expects)."""


class _InputTypeError(InputError, TypeError):
    """Features of a type that cannot become numbers (a ``TypeError`` too, as numpy raises)."""


class ParameterError(ConfigError, InvalidParameterError):
    """A constructor argument with a wrong value, found by ``fit`` (names the parameter and value)."""


class NotFittedError(ConfigError, SklearnNotFittedError):
    """``predict`` or ``decision_function`` called before ``fit``."""


def to_tensor(X: ArrayLike, name: str = "X", dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert features to a float CPU tensor and reject NaN/inf (which would silently poison fits)."""
    if isinstance(X, torch.Tensor):
        t = X.detach().cpu()
    else:
        if hasattr(X, "tocsr") or hasattr(X, "toarray"):
            raise InputError(f"{name} is a sparse matrix; sparse input is not supported, pass a "
                             "dense array")
        try:
            arr = np.asarray(X)
            if arr.dtype == object:  # e.g. a pandas frame of numbers: numbers or a clear error
                arr = arr.astype(np.float64)
            if not arr.flags.writeable:  # memory-mapped caches: torch warns on read-only memory
                arr = arr.copy()
            t = torch.as_tensor(arr)
        except TypeError as e:
            raise _InputTypeError(f"{name} cannot be read as a numeric array: {e}") from None
        except ValueError as e:
            raise InputError(f"{name} cannot be read as a numeric array: {e}") from None
    if dtype is None:
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name}: Complex data not supported (dtype {t.dtype}); features must "
                         "be real numbers")
    t = t.to(dtype)
    if t.numel() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise InputError(f"{name} contains NaN or infinite values (first at index {tuple(bad)})")
    return t


def to_labels(y: ArrayLike, name: str = "y") -> np.ndarray:
    """Labels as a 1-D int64 numpy array; float labels are accepted only when integral.

    A column vector (N, 1) is flattened with scikit-learn's ``DataConversionWarning``.
    """
    if y is None:
        raise InputError(f"this estimator requires y to be passed, but the target {name} is None")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn(f"A column-vector y was passed when a 1d array was expected ({name} of "
                      f"shape {arr.shape}); it was flattened to ({arr.shape[0]},)",
                      DataConversionWarning, stacklevel=3)
        arr = arr.ravel()
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D array of class labels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{name} must hold integer class labels (Unknown label type: "
                             "continuous values)")
    elif arr.dtype.kind not in "iub":
        raise InputError(f"{name} must hold integer class labels, got dtype {arr.dtype} "
                         "(Unknown label type)")
    return arr.astype(np.int64)


SMALL_WORK = 10_000_000


@contextlib.contextmanager
def threads_for(work: float) -> Iterator[None]:
    """Run small problems on one thread, restoring the setting afterwards.

    Few-shot fits are tiny (a 40×32 matmul): with several OpenMP threads on a busy machine each
    op can wait milliseconds at the barrier for a descheduled thread (measured: 28 ms vs 8 µs for
    one ``addmm`` on 2 shared cores). Large problems keep every thread.
    """
    n = torch.get_num_threads()
    if work >= SMALL_WORK or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def l2_normalize(X: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit-norm rows; zero rows stay zero instead of becoming NaN."""
    return X / X.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def softmax_np(scores: np.ndarray) -> np.ndarray:
    s = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


class Estimator(ClassifierMixin, BaseEstimator):
    """Base class: parameter and input checks, label bookkeeping, the predict/proba plumbing.

    Subclasses store their constructor arguments unchanged, list their checks in
    ``_parameter_constraints`` (scikit-learn's format, checked by ``fit``), and implement
    ``_fit(X, y_idx, X_val, y_val_idx)`` on tensors (``y_idx`` index ``classes_``) and
    ``_scores(X) -> (N, n_classes)`` tensor. ``hyperparameters_`` holds the values the estimator
    chose or used (JSON-able), for the results store.

    What a method needs from the workflow is declared on its class, not in lists elsewhere:
    ``views`` (how augmented training views are used; ``"none"``: not at all) and ``requires``
    (inputs the few-shot sweep must fill in as constructor arguments: ``"zeroshot_weights"``,
    ``"model"``, ``"class_names"``) and ``transfers_to_new_classes`` (it has a
    ``for_classes(class_names, zeroshot_weights)`` that scores classes it was not fitted on, for
    base-to-new and cross-dataset evaluation). Register a subclass with
    :func:`fmlab.adapt.registry.register_estimator` to make it a sweep method.

    Examples:
        >>> import numpy as np
        >>> from sklearn.base import clone
        >>> from fmlab.adapt import NCM
        >>> X = np.array([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.2]]); y = np.array([0, 0, 1, 1])
        >>> est = clone(NCM(metric="euclidean")).fit(X, y)
        >>> est.predict(np.array([[0.2, 0.8]])), est.score(X, y)
        (array([0]), 1.0)
    """

    views: ClassVar[str] = "samples"
    requires: ClassVar[tuple[str, ...]] = ()
    transfers_to_new_classes: ClassVar[bool] = False
    needs_validation: bool = False
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    classes_: np.ndarray
    n_features_in_: int
    hyperparameters_: dict[str, Any]

    # -- the parts of a registered method -------------------------------------------------------
    @classmethod
    def from_inputs(cls, inputs: dict[str, Any], **params: Any) -> Estimator:
        """Build the estimator from the workflow inputs it ``requires`` and its ``params``.

        Args:
            inputs: one value per name in ``requires``.
            **params: further constructor arguments.

        Returns:
            The unfitted estimator (by default ``cls(**inputs, **params)``).
        """
        return cls(**inputs, **params)

    @classmethod
    def with_zeroshot(cls, zeroshot_weights: ArrayLike, *, alpha: float | None = None,
                      **params: Any) -> Estimator:
        """The ``<name>+zs`` variant: this estimator fused with zero-shot scores.

        Args:
            zeroshot_weights: (n_classes, D) text class weights.
            alpha: the fusion weight (None: chosen on validation data).
            **params: constructor arguments of this estimator.

        Returns:
            A :class:`~fmlab.adapt.ensemble.ZeroShotEnsemble` around ``cls(**params)``.
        """
        from fmlab.adapt.ensemble import ZeroShotEnsemble

        return ZeroShotEnsemble(cls(**params), zeroshot_weights, alpha=alpha)

    # -- sklearn-style parameters ------------------------------------------------------------
    def _check_params(self) -> None:
        """Check the constructor arguments (in ``fit``, never in ``__init__``, as sklearn asks)."""
        try:
            self._validate_params()
        except InvalidParameterError as e:
            raise ParameterError(str(e)) from None

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        """Every constructor argument in signature order; arrays and models as a short tag."""
        params = self.get_params(deep=False)
        order = [k for k in inspect.signature(type(self).__init__).parameters if k in params]
        args = ", ".join(f"{k}={_short(params[k])}" for k in order)
        return f"{type(self).__name__}({args})"

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, X_val: ArrayLike | None = None,
            y_val: ArrayLike | None = None) -> Estimator:
        """Fit on training features and labels; validation data is used to choose hyperparameters.

        Args:
            X: (N, D) features or (V, N, D) augmented views of the same N images.
            y: (N,) integer class labels.
            X_val: (M, D) validation features, or None.
            y_val: (M,) validation labels (classes seen in ``y``), or None.

        Returns:
            self. Without validation data an estimator whose ``needs_validation`` is true raises
            :class:`~fmlab.errors.ConfigError`.
        """
        self._check_params()
        Xt, y_arr = self._check_train(X, y)
        self.classes_ = np.unique(y_arr)
        y_idx = torch.as_tensor(np.searchsorted(self.classes_, y_arr))
        Xv, yv_idx = self._check_val(X_val, y_val, Xt.dtype)
        self.hyperparameters_ = {}
        with threads_for(Xt.numel() * max(len(self.classes_), 2)):
            self._fit(Xt, y_idx, Xv, yv_idx)
        return self

    def _check_train(self, X: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, np.ndarray]:
        Xt = to_tensor(X, "X")
        y_arr = to_labels(y)
        if Xt.ndim not in (2, 3):
            raise InputError(f"X must have shape (N, D) or (views, N, D), got {tuple(Xt.shape)}")
        n = Xt.shape[-2]
        if n != len(y_arr):
            raise InputError(f"X has {n} samples but y has {len(y_arr)} labels")
        if n == 0:
            raise InputError("X is empty: cannot fit on zero samples")
        if Xt.shape[-1] == 0:
            raise InputError(f"0 feature(s) (shape={tuple(Xt.shape)}) while a minimum of 1 is "
                             "required.")
        self.n_features_in_ = int(Xt.shape[-1])
        return Xt, y_arr

    def _check_val(self, X_val: ArrayLike | None, y_val: ArrayLike | None,
                   dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if (X_val is None) != (y_val is None):
            raise InputError("pass both X_val and y_val, or neither")
        if X_val is None:
            if self.needs_validation:
                raise ConfigError(
                    f"{type(self).__name__} chooses hyperparameters on validation data: pass "
                    "X_val and y_val to fit, or fix the hyperparameters in the constructor")
            return None, None
        Xv = self._check_X(X_val, "X_val", dtype)
        yv = to_labels(y_val, "y_val")
        if len(yv) != Xv.shape[0]:
            raise InputError(f"X_val has {Xv.shape[0]} samples but y_val has {len(yv)} labels")
        unknown = np.setdiff1d(yv, self.classes_)
        if unknown.size:
            raise InputError(f"y_val has classes absent from the training labels: "
                             f"{unknown[:10].tolist()}")
        return Xv, torch.as_tensor(np.searchsorted(self.classes_, yv))

    def _check_X(self, X: ArrayLike, name: str = "X",
                 dtype: torch.dtype | None = None) -> torch.Tensor:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit first")
        Xt = to_tensor(X, name, dtype)
        if Xt.ndim != 2:
            raise InputError(f"{name} must have shape (N, D), got {tuple(Xt.shape)}; Reshape "
                             "your data (X.reshape(1, -1) for a single sample)")
        if Xt.shape[1] != self.n_features_in_:
            raise InputError(f"{name} has {Xt.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return Xt

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- prediction -----------------------------------------------------------------------------
    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Class scores.

        Args:
            X: (N, D) features.

        Returns:
            (N, n_classes) scores, columns in ``classes_`` order (also for two classes).
        """
        Xt = self._check_X(X)
        with threads_for(Xt.numel() * max(len(self.classes_), 2)):
            return self._scores(Xt).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The class with the highest score.

        Args:
            X: (N, D) features.

        Returns:
            (N,) labels from ``classes_``.
        """
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Softmax of the scores (a true posterior for GDA, the linear probe and zero-shot).

        Args:
            X: (N, D) features.

        Returns:
            (N, n_classes) probabilities, rows summing to 1.
        """
        return softmax_np(self.decision_function(X))


def views_as_samples(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, N, D) views + (N,) labels -> (V*N, D) samples + (V*N,) labels; (N, D) passes through."""
    if X.ndim == 2:
        return X, y
    v = X.shape[0]
    return X.reshape(-1, X.shape[-1]), y.repeat(v)


def views_mean_normalized(X: torch.Tensor) -> torch.Tensor:
    """Tip-Adapter's keys: normalise each view, average over views, renormalise."""
    if X.ndim == 2:
        return l2_normalize(X)
    return l2_normalize(l2_normalize(X).mean(dim=0))


def select_best(accuracy: torch.Tensor, loss: torch.Tensor) -> int:
    """Index of the best candidate: highest validation accuracy, ties broken by lowest loss,
    then by the first candidate. Tiny validation sets tie often; this keeps the choice stable."""
    acc = accuracy.double()
    best_acc = acc.max()
    cand = (acc >= best_acc - 1e-12).nonzero().flatten()
    sub = loss.double()[cand]
    return int(cand[int(torch.argmin(sub))])


def _short(v: Any) -> str:
    if isinstance(v, (np.ndarray, torch.Tensor)):
        return f"<array {tuple(v.shape)}>"
    if isinstance(v, torch.nn.Module):
        return f"<{type(v).__name__}>"
    return repr(v)


def accuracy_and_loss(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation accuracy and mean cross-entropy for a stack of candidate score matrices.

    ``scores`` is (G, N, C) for G candidates (or (N, C)); returns two (G,) tensors.
    """
    if scores.ndim == 2:
        scores = scores.unsqueeze(0)
    acc = (scores.argmax(dim=-1) == y).to(torch.float64).mean(dim=-1)
    logp = torch.log_softmax(scores.to(torch.float64), dim=-1)
    loss = -logp.gather(-1, y.expand(scores.shape[0], -1).unsqueeze(-1)).squeeze(-1).mean(-1)
    return acc, loss
