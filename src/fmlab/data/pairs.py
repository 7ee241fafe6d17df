"""Two views of one image related by a known random warp (CroCo's pair generator, synthetic).

CroCo pre-trains on pairs of views of the same scene. Without multi-view data, the second view is
the first one warped by a random homography (a similarity plus a small perspective term), drawn
per sample from a ``torch.Generator`` and applied with one batched ``grid_sample``. The warp
parameters come back with the views, so the same generator also makes labelled pairs for a
geometric probe (regress the warp from frozen features of both views).

Warp (normalised coordinates, [-1, 1] across the image): output pixel (u, v) of view 2 samples
view 1 at H (u, v, 1) (dehomogenised), with

    H = [[s cos a, -s sin a, tx], [s sin a, s cos a, ty], [px, py, 1]],  s = exp(log_s).

Parameters per sample, uniform in their ranges: ``tx, ty`` in [-max_shift, max_shift] (fractions
of the half-width), ``a`` in [-max_rotate, max_rotate] (radians), ``log_s`` in
[-max_log_scale, max_log_scale], ``px, py`` in [-perspective, perspective]. Pixels that fall
outside view 1 are 0 after normalisation (the mean colour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.data.augment import BatchTransform, Compose, MaskFn, _rand, to_float_images
from fmlab.errors import ConfigError, DataError

__all__ = ["WARP_PARAMS", "PairTransform", "RandomWarp", "homography", "warp_images"]

#: the columns of the ``warp`` tensor, in order
WARP_PARAMS = ("tx", "ty", "angle", "log_scale", "px", "py")


def homography(params: Tensor) -> Tensor:
    """(B, 6) warp parameters (:data:`WARP_PARAMS`) -> (B, 3, 3) matrices H.

    Examples:
        >>> import torch
        >>> bool(torch.equal(homography(torch.zeros(1, 6))[0], torch.eye(3)))
        True
    """
    tx, ty, a, log_s, px, py = params.unbind(-1)
    s = log_s.exp()
    one = torch.ones_like(tx)
    rows = [torch.stack([s * a.cos(), -s * a.sin(), tx], -1),
            torch.stack([s * a.sin(), s * a.cos(), ty], -1),
            torch.stack([px, py, one], -1)]
    return torch.stack(rows, dim=1)


def warp_images(x: Tensor, params: Tensor) -> Tensor:
    """Warp each image of ``x`` (B, C, H, W) by its parameters (B, 6); outside pixels are 0.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bool(torch.allclose(warp_images(x, torch.zeros(2, 6)), x, atol=1e-5))
        True
    """
    b, _, h, w = x.shape
    if params.shape != (b, len(WARP_PARAMS)):
        raise DataError(f"warp parameters must have shape ({b}, {len(WARP_PARAMS)}), got "
                        f"{tuple(params.shape)}")
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, h * w, 3)
    mapped = pts @ homography(params.to(x.dtype)).transpose(1, 2)  # (B, HW, 3)
    grid = mapped[..., :2] / mapped[..., 2:].clamp(min=1e-3)
    return F.grid_sample(x, grid.view(b, h, w, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


class RandomWarp:
    """Draw per-sample warp parameters and apply them: ``(view2, params) = warp(x, generator)``.

    Args:
        max_shift: |tx|, |ty| bound (fraction of the half-width).
        max_rotate: |angle| bound in radians.
        max_log_scale: |log s| bound.
        perspective: |px|, |py| bound (0: a similarity warp).

    Examples:
        >>> import torch
        >>> warp = RandomWarp(0.25, 0.3, 0.2)
        >>> v2, p = warp(torch.rand(4, 3, 8, 8), torch.Generator().manual_seed(0))
        >>> tuple(v2.shape), tuple(p.shape), bool(p[:, 0].abs().max() <= 0.25)
        ((4, 3, 8, 8), (4, 6), True)
    """

    def __init__(self, max_shift: float = 0.25, max_rotate: float = 0.26,
                 max_log_scale: float = 0.2, perspective: float = 0.0) -> None:
        bounds = (max_shift, max_rotate, max_log_scale, perspective)
        if any(v < 0 for v in bounds):
            raise ConfigError(f"warp bounds must be >= 0, got max_shift={max_shift}, "
                              f"max_rotate={max_rotate}, max_log_scale={max_log_scale}, "
                              f"perspective={perspective}")
        self.bounds = torch.tensor([max_shift, max_shift, max_rotate, max_log_scale,
                                    perspective, perspective])

    def sample(self, batch_size: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Tensor:
        """(B, 6) parameters, each uniform in [-bound, bound]."""
        u = _rand((batch_size, len(WARP_PARAMS)), generator, torch.device(device))
        return (2 * u - 1) * self.bounds.to(u.device)

    def __call__(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        params = self.sample(x.shape[0], generator, x.device)
        return warp_images(x, params), params

    def __repr__(self) -> str:
        return f"RandomWarp(bounds={self.bounds.tolist()})"


class PairTransform(BatchTransform):
    """``{"images": uint8}`` -> ``images`` (view 1), ``images2`` (its warp), ``warp`` (B, 6).

    View 1 is ``outputs["images"]`` (e.g. RRC + flip + normalise); view 2 warps the normalised
    view 1, so the two differ only by the warp. ``masks`` hooks (CroCo's 90 % mask) are added as
    in :class:`~fmlab.data.augment.BatchTransform`.

    Examples:
        >>> import torch
        >>> from fmlab.data.augment import Compose, Normalize
        >>> t = PairTransform(Compose([Normalize()]), RandomWarp())
        >>> out = t({"images": torch.zeros(2, 8, 8, 3, dtype=torch.uint8)},
        ...         torch.Generator().manual_seed(0))
        >>> sorted(out), tuple(out["warp"].shape)
        (['images', 'images2', 'warp'], (2, 6))
    """

    def __init__(self, view: Compose, warp: RandomWarp, channels: int | None = None,
                 masks: Sequence[MaskFn] = ()) -> None:
        super().__init__({"images": view}, channels=channels, masks=masks)
        self.warp = warp

    def __call__(self, batch: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        if "images" not in batch:
            raise DataError(f"batch has no 'images' key (keys: {sorted(batch)})")
        x = to_float_images(batch["images"], channels=self.channels)
        out: dict[str, Any] = {k: v for k, v in batch.items() if k != "images"}
        view1 = self.outputs["images"](x, generator)
        view2, params = self.warp(view1, generator)
        out.update(images=view1, images2=view2, warp=params)
        for fn in self.masks:
            out.update(fn(x.shape[0], generator, x.device))
        return out
