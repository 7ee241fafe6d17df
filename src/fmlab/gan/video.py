"""Text-to-video GAN nets and the temporal-coherence terms of TGANs-C (issue 23; papers.md #42).

Videos are ``(B, T, C, H, W)`` in [-1, 1] (the layout of the ``video`` source and of
:func:`fmlab.metrics.text_image.frame_jitter`). The caption embedding e (MiniLM, 384-d) enters
every net through its own :class:`~fmlab.gan.caption_cond.CaptionProjector` c(e):

- :class:`VideoGenerator`: [z; c(e)] → a linear map to a (4ch, T/4, S/8, S/8) volume → 3D
  transposed convolutions that double time twice and space three times → tanh frames;
- :class:`VideoDiscriminator`: 3D convolutions over the whole clip → φ (pooled to a 2 × 4 × 4
  grid and flattened), score ψ(φ) + ⟨c(e), Vφ⟩
  (real + right caption high; real + wrong caption and fake + right caption low, trained with
  :class:`~fmlab.gan.matching.MatchingAwareLoss`);
- :class:`FrameDiscriminator`: the same with 2D convolutions on each frame, scores averaged over
  the frames (appearance and caption fit per frame, blind to motion);
- temporal coherence, the two variants of the paper: :func:`temporal_coherence_penalty`
  (ℓ2 of consecutive frames' frame-D features of generated clips, TGANs-C-C) and
  :class:`MotionDiscriminator` (a matching-aware D on the adjacent-frame differences x_{t+1} − x_t,
  so the statistics of motion of generated clips must match real ones, TGANs-C-A).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.gan.caption_cond import CaptionProjector
from fmlab.gan.conditioning import maybe_sn
from fmlab.gan.nets.base import check_sizes

__all__ = ["FrameDiscriminator", "MotionDiscriminator", "VideoDiscriminator", "VideoGenerator",
           "minibatch_std", "temporal_coherence_penalty"]


def _check_video(x: torch.Tensor, who: str, channels: int, frames: int | None = None) -> None:
    if x.dim() != 5 or x.shape[2] != channels or (frames is not None and x.shape[1] != frames):
        want = f"(B, {frames or 'T'}, {channels}, H, W)"
        raise DataError(f"{who}: videos must have shape {want}, got {tuple(x.shape)}")


class VideoGenerator(nn.Module):
    """G(z, e) → ``(B, frames, channels, size, size)`` clips in [-1, 1].

    Args:
        z_dim: noise size.
        e_dim: caption embedding size.
        c_dim: condition vector size.
        frames: clip length (a multiple of 4).
        size: frame side (a multiple of 8).
        channels: image channels.
        ch: base width.

    Examples:
        >>> G = VideoGenerator(z_dim=8, e_dim=6, c_dim=4, frames=8, size=16, ch=4)
        >>> G(torch.zeros(2, 8), torch.zeros(2, 6)).shape
        torch.Size([2, 8, 1, 16, 16])
    """

    def __init__(self, z_dim: int = 64, e_dim: int = 384, c_dim: int = 32, frames: int = 8,
                 size: int = 32, channels: int = 1, ch: int = 32) -> None:
        super().__init__()
        z_dim, e_dim, c_dim, frames, size, channels, ch = check_sizes(
            "VideoGenerator", z_dim=z_dim, e_dim=e_dim, c_dim=c_dim, frames=frames, size=size,
            channels=channels, ch=ch)
        if frames % 4 or size % 8:
            raise ConfigError(f"VideoGenerator: frames must be a multiple of 4 and size of 8, "
                              f"got frames={frames}, size={size}")
        self.z_dim, self.frames, self.size, self.channels, self.ch = z_dim, frames, size, channels, ch
        self.project = CaptionProjector(e_dim, c_dim)
        self.t0, self.s0 = frames // 4, size // 8
        self.fc = nn.Linear(z_dim + c_dim, 4 * ch * self.t0 * self.s0 * self.s0)
        self.bn0 = nn.BatchNorm3d(4 * ch)
        self.up1 = nn.ConvTranspose3d(4 * ch, 2 * ch, 4, 2, 1)  # time and space × 2
        self.bn1 = nn.BatchNorm3d(2 * ch)
        self.up2 = nn.ConvTranspose3d(2 * ch, ch, 4, 2, 1)
        self.bn2 = nn.BatchNorm3d(ch)
        self.up3 = nn.ConvTranspose3d(ch, ch, (3, 4, 4), (1, 2, 2), 1)  # space only
        self.bn3 = nn.BatchNorm3d(ch)
        self.out = nn.Conv3d(ch, channels, 3, 1, 1)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape (n, z_dim), drawn on the CPU from ``generator``."""
        return torch.randn(n, self.z_dim, generator=generator).to(self.fc.weight.device)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim or z.shape[0] != e.shape[0]:
            raise DataError(f"VideoGenerator: z must be (B, {self.z_dim}) with one caption per "
                            f"row, got z {tuple(z.shape)} and {e.shape[0]} captions")
        h = self.fc(torch.cat([z, self.project(e)], 1))
        h = F.relu(self.bn0(h.view(z.shape[0], 4 * self.ch, self.t0, self.s0, self.s0)))
        for up, bn in ((self.up1, self.bn1), (self.up2, self.bn2), (self.up3, self.bn3)):
            h = F.relu(bn(up(h)))
        return torch.tanh(self.out(h)).transpose(1, 2)  # (B, C, T, H, W) -> (B, T, C, H, W)


