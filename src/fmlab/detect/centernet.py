"""A tiny CenterNet ("Objects as Points", Zhou et al. 2019) for grey canvases of a few digits.

Why this shape: an object is the peak of its class's centre heatmap at stride 4, so decoding is a
3×3 max-pool and a top-k (no anchors, no NMS), and training is one focal loss on the heatmap plus
L1 on the box size and the sub-cell centre offset read at the true centres only. Small enough to
train in about a CPU-minute on 64×64 canvases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU(True))


class TinyCenterNet(nn.Module):
    """Conv backbone to stride 4 (dilated last layers: receptive field ≈ 70 px) and three heads.

    Returns ``heat`` (B, C, H/4, W/4) logits, ``wh`` (B, 2, H/4, W/4) box width/height in output
    cells, ``off`` (B, 2, H/4, W/4) the centre's sub-cell offset in [0, 1).

    Examples:
        >>> out = TinyCenterNet(num_classes=10)(torch.zeros(2, 1, 64, 64))
        >>> [tuple(out[k].shape) for k in ("heat", "wh", "off")]
        [(2, 10, 16, 16), (2, 2, 16, 16), (2, 2, 16, 16)]
    """

    def __init__(self, num_classes: int = 10, width: int = 48, in_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.backbone = nn.Sequential(
            _conv(in_channels, 16), _conv(16, 32, stride=2), _conv(32, 32), _conv(32, w, stride=2),
            _conv(w, w), _conv(w, w, dilation=2), _conv(w, w, dilation=4))
        self.heads = nn.ModuleDict({name: nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.ReLU(True),
                                                        nn.Conv2d(w, n, 1))
                                    for name, n in (("heat", num_classes), ("wh", 2), ("off", 2))})
        # CenterNet's prior: every cell starts at p = 0.1 of being a centre, so the focal loss
        # of the many background cells does not swamp the first steps.
        nn.init.constant_(self.heads["heat"][-1].bias, -2.19)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        return {name: head(f) for name, head in self.heads.items()}


def centre_targets(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, size: int,
                   stride: int = STRIDE) -> dict[str, torch.Tensor]:
    """Training targets from xyxy pixel boxes (B, K, 4) and labels (B, K) (``-1`` = no object).

    The heatmap puts a Gaussian (σ = (2r+1)/6, r = a quarter of the box's shorter side in cells,
    as CenterNet's size-adaptive radius) at the integer centre cell of each box in its class
    channel, exactly 1 at that cell; overlapping objects of a class keep the max. ``wh``/``off``
    hold each box's size (cells) and the fraction its centre lies past the cell corner, with
    ``mask`` 1 at the centre cells (a later object wins a shared cell).

    Returns:
        ``heat`` (B, C, h, w), ``wh`` (B, 2, h, w), ``off`` (B, 2, h, w), ``mask`` (B, h, w).
    """
    h = w = size // stride
    b, k = labels.shape
    active = labels >= 0
    bx = boxes.float() / stride
    cx, cy = (bx[..., 0] + bx[..., 2]) / 2, (bx[..., 1] + bx[..., 3]) / 2
    bw, bh = (bx[..., 2] - bx[..., 0]).clamp(min=0), (bx[..., 3] - bx[..., 1]).clamp(min=0)
    ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
    sigma = (2 * (torch.minimum(bw, bh) / 4).floor() + 1) / 6
    gx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    gy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    g = torch.exp(-((gx - ix[..., None, None]) ** 2 + (gy - iy[..., None, None]) ** 2)
                  / (2 * sigma[..., None, None] ** 2))              # (B, K, h, w); 1 at the centre
    onehot = F.one_hot(labels.clamp(min=0), num_classes).float() * active[..., None]
    heat = (g[:, :, None] * onehot[..., None, None]).amax(1) if k else torch.zeros(b, num_classes, h, w)
    wh, off, mask = torch.zeros(b, 2, h, w), torch.zeros(b, 2, h, w), torch.zeros(b, h, w)
    for j in range(k):  # at most a few objects per canvas
        bi = torch.nonzero(active[:, j]).squeeze(1)
        yi, xi = iy[bi, j].long(), ix[bi, j].long()
        wh[bi, :, yi, xi] = torch.stack([bw[bi, j], bh[bi, j]], 1)
        off[bi, :, yi, xi] = torch.stack([cx[bi, j] - xi, cy[bi, j] - yi], 1)
        mask[bi, yi, xi] = 1.0
    return {"heat": heat, "wh": wh, "off": off, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
               ) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel focal loss, summed and divided by the number of centres.

    Cells with target exactly 1 are positives; the others are negatives down-weighted by
    ``(1 - target)^beta`` so cells near a centre are penalised less for firing.
    """
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p ** alpha * (1 - target) ** beta * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


class CenterNetObjective(nn.Module):
    """Engine objective: focal heatmap loss + ``wh_weight`` · L1(size) + L1(offset) at the centres.

    The batch holds ``images`` (B, 1, S, S) float in [0, 1], ``boxes`` (B, K, 4) xyxy pixels and
    ``classes`` (B, K) with ``-1`` padding; the targets are built on the fly (a few objects each).
    """

    def __init__(self, net: TinyCenterNet, num_classes: int = 10, wh_weight: float = 0.1) -> None:
        super().__init__()
        self.net, self.num_classes, self.wh_weight = net, num_classes, wh_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["images"]
        out = self.net(x)
        t = centre_targets(batch["boxes"], batch["classes"], self.num_classes, x.shape[-1])
        t = {k: v.to(x.device) for k, v in t.items()}
        n = t["mask"].sum().clamp(min=1.0)
        m = t["mask"][:, None]
        heat = focal_loss(out["heat"], t["heat"])
        wh = ((out["wh"] - t["wh"]).abs() * m).sum() / n
        off = ((out["off"] - t["off"]).abs() * m).sum() / n
        loss = heat + self.wh_weight * wh + off
        return loss, {"heat": heat.detach(), "wh": wh.detach(), "off": off.detach()}


@torch.no_grad()
def decode(out: dict[str, torch.Tensor], k: int = 10, stride: int = STRIDE
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` detections per image: peaks of the heatmap (cells equal to their 3×3 max).

    Args:
        out: a :class:`TinyCenterNet` output; ``heat`` may be logits or probabilities in [0, 1]
            (values outside [0, 1] are taken as logits).

    Returns:
        ``boxes`` (B, k, 4) xyxy pixels, ``scores`` (B, k), ``labels`` (B, k) int64.
    """
    heat = out["heat"]
    if heat.min() < 0 or heat.max() > 1:
        heat = torch.sigmoid(heat)
    b, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, idx = peaks.view(b, -1).topk(min(k, c * h * w))
    labels, cell = idx // (h * w), idx % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    gather = lambda t: t.view(b, 2, -1).gather(2, cell[:, None].expand(b, 2, cell.shape[1]))  # noqa: E731
    wh, off = gather(out["wh"]), gather(out["off"])
    cx, cy = xs + off[:, 0], ys + off[:, 1]
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1)
    return boxes * stride, scores, labels
