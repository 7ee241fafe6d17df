"""The objective contract shared by every pre-training method.

An objective is an ``nn.Module`` that owns its heads (and EMA copies); the engine calls
``loss, logs = objective(batch)`` and, when defined, ``on_train_start(max_steps)`` and
``on_after_optimizer_step(step, max_steps)``. ``encoder`` is the network whose weights are
exported: float NCHW preprocessed images -> (N, D) features. ``embed(images)`` is what the
engine's monitors call, on raw uint8 images: it preprocesses them with ``preprocess`` (the
``Backbone``'s spec when one was given, else ImageNet mean/std at the encoder's channels/size,
matching the default transforms) and encodes.

A new objective is one file: subclass :class:`Objective`, decorate it with
``@register_objective("name")`` and declare on the class what the run must supply (``needs``)
and which constructor / transform arguments are never config keys (``filled_by_run``,
``transform_filled``). ``fmlab pretrain`` reads these declarations; it never checks a name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.registry import Registry

#: what a run can supply from its data (``Objective.needs``); other needs the objective
#: builds itself in :meth:`Objective.provide` (e.g. a distillation teacher)
DATA_NEEDS = ("labels", "num_samples", "num_classes", "class_names", "data_root")


def resolve_encoder(encoder: nn.Module, feature_dim: int | None) -> tuple[nn.Module, int]:
    """Accept a plain feature extractor or the lead's ``Backbone`` and return (module, D).

    A ``Backbone`` (it has ``trunk`` and ``feature_dim``) contributes its trunk: that is the part
    mapping preprocessed images to features, whereas ``Backbone.__call__`` may return logits.
    """
    if hasattr(encoder, "trunk") and hasattr(encoder, "feature_dim"):
        dim = int(encoder.feature_dim)
        encoder = encoder.trunk
    else:
        dim = getattr(encoder, "feature_dim", None)
    if feature_dim is not None:
        if dim is not None and int(dim) != int(feature_dim):
            raise ConfigError(f"feature_dim={feature_dim} disagrees with the encoder's "
                              f"feature_dim={dim}")
        dim = feature_dim
    if dim is None:
        raise ConfigError(f"cannot tell the feature size of {type(encoder).__name__}; "
                          f"pass feature_dim=")
    return encoder, int(dim)


def require(batch: Mapping[str, Any], key: str, who: str) -> Any:
    """``batch[key]`` or a DataError naming the objective, the key and what the batch has."""
    if key not in batch:
        raise DataError(f"{who} needs batch[{key!r}]; batch has {sorted(batch)}")
    return batch[key]


def _in_channels(module: nn.Module) -> int | None:
    chans = getattr(module, "in_chans", None)
    if chans is not None:
        return int(chans)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


class DefaultPreprocess:
    """uint8 (N,H,W[,C]) -> float NCHW: channels converted, resized if ``size``, normalised."""

    def __init__(self, channels: int | None = None, size: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        from fmlab.data import augment as A

        self.channels, self.size = channels, size
        self._resize = A.Resize(size) if size else None
        self._norm = A.Normalize(mean or A.IMAGENET_MEAN, std or A.IMAGENET_STD)

    def __call__(self, images: Any) -> Tensor:
        from fmlab.data.augment import to_float_images

        x = to_float_images(images, channels=self.channels)
        if self._resize is not None:
            x = self._resize(x, None)
        return self._norm(x)


class ExportPatch(NamedTuple):
    """How an objective adjusts the exported encoder so that ``create_backbone`` loads it.

    Attributes:
        tensors: entries added to ``encoder.safetensors`` (empty: the file stays as written).
        kwargs: the ``create_backbone`` keyword arguments under which the file then loads.
        note: a line for the file's metadata saying what was added.
    """

    tensors: dict[str, Tensor]
    kwargs: dict[str, Any]
    note: str = ""


class Objective(nn.Module):
    """Base class of every pre-training objective: ``loss, logs = objective(batch)``.

    Holds ``encoder`` (the exported feature extractor) and no-op engine hooks; subclasses
    implement ``forward`` and the classmethod ``default_transform(image_size, ..., mean, std,
    channels)`` (its other typed parameters become ``augment`` config keys). The class
    attributes below are the objective's declarations, read by ``fmlab pretrain`` instead of
    checking names.

    Attributes:
        name: the registry name, set by :func:`register_objective`.
        needs: what the run supplies: ``"labels"`` (the training set must be labelled),
            ``"num_samples"`` / ``"num_classes"`` / ``"class_names"`` / ``"data_root"`` (the run's
            ``data.data_root``, for objectives that open a second source; passed to the constructor
            under that name),
            or any other name, built by :meth:`provide` from the ``objective`` config section.
        filled_by_run: constructor parameters that are never config keys (besides ``needs``).
        config_fields: extra ``objective`` config keys ``(name, type, default)`` that are not
            constructor arguments (read by :meth:`provide`).
        transform_filled: ``default_transform`` parameters the run fills in (from the backbone's
            preprocessing, or :meth:`transform_arguments`), never ``augment`` config keys.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> class Center(Objective):  # pull features towards the origin (a toy loss)
        ...     def __init__(self, encoder: nn.Module, feature_dim: int | None = None) -> None:
        ...         super().__init__()
        ...         self._set_encoder(encoder, feature_dim)
        ...     def forward(self, batch):
        ...         loss = self.encoder(batch["images"]).pow(2).mean()
        ...         return loss, {"loss": loss.detach()}
        >>> obj = Center(nn.Flatten(), feature_dim=12)
        >>> loss, logs = obj({"images": torch.ones(2, 3, 2, 2)})
        >>> float(loss), obj.needs
        (1.0, ())
    """

    name: ClassVar[str] = "objective"
    needs: ClassVar[tuple[str, ...]] = ()
    filled_by_run: ClassVar[tuple[str, ...]] = ("encoder", "feature_dim", "head")
    config_fields: ClassVar[tuple[tuple[str, Any, Any], ...]] = ()
    transform_filled: ClassVar[tuple[str, ...]] = ("image_size", "mean", "std", "channels")
    encoder: nn.Module
    feature_dim: int
    preprocess: Callable[[Any], Tensor] | None = None

    def _set_encoder(self, encoder: nn.Module, feature_dim: int | None) -> None:
        """Store the feature extractor (a ``Backbone``'s trunk) and its preprocessing spec."""
        spec = getattr(encoder, "preprocess", None) if hasattr(encoder, "trunk") else None
        self.encoder, self.feature_dim = resolve_encoder(encoder, feature_dim)
        if spec is not None:
            self.preprocess = spec

    def prepare(self, images: Any) -> Tensor:
        """Raw uint8 images -> preprocessed float NCHW on the encoder's device."""
        fn = self.preprocess or DefaultPreprocess(_in_channels(self.encoder),
                                                  getattr(self.encoder, "img_size", None))
        device = next(self.encoder.parameters(), torch.empty(0)).device
        return fn(torch.as_tensor(images).cpu()).to(device)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError

    def on_train_start(self, max_steps: int) -> None:
        """Called once before training with the planned number of optimiser steps."""

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Called after each optimiser step (EMA updates, schedules)."""

    def embed(self, x: Tensor) -> Tensor:
        """Encoder features for monitors: uint8 images are preprocessed, float taken as is."""
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = self.prepare(x)
        return self.encoder(x)

    # -- declarations read by ``fmlab pretrain`` (defaults: nothing to add)

    @classmethod
    def provide(cls, need: str, section: Any) -> Any:
        """Build the constructor argument ``need`` (a non-data entry of ``needs``).

        Args:
            need: the name in ``needs`` (also the constructor parameter it fills).
            section: the run's ``objective`` config section (holds ``config_fields``).

        Returns:
            The value passed to the constructor as ``need``.
        """
        raise ConfigError(f"objective {cls.name!r} declares the need {need!r} but does not "
                          f"provide it (override {cls.__name__}.provide)")

    def transform_arguments(self) -> dict[str, Any]:
        """``default_transform`` arguments taken from the built objective (e.g. its ViT's patch
        size); their names belong in ``transform_filled``.

        Returns:
            Keyword arguments for ``default_transform``.
        """
        return {}

    def transform_image_size(self, input_size: int) -> int:
        """The size the default transform crops at, given the encoder's input size (SatMAE++
        crops larger: its targets keep the detail its input is downsampled from).

        Returns:
            ``input_size`` unless the objective resizes its views itself.
        """
        return input_size

    def wrap_transform(self, transform: Any, preprocess: Any) -> Any:
        """The batch transform the run uses, given the default one and the student's
        preprocessing spec (a distillation teacher may need its own view).

        Returns:
            ``transform`` itself unless the objective needs more in the batch.
        """
        return transform

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Draw what the objective does on a few images (masked objectives: input, mask and
        reconstruction side by side) into the PNG ``path``; called once after training.

        Args:
            images: (N, C, H, W) preprocessed images (a handful of held-out ones).
            path: where to write the PNG.

        Returns:
            The path written, or None (the default: most objectives draw nothing).
        """
        return None

    def export_patch(self, train_kwargs: Mapping[str, Any]) -> ExportPatch:
        """What the export adds to ``encoder.safetensors`` and the kwargs it then loads under.

        Args:
            train_kwargs: ``model.kwargs`` the encoder was trained with.

        Returns:
            An :class:`ExportPatch`; by default nothing is added and the kwargs are unchanged.
        """
        return ExportPatch({}, dict(train_kwargs))


