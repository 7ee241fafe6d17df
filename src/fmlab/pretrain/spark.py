"""SparK: BERT-style masked modelling for convolutional networks (Tian et al., ICLR 2023).

The mask lives on the patch grid of the backbone's coarsest feature map (a CIFAR ResNet: 8 x 8
patches of 4 px on 32 px images); ratio 0.6. Sparse convolution is emulated densely: the input is
zeroed outside the visible patches and, during the encoder's forward, every Conv2d output is
re-multiplied by the visible mask resized to its resolution and every BatchNorm2d computes its
statistics over visible positions only (then re-masks), so masked regions never leak into
visible features and never shift the statistics. The features of every stage (the trunk's
``layer*`` children, captured with forward hooks) are "densified": normalised (sparse BN), masked
positions filled with a learned per-scale mask token, projected to the decoder width; a light
U-Net decoder goes from the coarsest scale to the finest (upsample, conv, add the next scale's
densified features, conv) and a 1x1 conv predicts pixels. Loss: MSE on per-patch-normalised
pixels ((x - mean_patch) / std_patch, MAE's ``norm_pix_loss``), masked patches only.

``spark_dense`` is the paper's ablation: the same model fed the masked image (holes zero) with
ordinary dense convolutions and BatchNorm; the decoder still fills masked positions with the mask
tokens, so the only difference is the sparse emulation. Defaults: decoder width 128 at the
coarsest scale, halved at each finer one (SparK's light decoder, at CPU size).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.data.masks import batch_or_random_mask, mae_mask_fn, num_kept, random_patch_mask
from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.mae import mae_loss

__all__ = ["SparK", "SparKDense", "mask_at", "sparse_batch_norm", "sparse_encoding"]


def mask_at(active: Tensor, like: Tensor) -> Tensor:
    """The (N, 1, g, g) visible mask resized (nearest) to ``like``'s spatial size and dtype.

    Examples:
        >>> mask_at(torch.tensor([[[[1., 0.]]]]), torch.zeros(1, 3, 2, 4))[0, 0].tolist()
        [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    """
    return F.interpolate(active.float(), size=like.shape[-2:], mode="nearest").to(like.dtype)


def sparse_batch_norm(bn: nn.BatchNorm2d, x: Tensor, active: Tensor) -> Tensor:
    """BatchNorm over the visible positions only (SparK's SparseBatchNorm2d), output re-masked.

    In training the mean and variance are taken over the visible (N, H, W) positions and the
    running statistics follow them; in eval the running statistics are used.

    Args:
        bn: the module whose affine parameters and running statistics are used.
        x: (N, C, H, W) features (zero at masked positions).
        active: (N, 1, H, W) visible mask (1 visible, 0 masked).

    Returns:
        The normalised features, zero at masked positions.

    Examples:
        >>> bn = nn.BatchNorm2d(1)
        >>> x = torch.tensor([[[[1., 3., 100.]]]])
        >>> sparse_batch_norm(bn, x, torch.tensor([[[[1., 1., 0.]]]])).round().tolist()
        [[[[-1.0, 1.0, 0.0]]]]
    """
    a = active.float()
    xf = x.float()
    if bn.training:
        count = a.sum().clamp(min=1.0)
        mean = (xf * a).sum((0, 2, 3)) / count
        var = (((xf - mean.view(1, -1, 1, 1)) ** 2) * a).sum((0, 2, 3)) / count
        if bn.track_running_stats and bn.running_mean is not None:
            m = bn.momentum if bn.momentum is not None else 0.1
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1.0)
                bn.running_mean.mul_(1 - m).add_(m * mean.detach())
                bn.running_var.mul_(1 - m).add_(m * unbiased.detach())
                bn.num_batches_tracked.add_(1)
    else:
        mean, var = bn.running_mean.float(), bn.running_var.float()
    y = (xf - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
    if bn.affine:
        y = y * bn.weight.float().view(1, -1, 1, 1) + bn.bias.float().view(1, -1, 1, 1)
    return (y * a).to(x.dtype)


@contextlib.contextmanager
def sparse_encoding(net: nn.Module, active: Tensor) -> Iterator[None]:
    """Inside the block, ``net`` behaves as a sparse CNN on the visible grid ``active``.

    Every ``Conv2d`` output is multiplied by the resized mask (forward hook) and every
    ``BatchNorm2d`` runs :func:`sparse_batch_norm` (its ``forward`` is swapped for the block).

    Args:
        net: a convolutional network (any mix of Conv2d, BatchNorm2d and elementwise ops).
        active: (N, 1, g, g) visible mask on the coarsest grid.
    """
    handles = []
    swapped: list[nn.Module] = []

    def conv_hook(_mod: nn.Module, _inp: Any, out: Tensor) -> Tensor:
        return out * mask_at(active, out)

    def sparse_bn(bn: nn.BatchNorm2d):
        return lambda x: sparse_batch_norm(bn, x, mask_at(active, x))

    try:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, nn.BatchNorm2d):
                m.forward = sparse_bn(m)
                swapped.append(m)
        yield
    finally:
        for h in handles:
            h.remove()
        for m in swapped:
            del m.forward


def patchify(x: Tensor, p: int) -> Tensor:
    """(N, C, H, W) -> (N, L, p*p*C) in (row, col, channel) order, as the ViT's ``patchify``."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


@register_objective("spark")
class SparK(Objective):
    """SparK on ``batch["images"]`` with ``batch["mask"]`` (N, g*g), True where masked."""

    transform_filled = (*Objective.transform_filled, "patch_size", "mask_ratio")
    filled_by_run = (*Objective.filled_by_run, "sparse")

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None,
                 mask_ratio: float = 0.6, decoder_dim: int = 128, norm_pix_loss: bool = True,
                 sparse: bool = True) -> None:
        super().__init__()
        self._set_encoder(encoder, feature_dim)
        self.stages = [m for name, m in self.encoder.named_children() if name.startswith("layer")]
        if not self.stages:
            raise ConfigError(f"SparK needs a CNN whose stages are children named layer1, "
                              f"layer2, ... (a CIFAR ResNet); {type(self.encoder).__name__} "
                              f"has none")
        self.sparse, self.mask_ratio, self.norm_pix_loss = sparse, float(mask_ratio), norm_pix_loss
        channels, sizes = self._probe()
        self.patch_size = 32 // sizes[-1]
        self.grid = sizes[-1]
        num_kept(self.grid ** 2, self.mask_ratio)
        widths = [max(decoder_dim >> k, 8) for k in range(len(channels))]  # coarsest first
        rev = channels[::-1]
        self.densify_norms = nn.ModuleList(nn.BatchNorm2d(c) for c in rev)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.randn(1, c, 1, 1) * 0.02)
                                            for c in rev)
        self.densify_proj = nn.ModuleList(
            nn.Conv2d(c, w, 1 if k == 0 else 3, 1, 0 if k == 0 else 1)
            for k, (c, w) in enumerate(zip(rev, widths, strict=True)))
        self.up = nn.ModuleList(_conv_bn_relu(widths[k - 1], widths[k])
                                for k in range(1, len(widths)))
        self.fuse = nn.ModuleList(_conv_bn_relu(w, w) for w in widths[1:])
        self.head = nn.Conv2d(widths[-1], _in_chans(self.encoder), 1)

    def _probe(self) -> tuple[list[int], list[int]]:
        """Channels and sizes of each stage on a 32 px input (eval mode: no statistics move)."""
        was = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                feats = self._stage_outputs(torch.zeros(1, _in_chans(self.encoder), 32, 32))
        finally:
            self.encoder.train(was)
        return [f.shape[1] for f in feats], [f.shape[-1] for f in feats]

    def _stage_outputs(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        hooks = [s.register_forward_hook(lambda _m, _i, out: feats.append(out))
                 for s in self.stages]
        try:
            self.encoder(x)
        finally:
            for h in hooks:
                h.remove()
        return feats

    def encode_stages(self, x: Tensor, active: Tensor) -> list[Tensor]:
        """Stage features, finest first. Sparse: masked pixels are zeroed and stay empty at
        every layer. Dense: ``x`` goes through the ordinary network as given."""
        if not self.sparse:
            return self._stage_outputs(x)
        with sparse_encoding(self.encoder, active):
            return self._stage_outputs(x * mask_at(active, x))

    def decode(self, feats: Sequence[Tensor], active: Tensor) -> Tensor:
        """Densify each scale, then the U-Net decoder, coarsest to finest -> (N, C, H, W)."""
        x = None
        for k, f in enumerate(reversed(feats)):
            a = mask_at(active, f)
            norm = self.densify_norms[k]
            f = sparse_batch_norm(norm, f, a) if self.sparse else norm(f)
            f = torch.where(a > 0, f, self.mask_tokens[k].to(f.dtype))
            f = self.densify_proj[k](f)
            if x is None:
                x = f
            else:
                x = self.up[k - 1](F.interpolate(x, size=f.shape[-2:], mode="nearest"))
                x = self.fuse[k - 1](x + f)
        assert x is not None
        return self.head(x)

    def _mask(self, batch: Mapping[str, Any], n: int, device: torch.device) -> Tensor:
        return batch_or_random_mask(batch, n, self.grid ** 2, self.mask_ratio, device, f" on SparK's {self.grid}x{self.grid} grid")

    def reconstruct(self, images: Tensor, mask: Tensor) -> Tensor:
        """Pixel predictions (N, C, H, W) from the images with ``mask`` (N, g*g) hidden."""
        if images.shape[-1] != self.grid * self.patch_size or images.shape[-2] != images.shape[-1]:
            raise DataError(f"SparK expects {self.grid * self.patch_size}px square images, got "
                            f"{tuple(images.shape[-2:])}")
        active = (~mask).view(-1, 1, self.grid, self.grid).to(images.dtype)
        masked = images * mask_at(active, images)  # the dense ablation sees this image
        return self.decode(self.encode_stages(masked, active), active)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        mask = self._mask(batch, images.shape[0], images.device)
        pred = self.reconstruct(images, mask)
        loss = mae_loss(patchify(pred, self.patch_size), patchify(images, self.patch_size),
                        mask, self.norm_pix_loss)
        return loss, {"loss": loss.detach(), "mask_ratio": mask.float().mean()}

    def transform_arguments(self) -> dict[str, Any]:
        """The transform draws masks on the coarsest grid (patch = the total stride)."""
        return {"patch_size": self.patch_size, "mask_ratio": self.mask_ratio}

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Input | masked input | reconstruction (visible patches kept, masked ones predicted,
        un-normalised with each true patch's mean and std when ``norm_pix_loss``)."""
        from fmlab.pretrain._picture import denormalize, patch_mask_image, save_panels

        mask = random_patch_mask(images.shape[0], self.grid ** 2, self.mask_ratio, None).mask
        p = self.patch_size
        pred = patchify(self.reconstruct(images, mask), p).float()
        true = patchify(images, p).float()
        if self.norm_pix_loss:
            mu, sd = true.mean(-1, keepdim=True), (true.var(-1, keepdim=True, unbiased=False)
                                                  + 1e-6).sqrt()
            pred = pred * sd + mu
        pasted = torch.where(mask.unsqueeze(-1), pred, true)
        n, c, h, w = images.shape
        g = self.grid
        img = pasted.view(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
        spec = self.preprocess
        mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
        m = patch_mask_image(mask, g, h)
        inp = denormalize(images, mean, std)
        return save_panels(path, [inp, inp * (1 - m) + 0.5 * m, denormalize(img, mean, std)],
                           ["input", "mask", "recon"])

    @classmethod
    def default_transform(cls, image_size: int = 32, patch_size: int = 4,
                          mask_ratio: float = 0.6, scale: tuple[float, float] = (0.2, 1.0),
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC (0.2, 1) + flip + normalise -> ``images``, plus ``ids_keep``/``mask``."""
        from fmlab.data.augment import masked_transform

        return masked_transform(lambda length: mae_mask_fn(length, mask_ratio), image_size,
                                patch_size, scale, mean, std, channels)


@register_objective("spark_dense")
class SparKDense(SparK):
    """SparK's ablation: the same model, dense convolutions on the zero-filled masked image."""

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("sparse", False)
        super().__init__(encoder, feature_dim, **kwargs)


def _in_chans(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3

