"""The PEFT method protocol, its registry, and ``apply`` / ``merge`` / ``trainable_parameters``.

Every method works *in place* on any ``nn.Module`` and returns the same object, so a backbone keeps
its class, its ``encode``/``preprocess`` and its name; nothing wraps it.

What a method did is recorded on the model as a list of :class:`Stage` (``model._fmlab_peft``),
because several may stack (PELA compression, then LoRA on the compressed net). A stage stores the
resolved module names and options (JSON) so :func:`fmlab.peft.load_adapter` can replay it on a
fresh base model, and a live name → parameter map (``refs``) of what it trains and saves. The map
holds the parameter objects themselves, so a later stage that wraps a layer (LoRA moves ``fc.weight``
to ``fc.base_layer.weight``) does not change the names under which an earlier stage saves.

Only the latest stage trains: ``apply`` freezes every parameter, then unfreezes that stage's own
parameters and those of its ``head`` modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from fmlab.errors import ConfigError, FmlabError
from fmlab.peft.recipe import FinetuneContext, Recipe
from fmlab.peft.targets import as_pattern_list, is_within, select_modules
from fmlab.registry import Registry

RECORD_ATTR = "_fmlab_peft"


@dataclass
class Stage:
    """One applied method: enough to replay it (JSON part) plus live references (``refs``)."""

    method: str
    patterns: list[str] | None
    targets: list[str]
    head: list[str]
    options: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, nn.Parameter] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "patterns": self.patterns,
            "targets": self.targets,
            "head": self.head,
            "options": self.options,
            "info": self.info,
        }


@dataclass
class Record:
    """Everything fmlab.peft did to one model."""

    stages: list[Stage] = field(default_factory=list)
    merged: bool = False


@dataclass
class NoOptions:
    """Options of a method that has none."""


class PeftMethod:
    """Base class of a PEFT method. Subclasses set ``name`` and ``Options`` and override hooks.

    Hooks:
    - :meth:`supports` — which module types the method can adapt (default targets, pattern filter);
    - :meth:`inject` — change the model in place; return JSON ``info`` that makes a replay exact;
    - :meth:`adapter_params` — name → parameter of what the stage trains and saves;
    - :meth:`merge` — fold the adapter into plain weights (default: nothing to do);
    - :meth:`to_file` / :meth:`from_file` / :meth:`config_json` / :meth:`check_config` — file
      layout (LoRA uses peft's own key names and ``adapter_config.json``).

    Fine-tuning facts, read by ``fmlab finetune`` (see :mod:`fmlab.peft.recipe`): ``recipe``,
    ``trains_norm_statistics``, ``finetune_settings`` and the hooks :meth:`prepare_finetune` and
    :meth:`unlabelled_images`.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    kind: ClassVar[str] = "supported layer"  # what supports() accepts, for error messages
    uses_targets: ClassVar[bool] = True
    mergeable: ClassVar[bool] = True
    recipe: ClassVar[Recipe | None] = None  # None: not offered by fmlab finetune
    trains_norm_statistics: ClassVar[bool] = False  # bn_stats=auto updates BatchNorm statistics
    finetune_settings: ClassVar[type | None] = None  # extra --set keys (a dataclass)

    # -- fine-tuning hooks -----------------------------------------------------------------------
    def prepare_finetune(self, model: nn.Module, apply: Callable[[nn.Module], Any],
                         ctx: FinetuneContext) -> bool:
        """Apply the method for a fine-tuning run (``apply(model)`` applies it with the run's
        targets, options and head).

        Args:
            model: the base model with its task head, on the CPU.
            apply: applies this method to a model in place.
            ctx: what the workflow offers (settings, device, an engine ``fit``, ...).

        Returns:
            Whether ``bn_stats=auto`` updates BatchNorm running statistics in this run.
        """
        apply(model)
        return self.trains_norm_statistics

    def unlabelled_images(self, settings: Any) -> int | None:
        """How many unlabelled train images :meth:`prepare_finetune` needs (0: all; None: none).

        Args:
            settings: the run's settings.

        Returns:
            The count, or None when the method needs none (the default).
        """
        return None

    # -- options ---------------------------------------------------------------------------------
    def parse_options(self, options: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(self.Options)}
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"unknown option {key!r} for peft method {self.name!r}; "
                    f"known: {', '.join(sorted(known)) or '(none)'}"
                )
        try:
            return self.Options(**options)
        except TypeError as e:  # a required option is missing
            raise ConfigError(f"peft method {self.name!r}: {e}") from None

    # -- targets ---------------------------------------------------------------------------------
    def supports(self, name: str, module: nn.Module) -> bool:
        return False

    def resolve_targets(
        self, model: nn.Module, patterns: list[str] | None, exclude: list[str], opts: Any
    ) -> list[str]:
        """Module names to adapt. ``None`` patterns = every supported module outside ``exclude``."""
        if not self.uses_targets:
            if patterns:
                raise ConfigError(f"peft method {self.name!r} takes no targets (got {patterns!r})")
            return []
        if patterns is None:
            # The classifier is task-specific: never adapt it by default (train it via head=).
            skip = list(exclude) + (["head"] if _has_module(model, "head") else [])
            names = [n for n, m in model.named_modules()
                     if not is_within(n, skip) and self.supports(n, m)]
            if not names:
                raise ConfigError(
                    f"peft method {self.name!r}: {type(model).__name__} has no {self.kind} "
                    "outside the head to adapt; pass targets="
                )
        else:
            names = select_modules(model, patterns, self.supports, self.kind)
        return _drop_nested(names)

    # -- the work ----------------------------------------------------------------------------------
    def inject(
        self, model: nn.Module, targets: list[str], opts: Any, info: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Change ``model`` in place. ``info`` is given on replay (load) and must be honoured."""
        return {}

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        return {}

    def merge(self, model: nn.Module, stage: Stage) -> None:
        """Fold the stage into plain weights; the default (weights already in place) does nothing."""

    # -- file layout -----------------------------------------------------------------------------
    def to_file(self, tensors: dict[str, Any]) -> dict[str, Any]:
        return tensors

    def from_file(self, tensors: dict[str, Any]) -> dict[str, Any]:
        return tensors

    def config_json(self, stage: Stage) -> dict[str, Any] | None:
        """The method's own JSON config file content, if its file format has one."""
        return None

    def check_config(self, stage: Stage, cfg: dict[str, Any] | None, path: Any) -> None:
        """Validate the method's own config file (``None`` if absent) on load."""


METHODS: Registry[PeftMethod] = Registry("peft method")


def register(cls: type[PeftMethod]) -> type[PeftMethod]:
    """Class decorator: register one instance of a method under its ``name``."""
    METHODS.add(cls.name, cls())
    return cls


def get_method(name: str) -> PeftMethod:
    if not isinstance(name, str):
        raise ConfigError(f"peft method must be a name, got {name!r}")
    try:
        return METHODS.get(name)
    except FmlabError as e:
        raise ConfigError(str(e)) from None


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        return model.get_submodule(name) is not None
    except AttributeError:
        return False


def _drop_nested(names: list[str]) -> list[str]:
    """Keep only outermost modules: adapting a layer and a sub-layer of it twice is never meant."""
    kept: list[str] = []
    for n in sorted(names, key=lambda s: (s.count("."), s)):
        if not is_within(n, kept):
            kept.append(n)
    order = {n: i for i, n in enumerate(names)}
    return sorted(kept, key=order.__getitem__)


def get_record(model: nn.Module) -> Record | None:
    rec = model.__dict__.get(RECORD_ATTR)
    return rec if isinstance(rec, Record) else None


def _ensure_record(model: nn.Module) -> Record:
    rec = get_record(model)
    if rec is None:
        rec = Record()
        model.__dict__[RECORD_ATTR] = rec
    if rec.merged:
        raise ConfigError("this model's adapters were merged; apply new methods to a fresh model")
    return rec


def head_modules(model: nn.Module, head: str | Sequence[str] | None) -> list[str]:
    """Resolve ``head=`` patterns to module names that own parameters."""
    patterns = as_pattern_list(head, "head")
    if not patterns:
        return []
    return _drop_nested(select_modules(
        model, patterns, lambda n, m: any(True for _ in m.parameters()),
        kind="module with parameters", what="head"))


def _head_params(model: nn.Module, head: list[str]) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if is_within(n.rpartition(".")[0], head)}


