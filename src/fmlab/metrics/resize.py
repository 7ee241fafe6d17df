"""TensorFlow-1 compatible bilinear resize (``tf.image.resize_bilinear``, legacy mode).

The original FID code fed images through TF1's ``ResizeBilinear`` with ``align_corners=False``
and no half-pixel centres: output pixel d samples input position s = d * in / out. PyTorch's
``F.interpolate(..., align_corners=False)`` (and PIL) sample s = (d + 0.5) * in / out - 0.5, a
half-pixel shift that moves FID on 32x32 inputs (algorithm notes §3.1). The resize is separable,
so it is two small interpolation matrices applied along H and W.
"""

from __future__ import annotations

import torch


def tf1_resize_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n_out, n_in) weights: row d mixes inputs floor(s) and floor(s)+1, s = d * n_in / n_out.

    Args:
        n_in: input length.
        n_out: output length.
        dtype: dtype of the result.

    Returns:
        The interpolation matrix; each row sums to one.

    Examples:
        >>> tf1_resize_matrix(2, 4)  # no half-pixel centres: output 0 is input 0 exactly
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000],
                [0.0000, 1.0000],
                [0.0000, 1.0000]], dtype=torch.float64)
    """
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    i0 = src.floor().clamp(max=n_in - 1)
    frac = src - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    w.index_put_((rows, i0), 1.0 - frac, accumulate=True)
    w.index_put_((rows, i1), frac, accumulate=True)
    return w.to(dtype)


def tf1_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float (N, C, H, W) images to ``size`` the way TF1's legacy bilinear does.

    Args:
        x: float (N, C, H, W) tensor.
        size: ``(height, width)`` of the output.

    Returns:
        The (N, C, height, width) tensor (``x`` itself when the size already matches).

    Examples:
        >>> import torch
        >>> tf1_bilinear_resize(torch.tensor([[[[0.0, 2.0]]]]), (1, 4))
        tensor([[[[0., 1., 2., 2.]]]])
    """
    h, w = size
    if tuple(x.shape[-2:]) == (h, w):
        return x
    wy = tf1_resize_matrix(x.shape[-2], h, x.dtype).to(x.device)
    wx = tf1_resize_matrix(x.shape[-1], w, x.dtype).to(x.device)
    return torch.einsum("oh,nchw,pw->ncop", wy, x, wx)