ObjectiveT = TypeVar("ObjectiveT", bound=type[Objective])

#: every registered pre-training objective, by name
OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(name: str) -> Callable[[ObjectiveT], ObjectiveT]:
    """Class decorator: register an :class:`Objective` subclass under ``name`` (its ``name``).

    Args:
        name: the ``objective.name`` config value selecting the class.

    Returns:
        A decorator returning the class unchanged apart from ``cls.name = name``.

    Examples:
        >>> @register_objective("toy_doctest")
        ... class Toy(Objective):
        ...     needs = ("labels",)
        >>> OBJECTIVES.get("toy_doctest") is Toy, Toy.name
        (True, 'toy_doctest')
        >>> _ = OBJECTIVES.remove("toy_doctest")  # keep the registry clean
    """
    def deco(cls: ObjectiveT) -> ObjectiveT:
        own = cls.__dict__.get("name")
        if own is not None and own != name:
            raise ValueError(f"{cls.__name__}.name is {own!r} but it registers as {name!r}")
        built = [n for n in cls.needs if n not in DATA_NEEDS]
        if built and cls.provide.__func__ is Objective.provide.__func__:
            raise ValueError(f"{cls.__name__} needs {built} but does not override provide(); "
                             f"the run itself supplies only {', '.join(DATA_NEEDS)}")
        OBJECTIVES.register(name)(cls)
        cls.name = name
        return cls

    return deco