def set_trainable(model: nn.Module, stage: Stage) -> None:
    """Freeze everything, then unfreeze the stage's own parameters and its head's."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in stage.refs.values():
        p.requires_grad_(True)
    for p in _head_params(model, stage.head).values():
        p.requires_grad_(True)


def run_stage(model: nn.Module, stage: Stage, opts: Any, replay: bool) -> None:
    """Inject a stage (new or replayed), record it and set what trains."""
    impl = get_method(stage.method)
    rec = _ensure_record(model)
    was_training = model.training
    info = impl.inject(model, stage.targets, opts, stage.info if replay else None)
    # New submodules (peft's dropout, PELA factors) are born in train mode: match the model's.
    model.train(was_training)
    if not replay:
        stage.info = info
    rec.stages.append(stage)
    stage.refs = impl.adapter_params(model, stage)
    set_trainable(model, stage)


def apply(
    model: nn.Module,
    method: str,
    targets: str | Sequence[str] | None = None,
    *,
    head: str | Sequence[str] | None = None,
    **options: Any,
) -> nn.Module:
    """Apply a PEFT method to ``model`` in place and return it, with only the method's part trainable.

    Why in place: the model keeps its class, ``encode``/``preprocess`` and name (nothing wraps it),
    and what was done is recorded on it so :func:`fmlab.peft.save_adapter` can save it.

    Args:
        model: any ``nn.Module``.
        method: a registered method name (:data:`METHODS`).
        targets: module name patterns (see :mod:`fmlab.peft.targets`); ``None`` = every layer the
            method supports outside the head (the ``head=`` modules and any module named
            ``head``).
        head: patterns of modules trained in full along with the method and saved with the
            adapter (the task head); the ``linear`` method defaults to ``"head"``.
        **options: the method's own (``r``/``alpha``/``dropout`` for LoRA, ``energy``/``rank``
            for SVFit, ``compression_ratio`` for PELA, ``num_tokens``/``deep`` for VPT); an
            unknown one is a :class:`ConfigError` naming it.

    Returns:
        ``model`` itself.

    Examples:
        >>> import torch
        >>> import fmlab.peft as fp
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
        >>> net.head = torch.nn.Linear(8, 2)
        >>> _ = fp.apply(net, "bitfit", head="head")
        >>> fp.trainable_parameters(net)  # the 8 biases of layer 0, plus the head's 8*2+2
        26
    """
    impl = get_method(method)
    opts = impl.parse_options(options)
    if head is None and hasattr(impl, "default_head"):
        head = impl.default_head(model)  # type: ignore[attr-defined]
    head_names = head_modules(model, head)
    patterns = None if targets is None else as_pattern_list(targets)
    if patterns is not None and not patterns and impl.uses_targets:
        raise ConfigError(f"peft method {method!r}: targets is empty")
    names = impl.resolve_targets(model, patterns, head_names, opts)
    clash = [t for t in names if t and is_within(t, head_names)]
    if clash:
        raise ConfigError(f"peft method {method!r}: target {clash[0]!r} is (inside) a head module; "
                          "a head is trained in full, so leave it out of targets")
    stage = Stage(method=method, patterns=patterns, targets=names, head=head_names,
                  options=dataclasses.asdict(opts))
    run_stage(model, stage, opts, replay=False)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Number of scalars that will be trained (``requires_grad``), each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def adapter_stages(model: nn.Module) -> list[dict[str, Any]]:
    """The JSON description of what fmlab.peft applied to ``model`` (empty if nothing)."""
    rec = get_record(model)
    return [] if rec is None else [s.to_json() for s in rec.stages]


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA and SVFit adapters into plain weights for inference, in place.

    Methods whose weights are already plain (full, linear, bitfit, PELA's factor pairs) need
    nothing; VPT prompts cannot be folded and raise :class:`ConfigError`. A merged model no longer
    saves as an adapter (save its ``state_dict`` instead).
    """
    rec = get_record(model)
    if rec is None:
        raise ConfigError("merge: this model has no fmlab.peft adapter")
    if rec.merged:
        return model
    for st in rec.stages:
        if not get_method(st.method).mergeable:
            raise ConfigError(f"merge: method {st.method!r} cannot be merged into the weights")
    for st in reversed(rec.stages):
        get_method(st.method).merge(model, st)
        st.refs = {}
    rec.merged = True
    return model
