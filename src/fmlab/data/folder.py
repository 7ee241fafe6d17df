"""``folder:PATH`` sources: one subfolder per class (torchvision's ImageFolder layout).

If PATH holds ``train/`` and ``test/`` (or ``val/``) subfolders, each is a split; otherwise the
whole folder is the ``train`` split. Class names are the sorted subfolder names of the first split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmlab.data.sources import FileListSplit, ImageSource, ImageSplit
from fmlab.errors import DataError
from fmlab.utils.io import sha256_json

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_SPLIT_DIRS = ("train", "val", "test")


def _scan(root: Path, class_names: list[str] | None) -> tuple[list[str], np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders found (expected one subfolder per class)")
    if class_names is not None:
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            raise DataError(f"{root}: class folder {unknown[0]!r} is not a class of the train split")
    else:
        class_names = classes
    paths, labels = [], []
    for c in classes:
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        paths += [str(p) for p in files]
        labels += [class_names.index(c)] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files found in its class subfolders")
    return paths, np.asarray(labels, dtype=np.int64), class_names


def _hash_files(paths: list[str], root: Path) -> str:
    from fmlab.data.hashing import file_hash

    return sha256_json([[str(Path(p).relative_to(root)), file_hash(p)] for p in paths])


def open_folder_source(path: str | Path, name: str | None = None) -> ImageSource:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    split_dirs = [d for d in _SPLIT_DIRS if (root / d).is_dir()]
    layout = {d: root / d for d in split_dirs} if "train" in split_dirs else {"train": root}
    splits: dict[str, ImageSplit] = {}
    class_names: list[str] | None = None
    for split, d in layout.items():
        paths, labels, class_names = _scan(d, class_names)
        splits[split] = FileListSplit(paths, name=split, labels=labels, class_names=class_names,
                                      content_hash=_hash_files(paths, root), origin=str(d))
    return ImageSource(name or f"folder:{root}", splits, class_names, "", {"folder": str(root)})
