"""Feature extractors for the generative metrics, behind a registry.

An extractor turns uint8 images (``(N, H, W)`` grey or ``(N, H, W, C)``, C in {1, 3}) into
float64 features, in batches and without gradients, and - when its network has a classifier -
class probabilities for the Inception Score. Its ``protocol`` (extractor name, weights sha256,
resize rule, input size) travels with every number computed from its features: FID values from
different extractors, weights or resize rules are not comparable.

Registered names: ``inception_v3`` (FID-Inception, TF1 resize, local weights only),
``lenet5_mnist`` and ``resnet56_cifar``; any other name is resolved as an fmlab backbone through
:func:`fmlab.models.create_backbone` (``timm:...``, ``open_clip:...``, ``resnet20_cifar`` ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.errors import DataError, FmlabError, ModelError
from fmlab.registry import Registry

ExtractorFactory = Callable[..., "FeatureExtractor"]
#: Named extractor factories ``(weights=None, **kwargs) -> FeatureExtractor``. Register a new
#: one where it is defined with ``@EXTRACTORS.register("name")``; :func:`create_extractor`
#: and ``fmlab gan eval --features`` then accept the name.
EXTRACTORS: Registry[ExtractorFactory] = Registry("feature extractor")


def check_images(images: Any) -> torch.Tensor:
    """uint8 NHW / NHWC images as a CPU tensor, or a DataError saying what is wrong.

    Args:
        images: (N, H, W) or (N, H, W, C) uint8 array or tensor, C in {1, 3}.

    Returns:
        The images as a CPU ``torch.uint8`` tensor (no copy when already one).

    Raises:
        DataError: another dtype (quantise with :func:`to_uint8`) or another shape.

    Examples:
        >>> import numpy as np
        >>> check_images(np.zeros((2, 8, 8, 3), np.uint8)).shape
        torch.Size([2, 8, 8, 3])
    """
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8:
        raise DataError(
            f"images must be uint8, got {images.dtype}; quantise generator output with "
            "fmlab.metrics.to_uint8 first (or pass features instead of images)"
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(
            f"images must have shape (N, H, W) or (N, H, W, C) with C in 1/3, got "
            f"{tuple(images.shape)}"
        )
    return images.cpu()


def to_uint8(images: Any, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Quantise float generator output to uint8 by rounding: 255 (x - lo) / (hi - lo) + 0.5.

    Metrics are defined on images a user could save; rounding (not truncation) to uint8 is what
    StudioGAN and StyleGAN2-ADA do before feature extraction.

    Args:
        images: float array or tensor of any shape (generator output).
        value_range: the ``(low, high)`` the generator's output spans; values outside are
            clipped.

    Returns:
        A uint8 numpy array of the same shape.

    Raises:
        DataError: ``high <= low``.

    Examples:
        >>> import numpy as np
        >>> to_uint8(np.array([-1.0, 0.0, 1.0, 3.0]))
        array([  0, 128, 255, 255], dtype=uint8)
        >>> to_uint8(np.array([0.0, 0.5, 1.0]), value_range=(0, 1))
        array([  0, 128, 255], dtype=uint8)
    """
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    lo, hi = value_range
    if not hi > lo:
        raise DataError(f"value_range must be (low, high) with high > low, got {value_range}")
    x = (x.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5
    return np.clip(np.floor(x), 0, 255).astype(np.uint8)


class FeatureExtractor:
    """Batched, no-grad ``images -> features`` (and class probabilities when available).

    Build one with :func:`create_extractor`; construct it directly only to wrap a network of
    your own.

    Args:
        name: the extractor's name (in messages and the protocol).
        prepare: maps a uint8 (B, H, W[, C]) batch tensor to the network's float input.
        net: module returning ``(features, logits or None)``; it is put in eval mode.
        feature_dim: D, the feature size.
        protocol: what makes its numbers comparable (name, weights sha256, resize rule, ...).
        num_classes: size of the logits, or None when the net has no classifier (no IS).
        batch_size: images per forward pass.
        device: where the net runs.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> class Mean(torch.nn.Module):  # a toy "network": the mean grey level
        ...     def forward(self, x):
        ...         return x.mean(dim=(1, 2), keepdim=True).flatten(1), None
        >>> ext = FeatureExtractor("mean", lambda b: b.float(), Mean(), 1, {"extractor": "mean"})
        >>> ext(np.full((3, 4, 4), 7, np.uint8))
        array([[7.],
               [7.],
               [7.]])
    """

    def __init__(
        self,
        name: str,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        net: nn.Module,
        feature_dim: int,
        protocol: dict,
        num_classes: int | None = None,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        self.name = name
        self.prepare = prepare
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.feature_dim = int(feature_dim)
        self.num_classes = num_classes
        self.batch_size = int(batch_size)
        self.protocol = dict(protocol)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.name!r}, dim={self.feature_dim})"

    def __call__(self, images: Any) -> np.ndarray:
        """float64 features (N, feature_dim) of uint8 images (see :meth:`extract`)."""
        return self.extract(images)[0]

    @torch.no_grad()
    def extract(self, images: Any, probs: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Features and, with ``probs=True``, softmax class probabilities (float64).

        Args:
            images: (N, H, W) or (N, H, W, C) uint8 images.
            probs: also return class probabilities (needs a classifier head).

        Returns:
            ``(features (N, D), probabilities (N, num_classes) or None)``.

        Raises:
            DataError: images that are not uint8 NHW/NHWC.
            ModelError: ``probs=True`` for a net without classifier.
        """
        imgs = check_images(images)
        if probs and self.num_classes is None:
            raise ModelError(f"extractor {self.name!r} has no classifier: no class probabilities "
                             "for the Inception Score")
        feats, prob_list = [], []
        for start in range(0, imgs.shape[0], self.batch_size):
            f, p = self._batch(imgs[start:start + self.batch_size], probs)
            feats.append(f)
            prob_list.append(p)
        if not feats:
            empty = np.zeros((0, self.feature_dim))
            return empty, (np.zeros((0, self.num_classes)) if probs else None)
        return np.concatenate(feats), (np.concatenate(prob_list) if probs else None)

    def _batch(self, imgs: torch.Tensor, probs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = self.prepare(imgs).to(self.device)
        f, logits = self.net(x)
        p = None
        if probs:
            p = torch.softmax(logits.double(), dim=1).cpu().numpy()
        return f.double().cpu().numpy(), p

    def iter_split(self, split: Any, indices: Any = None, probs: bool = False
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yield ``(indices, features, probs)`` batch by batch over an fmlab ImageSplit.

        Args:
            split: an :class:`~fmlab.data.ImageSplit`.
            indices: which samples (default all), in the order given.
            probs: also yield class probabilities.
        """
        for idx, imgs in split.iter_batches(self.batch_size, indices):
            f, p = self.extract(imgs, probs)
            yield idx, f, p


class _BackboneNet(nn.Module):
    """(features, logits) from a backbone's trunk and head."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self.backbone.trunk(x)
        head = self.backbone.head
        return feats, (head(feats) if head is not None else None)


def backbone_extractor(name: str, weights: str | Path | None = None, batch_size: int = 256,
                       device: str | torch.device = "cpu", **kwargs: Any) -> FeatureExtractor:
    """An extractor from any fmlab backbone: trunk features, head logits for IS.

    Args:
        name: an fmlab backbone name (``resnet20_cifar``, ``timm:...``, ``open_clip:...``).
        weights: local weights file; None gives the backbone's default initialisation.
        batch_size: images per forward pass.
        device: where the net runs.
        **kwargs: further arguments of :func:`fmlab.models.create_backbone`.

    Returns:
        The extractor; its preprocessing is the backbone's own (resize, channels, mean/std).
    """
    from fmlab.models import create_backbone

    bb = create_backbone(name, weights=weights, **kwargs)
    if not hasattr(bb, "trunk") or not hasattr(bb, "preprocess"):
        raise ModelError(f"{name!r} is not an image backbone; it cannot extract image features")
    spec = bb.preprocess
    head = bb.head
    num_classes = getattr(head, "out_features", None) if head is not None else None
    protocol = {
        "extractor": name,
        "backbone": bb.name,
        "weights_sha256": bb.weights_sha256,
        "feature_dim": bb.feature_dim,
        "input_size": list(spec.input_size),
        "resize": f"{spec.resize} (half-pixel centres, torch interpolate align_corners=False)",
        "preprocess": spec.to_dict(),
        "features": "backbone trunk output",
        "probs": "softmax of backbone head" if num_classes else None,
    }
    return FeatureExtractor(name, spec, _BackboneNet(bb), bb.feature_dim, protocol,
                            num_classes=num_classes, batch_size=batch_size, device=device)


def _register_backbone(name: str) -> None:
    EXTRACTORS.add(name, lambda weights=None, **kw: backbone_extractor(name, weights, **kw))


_register_backbone("lenet5_mnist")
_register_backbone("resnet56_cifar")


def _inception_prepare(imgs: torch.Tensor) -> torch.Tensor:
    """uint8 NHW/NHWC -> float NCHW in [0, 255], grey replicated to RGB (resize is in the net)."""
    if imgs.ndim == 3:
        imgs = imgs.unsqueeze(-1)
    x = imgs.permute(0, 3, 1, 2).float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@EXTRACTORS.register("inception_v3")
def inception_extractor(weights: str | Path | None = None, batch_size: int = 64,
                        device: str | torch.device = "cpu") -> FeatureExtractor:
    """FID-Inception (pool3, 2048-d) with the TF1 resize, as behind published FID/IS numbers.

    Args:
        weights: a local ``pt_inception-2015-12-05`` state dict (.pth or .safetensors). Never
            downloaded; None gives random weights (shape tests only).
        batch_size: images per forward pass.
        device: where the net runs.

    Returns:
        The extractor (features: pool3, 2048-d; probabilities: 1008 classes).
    """
    from fmlab.metrics.inception import FEATURE_DIM, INPUT_SIZE, NUM_CLASSES, FIDInceptionV3

    net = FIDInceptionV3()
    sha = None
    if weights is not None:
        sha = load_inception_weights(net, weights)
    protocol = {
        "extractor": "inception_v3",
        "weights_sha256": sha,
        "feature_dim": FEATURE_DIM,
        "input_size": list(INPUT_SIZE),
        "resize": "tf1_bilinear (src = dst * in / out, no half-pixel centres)",
        "normalise": "(x - 128) / 128 on [0, 255]",
        "features": "pool3 (2048)",
        "probs": "softmax of fc logits without bias (1008)",
    }
    return FeatureExtractor("inception_v3", _inception_prepare, net, FEATURE_DIM, protocol,
                            num_classes=NUM_CLASSES, batch_size=batch_size, device=device)


def load_inception_weights(net: nn.Module, weights: str | Path) -> str:
    """Load a FID-Inception state dict strictly; return the file's sha256.

    Args:
        net: a :class:`~fmlab.metrics.inception.FIDInceptionV3`.
        weights: path of the state dict (safetensors, or a torch file loaded weights-only).

    Returns:
        The sha256 of the file, recorded in the extractor protocol.

    Raises:
        ModelError: keys or shapes that are not the pt_inception-2015-12-05 layout.
    """
    from fmlab.models import load_weights_file
    from fmlab.utils.io import sha256_file

    path = Path(weights).expanduser()
    sd = load_weights_file(path)
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ModelError(
            f"weights {path} are not FID-Inception (pt_inception-2015-12-05 layout): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    net.load_state_dict(sd, strict=False)
    return sha256_file(path)


def create_extractor(name: str, weights: str | Path | None = None, **kwargs: Any
                     ) -> FeatureExtractor:
    """Build a feature extractor by registry name or fmlab backbone name.

    Without weights the network is randomly initialised, which is only good for tests: a
    warning says so and the protocol records ``weights_sha256: None``.

    Args:
        name: a name in :data:`EXTRACTORS` (``inception_v3``, ``lenet5_mnist``,
            ``resnet56_cifar``) or any fmlab backbone name (``timm:<model>``, ...).
        weights: local weights file (never downloaded).
        **kwargs: ``batch_size``, ``device`` and backbone options, passed to the factory.

    Returns:
        A :class:`FeatureExtractor`.

    Raises:
        ModelError: an unknown name (the message lists the registered ones).

    Examples:
        >>> import warnings
        >>> import numpy as np
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # random weights: fine for an example only
        ...     ext = create_extractor("lenet5_mnist")
        >>> ext
        FeatureExtractor('lenet5_mnist', dim=84)
        >>> feats, probs = ext.extract(np.zeros((2, 28, 28), np.uint8), probs=True)
        >>> feats.shape, probs.shape
        ((2, 84), (2, 10))
        >>> ext.protocol["weights_sha256"] is None
        True
    """
    if name in EXTRACTORS:
        ext = EXTRACTORS.get(name)(weights=weights, **kwargs)
    else:
        try:
            ext = backbone_extractor(name, weights=weights, **kwargs)
        except FmlabError as e:
            if "unknown backbone" not in str(e):
                raise
            raise ModelError(
                f"unknown feature extractor {name!r}; registered: {', '.join(EXTRACTORS)}; "
                "or any fmlab backbone name (timm:<model>, open_clip:<arch>, resnet20_cifar, ...)"
            ) from None
    if ext.protocol.get("weights_sha256") is None:
        warnings.warn(
            f"feature extractor {name!r} has random weights: its metric values are only "
            "good for tests", stacklevel=2)
    return ext
