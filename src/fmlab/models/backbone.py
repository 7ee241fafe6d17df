"""The :class:`Backbone` wrapper every image model in fmlab is presented as.

A backbone is ``trunk`` (preprocessed float images → features) + optional ``head`` (features →
logits) + the :class:`PreprocessSpec` that says how raw uint8 images become the trunk's input.
Keeping the three apart lets feature extraction, linear probes, PEFT and pre-training share one
object, and lets the preprocessing travel with every number as part of the protocol.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from fmlab.errors import ModelError
from fmlab.models.preprocess import PreprocessSpec
from fmlab.utils.io import load_torch_file


class Backbone(nn.Module):
    """An image encoder with its preprocessing and (when it has one) its classifier head.

    Args:
        name: the resolved registry name (what results are stored under).
        trunk: preprocessed float NCHW images -> features ``(N, feature_dim)``.
        feature_dim: width of the trunk's features.
        preprocess: how raw uint8 images become the trunk's input.
        head: features -> logits, or None.
        weights_sha256: sha256 of the weights file loaded (None: random init).
        weights_path: that file.

    Attributes:
        init_seed: the seed of a random initialisation (set by ``create_backbone(seed=...)``;
            None when the global RNG drew it or weights were loaded over it).

    Examples:
        >>> import torch.nn as nn
        >>> spec = PreprocessSpec((4, 4), 1, (0.0,), (1.0,), "bilinear")
        >>> bb = Backbone("toy", nn.Flatten(), 16, spec, nn.Linear(16, 3))
        >>> bb.encode(torch.zeros((2, 4, 4), dtype=torch.uint8)).shape, bb.num_classes
        (torch.Size([2, 16]), 3)
    """

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        feature_dim: int,
        preprocess: PreprocessSpec,
        head: nn.Module | None = None,
        weights_sha256: str | None = None,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.head = head
        self.feature_dim = int(feature_dim)
        self.preprocess = preprocess
        self.weights_sha256 = weights_sha256
        self.weights_path = weights_path
        self.init_seed: int | None = None

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHW/NHWC images → preprocessed float NCHW; float input is taken as preprocessed."""
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(images)
        if images.dtype == torch.uint8:
            images = self.preprocess(images)
        device = next(self.parameters(), torch.empty(0)).device
        return images.to(device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(N, feature_dim)`` of raw uint8 images or of preprocessed float NCHW input."""
        return self.trunk(self.prepare(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.encode(images)
        return self.head(feats) if self.head is not None else feats

    @property
    def num_classes(self) -> int | None:
        if isinstance(self.head, nn.Linear):
            return self.head.out_features
        return None

    def protocol(self) -> dict:
        """What a reader needs to reproduce this backbone's features.

        Returns:
            ``backbone`` (name), ``weights_sha256``, ``init_seed`` (a random init's seed, else
            None), ``feature_dim`` and ``preprocess``.
        """
        return {
            "backbone": self.name,
            "weights_sha256": self.weights_sha256,
            "init_seed": self.init_seed if self.weights_sha256 is None else None,
            "feature_dim": self.feature_dim,
            "preprocess": self.preprocess.to_dict(),
        }


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's ``state_dict`` (names and raw tensor bytes, in name order).

    Identifies the weights a module holds *now*, whatever file (if any) they came from: a random
    init, or a loaded model changed in memory, hashes differently from the file it was read from.

    Args:
        module: any ``nn.Module``.

    Returns:
        The hex digest.

    Examples:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> state_sha256(a) == state_sha256(b)
        True
        >>> with torch.no_grad():
        ...     _ = b.weight.add_(1)
        >>> state_sha256(a) == state_sha256(b)
        False
    """
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file, never unpickling arbitrary objects.

    Torch files may hold a bare state dict or ``{"state_dict": ...}`` / ``{"model": ...}``; a
    ``module.`` prefix (DataParallel) is stripped. A torch file with pickled code in it is
    refused with one line naming the file (:func:`fmlab.utils.io.load_torch_file`), never run.

    Args:
        path: a ``.safetensors`` file or a ``torch.save`` file.

    Returns:
        The state dict (names -> tensors).

    Raises:
        fmlab.errors.ModelError: missing, unreadable, unsafe, or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise ModelError(f"cannot read safetensors weights {path}: {e}") from None
    else:
        try:
            with warnings.catch_warnings():  # torch's "pickle protocol 4" note is noise before our error
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                obj = load_torch_file(path, "weights")
        except ModelError:
            raise
        except Exception as e:  # torch's unpickler also fails with struct.error etc. on junk bytes
            raise ModelError(f"{path}: cannot read weights as a torch file ({type(e).__name__}: {e})") from None
        sd = obj
        if isinstance(obj, dict):
            for key in ("state_dict", "model", "model_state_dict"):
                if key in obj and isinstance(obj[key], dict):
                    sd = obj[key]
                    break
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ModelError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_into_backbone(
    backbone: Backbone, sd: dict[str, torch.Tensor], path: str | Path, head_prefixes: tuple[str, ...] = ()
) -> None:
    """Load ``sd`` into ``backbone``: its own ``trunk.*/head.*`` keys, or a native checkpoint whose
    head lives under one of ``head_prefixes`` (everything else belongs to the trunk).

    The trunk must load completely (missing or unexpected keys name themselves in the error); a
    file without head weights (an encoder from pre-training) keeps the freshly initialised head.
    """
    if any(k.startswith(("trunk.", "head.")) for k in sd):
        trunk_sd = {k[6:]: v for k, v in sd.items() if k.startswith("trunk.")}
        head_sd = {k[5:]: v for k, v in sd.items() if k.startswith("head.")}
        other = [k for k in sd if not k.startswith(("trunk.", "head."))]
        if other:
            raise ModelError(f"weights {path}: unexpected keys {other[:5]}")
    else:
        trunk_sd, head_sd = {}, {}
        for k, v in sd.items():
            hp = next((p for p in head_prefixes if k.startswith(p + ".")), None)
            if hp is not None:
                head_sd[k[len(hp) + 1:]] = v
            else:
                trunk_sd[k] = v
    _load_strict(backbone.trunk, trunk_sd, path, "trunk")
    if head_sd:
        if backbone.head is None:
            raise ModelError(f"weights {path} hold a head but backbone {backbone.name} has none")
        _load_strict(backbone.head, head_sd, path, "head")


def _load_strict(module: nn.Module, sd: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    own = module.state_dict()
    # Old checkpoints lack BatchNorm's num_batches_tracked buffer; it carries no information.
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ModelError(
            f"weights {path} do not fit the {what}: missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ModelError(
            f"weights {path}: key {k!r} has shape {tuple(sd[k].shape)}, expected {tuple(own[k].shape)}"
        )
    module.load_state_dict(sd, strict=False)
