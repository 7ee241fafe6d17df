"""Training sources for image-text models, in the engine's ``get_batch -> dict`` contract.

Captions are strings; the engine moves tensors, so a batch carries ``caption_ids`` into the
source's ``captions`` list and the objective tokenises (or looks up cached text features).

* :class:`ImageTextPairs` — an image-text split: one sample per image, paired with one of its
  captions drawn with the global torch RNG (the engine re-seeds it from (seed, step, rank) before
  each fetch, so runs and resumes are reproducible); ``labels`` = image index (identity).
* :class:`TemplateCaptions` — a labelled image split turned into captions: each image gets
  ``template.format(class_name)`` for a random template; ``labels`` = class index among the
  chosen classes (multi-positive targets mark same-class pairs positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fmlab.errors import DataError


class ImageTextPairs:
    """The engine's training source over an image-text split: one random caption per image per step.

    Args:
        split: an :class:`~fmlab.data.ImageTextSplit` (images without a caption are skipped).

    Attributes:
        captions: every caption; batches point at them by ``caption_ids``.

    Raises:
        fmlab.errors.DataError: the split has no captions.
    """

    def __init__(self, split) -> None:
        self.split = split
        self.captions = list(split.captions)
        idx = np.asarray(split.caption_image_index, dtype=np.int64)
        n = len(split.images)
        order = np.argsort(idx, kind="stable")
        counts = np.bincount(idx, minlength=n)
        self.images = np.flatnonzero(counts > 0)  # images without a caption are skipped
        if self.images.size == 0:
            raise DataError(f"split {split.images.name!r} of {split.images.origin} has no captions")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._start = torch.as_tensor(starts[self.images])
        self._count = torch.as_tensor(counts[self.images])
        self._order = torch.as_tensor(order)

    def __len__(self) -> int:
        return int(self.images.size)

    def get_batch(self, indices: np.ndarray) -> dict:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        pick = (torch.rand(len(idx)) * self._count[idx]).long()
        caption_ids = self._order[self._start[idx] + pick]
        rows = self.images[idx.numpy()]
        return {"images": torch.from_numpy(self.split.images.get_batch(rows)),
                "caption_ids": caption_ids, "labels": torch.as_tensor(rows)}


class TemplateCaptions:
    """A labelled split captioned by templates (``"a photo of a {}."``), as an engine source.

    Args:
        split: a labelled :class:`~fmlab.data.ImageSplit`.
        class_names: the source's class names.
        templates: caption templates, each with one ``{}``.
        classes: only these class indices (LiT's base/unseen-class split); default all.

    Attributes:
        captions: ``len(templates)`` captions per chosen class, class-major.

    Raises:
        fmlab.errors.DataError: no labels, a class index out of range, or no image of the classes.
    """

    def __init__(self, split, class_names: Sequence[str], templates: Sequence[str],
                 classes: Sequence[int] | None = None) -> None:
        from fmlab.adapt.zeroshot import check_templates

        if split.labels is None:
            raise DataError(f"split {split.name!r} of {split.origin} has no labels to caption")
        self.split = split
        self.templates = check_templates(list(templates))
        self.classes = list(range(len(class_names))) if classes is None else list(classes)
        bad = [c for c in self.classes if not 0 <= c < len(class_names)]
        if bad:
            raise DataError(f"class index {bad[0]} outside 0..{len(class_names) - 1}")
        self.class_names = [class_names[c] for c in self.classes]
        remap = -np.ones(len(class_names), dtype=np.int64)
        remap[self.classes] = np.arange(len(self.classes))
        self.rows = np.flatnonzero(np.isin(split.labels, self.classes))
        if self.rows.size == 0:
            raise DataError(f"split {split.name!r} of {split.origin} has no images of the chosen classes")
        self.labels = remap[split.labels[self.rows]]
        self.captions = [t.format(name) for name in self.class_names for t in self.templates]

    def __len__(self) -> int:
        return int(self.rows.size)

    def get_batch(self, indices: np.ndarray) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        labels = torch.as_tensor(self.labels[idx])
        t = torch.randint(len(self.templates), (len(idx),))
        return {"images": torch.from_numpy(self.split.get_batch(self.rows[idx])),
                "caption_ids": labels * len(self.templates) + t, "labels": labels}


def resolve_classes(class_names: Sequence[str], wanted: Sequence[str | int]) -> list[int]:
    """Class names or indices → indices; the error names the unknown class."""
    out = []
    for w in wanted:
        if isinstance(w, int) or (isinstance(w, str) and w.isdigit()):
            i = int(w)
            if not 0 <= i < len(class_names):
                raise DataError(f"class index {i} outside 0..{len(class_names) - 1}")
            out.append(i)
        elif w in class_names:
            out.append(list(class_names).index(w))
        else:
            raise DataError(f"unknown class {w!r}; classes: {', '.join(class_names)}")
    if len(set(out)) != len(out):
        raise DataError(f"classes listed twice in {list(wanted)}")
    return out