def minibatch_std(phi: torch.Tensor, group: int = 4) -> torch.Tensor:
    """One feature per sample: the std over its group of ``group`` samples of each feature, averaged
    (ProGAN's minibatch standard deviation). A G that draws the same clip for every z and caption
    gets 0 where real batches get a clear positive value, so D can see the collapse itself.

    Examples:
        >>> [round(v, 3) for v in minibatch_std(torch.ones(4, 3)).flatten().tolist()]
        [0.0, 0.0, 0.0, 0.0]
    """
    b = phi.shape[0]
    g = min(group, b)
    if b % g:
        g = b  # one group when the batch does not split evenly
    x = phi.view(g, -1, phi.shape[1])  # groups of strided samples
    std = (x.var(0, unbiased=False) + 1e-8).sqrt().mean(1)  # (b // g,)
    return std.repeat(g).view(b, 1)


def _with_mbstd(phi: torch.Tensor, on: bool) -> torch.Tensor:
    return torch.cat([phi, minibatch_std(phi)], 1) if on else phi


class _MatchingHead(nn.Module):
    """ψ(φ) + ⟨c(e), Vφ⟩ (the projection discriminator's epilogue with a caption)."""

    def __init__(self, feature_dim: int, e_dim: int, c_dim: int, sn: bool = True) -> None:
        super().__init__()
        self.psi = maybe_sn(nn.Linear(feature_dim, 1), sn)
        self.project = CaptionProjector(e_dim, c_dim)
        self.V = maybe_sn(nn.Linear(feature_dim, c_dim, bias=False), sn)

    def forward(self, phi: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if phi.shape[0] != e.shape[0]:
            raise DataError(f"discriminator: {phi.shape[0]} inputs but {e.shape[0]} captions")
        return self.psi(phi).squeeze(1) + (self.project(e) * self.V(phi)).sum(1)


def _conv_stack(dims: int, channels: int, ch: int, layers: int, sn: bool = True) -> nn.Sequential:
    """``layers`` stride-2 convolutions with LeakyReLU (3D: time halved by the first two only),
    spectrally normalised when ``sn`` (as the image GAN lab's D by default)."""
    mods: list[nn.Module] = []
    cin = channels
    for i in range(layers):
        cout = ch * 2 ** i
        if dims == 2:
            mods.append(maybe_sn(nn.Conv2d(cin, cout, 4, 2, 1), sn))
        else:
            # time kernel 3 (padding 1) fits any clip length; time stride 2 in the first two
            mods.append(maybe_sn(nn.Conv3d(cin, cout, (3, 4, 4), (2 if i < 2 else 1, 2, 2), 1), sn))
        mods.append(nn.LeakyReLU(0.2))
        cin = cout
    return nn.Sequential(*mods)


class VideoDiscriminator(nn.Module):
    """s(x, e) for whole clips: 3D convolutions → global average → matching head.

    Examples:
        >>> D = VideoDiscriminator(e_dim=6, c_dim=4, ch=4)
        >>> D(torch.zeros(3, 8, 1, 16, 16), torch.zeros(3, 6)).shape
        torch.Size([3])
    """

    def __init__(self, e_dim: int = 384, c_dim: int = 32, channels: int = 1, ch: int = 32,
                 layers: int = 3, sn: bool = True, mbstd: bool = False) -> None:
        super().__init__()
        e_dim, c_dim, channels, ch, layers = check_sizes(
            "VideoDiscriminator", e_dim=e_dim, c_dim=c_dim, channels=channels, ch=ch, layers=layers)
        self.channels, self.mbstd = channels, mbstd
        self.trunk = _conv_stack(3, channels, ch, layers, sn)
        # keep where things are (a 2 x 4 x 4 grid, flattened): a global average lets G fool D
        # with one texture for every caption and z (it collapsed so in the pilots)
        self.pool = nn.AdaptiveAvgPool3d((2, 4, 4))
        self.feature_dim = ch * 2 ** (layers - 1) * 32
        self.head = _MatchingHead(self.feature_dim + int(mbstd), e_dim, c_dim, sn)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): (B, feature_dim)."""
        _check_video(x, type(self).__name__, self.channels)
        return self.pool(self.trunk(x.transpose(1, 2))).flatten(1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.head(_with_mbstd(self.embed(x), self.mbstd), e)


class FrameDiscriminator(nn.Module):
    """s(x, e) per frame with 2D convolutions, averaged over the frames; :meth:`frame_features`
    gives the per-frame φ that :func:`temporal_coherence_penalty` compares."""

    def __init__(self, e_dim: int = 384, c_dim: int = 32, channels: int = 1, ch: int = 32,
                 layers: int = 3, sn: bool = True, mbstd: bool = False) -> None:
        super().__init__()
        e_dim, c_dim, channels, ch, layers = check_sizes(
            "FrameDiscriminator", e_dim=e_dim, c_dim=c_dim, channels=channels, ch=ch, layers=layers)
        self.channels, self.mbstd = channels, mbstd
        self.trunk = _conv_stack(2, channels, ch, layers, sn)
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.feature_dim = ch * 2 ** (layers - 1) * 16
        self.head = _MatchingHead(self.feature_dim + int(mbstd), e_dim, c_dim, sn)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """φ of every frame: (B, T, feature_dim)."""
        _check_video(x, type(self).__name__, self.channels)
        b, t = x.shape[:2]
        phi = self.pool(self.trunk(x.flatten(0, 1))).flatten(1)
        return phi.view(b, t, -1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        phi = self.frame_features(x)
        b, t = phi.shape[:2]
        # flattened clip-major: with b divisible by 4, minibatch_std's strided groups hold the same
        # frame index of clips b/4 apart
        scores = self.head(_with_mbstd(phi.flatten(0, 1), self.mbstd), e.repeat_interleave(t, dim=0))
        return scores.view(b, t).mean(1)


class MotionDiscriminator(VideoDiscriminator):
    """A :class:`VideoDiscriminator` that only sees the adjacent-frame differences
    x_{t+1} − x_t (T − 1 of them), so it scores motion (and its fit to the caption), not looks."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        _check_video(x, type(self).__name__, self.channels)
        if x.shape[1] < 2:
            raise DataError(f"MotionDiscriminator: needs at least 2 frames, got {x.shape[1]}")
        return super().embed(x[:, 1:] - x[:, :-1])


def temporal_coherence_penalty(frame_features: torch.Tensor) -> torch.Tensor:
    """Mean over clips and frame pairs of ‖φ(x_{t+1}) − φ(x_t)‖²: zero for a static clip, large
    for frames that jump (TGANs-C's temporal-coherence constraint on generated clips).

    Examples:
        >>> phi = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]])
        >>> float(temporal_coherence_penalty(phi))  # (1 + 4) / 2
        2.5
    """
    if frame_features.dim() != 3 or frame_features.shape[1] < 2:
        raise DataError("temporal_coherence_penalty: features must be (B, T >= 2, F), got "
                        f"{tuple(frame_features.shape)}")
    return (frame_features[:, 1:] - frame_features[:, :-1]).pow(2).sum(-1).mean()
