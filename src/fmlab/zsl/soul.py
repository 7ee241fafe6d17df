"""LisGAN's soul samples and the regulariser that pulls generated features towards them.

A class's features are multi-modal (a "deer" is seen from the side, the front, far away), so
LisGAN summarises each seen class by k "soul samples": the k-means centres of its real features
(k = 3, the official code's ``KMeans(n_clusters=3)``). Two generator terms use them:

* L₂, per fake sample: the squared distance of each generated feature x̃ᵢ to the *nearest* soul
  sample of its class, ``mean_i min_j ‖x̃ᵢ − s_j^{yᵢ}‖²`` — every fake must resemble one mode of
  its class, not the mean of all modes (the "invariant side" of the paper's title);
* L₁, per class: the mean of a batch of fakes of a class (a fake prototype) to the nearest soul
  sample of that class.

Both are plain functions of tensors, so the GAN step and the tests call the same code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from fmlab.errors import DataError


def soul_samples(features: np.ndarray, labels: np.ndarray, n_classes: int, k: int = 3,
                 seed: int = 3) -> torch.Tensor:
    """The k-means centres of each class's features: ``(n_classes, k, D)``.

    Args:
        features: (N, D) real features.
        labels: (N,) class indices in ``[0, n_classes)``.
        n_classes: the number of classes (each needs at least ``k`` samples).
        k: centres per class (LisGAN: 3).
        seed: k-means' ``random_state`` (LisGAN's code uses 3).

    Returns:
        float32 ``(n_classes, k, D)``; row ``c`` holds class ``c``'s centres.

    Raises:
        DataError: a class has fewer than ``k`` samples.
    """
    from sklearn.cluster import KMeans

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    out = np.zeros((n_classes, k, features.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        x = features[labels == c]
        if len(x) < k:
            raise DataError(f"soul samples: class {c} has {len(x)} samples, fewer than k={k}")
        out[c] = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(x).cluster_centers_
    return torch.from_numpy(out)


def nearest_soul_distance(fake: torch.Tensor, labels: torch.Tensor, souls: torch.Tensor
                          ) -> torch.Tensor:
    """``min_j ‖fake_i − souls[labels_i, j]‖²`` for each row: ``(B,)``.

    Args:
        fake: (B, D) generated features.
        labels: (B,) class index of each row (into ``souls``).
        souls: (C, k, D) soul samples.
    """
    diff = fake[:, None, :] - souls[labels]  # (B, k, D)
    return diff.pow(2).sum(-1).min(dim=1).values


class SoulSampleLoss(nn.Module):
    """p₂·L₂ + p₁·L₁ of LisGAN's generator loss (see the module doc).

    Args:
        souls: (C, k, D) soul samples of the seen classes (a buffer: saved and moved with it).
        sample_weight: p₂, the weight of the per-sample term (LisGAN: 0.01).
        proto_weight: p₁, the weight of the per-class prototype term (LisGAN: 0.01).

    Examples:
        >>> souls = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])  # one class, two centres
        >>> loss = SoulSampleLoss(souls, sample_weight=1.0, proto_weight=0.0)
        >>> float(loss(torch.tensor([[9.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))[0])
        1.0
    """

    def __init__(self, souls: torch.Tensor, sample_weight: float = 0.01,
                 proto_weight: float = 0.01) -> None:
        super().__init__()
        self.register_buffer("souls", souls.float())
        self.sample_weight = float(sample_weight)
        self.proto_weight = float(proto_weight)

    def forward(self, fake: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(weighted loss, {"soul_sample", "soul_proto"})`` for fakes ``fake`` of ``labels``."""
        per_sample = nearest_soul_distance(fake, labels, self.souls).mean()
        classes = labels.unique()
        protos = torch.stack([fake[labels == c].mean(0) for c in classes])
        per_class = nearest_soul_distance(protos, classes, self.souls).mean()
        loss = self.sample_weight * per_sample + self.proto_weight * per_class
        return loss, {"soul_sample": float(per_sample.detach()), "soul_proto": float(per_class.detach())}
