"""Named datasets under a data root, and the root itself.

The data root is ``--data-root``, else ``$FMLAB_DATA``, else ``~/.cache/fmlab/data``. fmlab only
ever reads from it (it may be read-only); downloads write there only when asked to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fmlab.errors import DataError


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder of named datasets: ``explicit``, else ``$FMLAB_DATA``, else ``~/.cache/fmlab/data``.

    Args:
        explicit: a ``--data-root`` value (None or empty: not given).

    Returns:
        The folder (not checked for existence: a dataset's ``locate`` says what is missing).

    Examples:
        >>> str(data_root("/srv/data"))
        '/srv/data'
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("FMLAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fmlab" / "data"


@dataclass(frozen=True)
class NamedDataset:
    name: str
    kind: str  # "image" or "image-text"
    candidates: tuple[str, ...]  # files relative to the data root, first found wins
    description: str
    provenance: str
    metadata_by_file: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    packaged: Callable[[], Path] | None = None  # a file shipped inside fmlab

    def locate(self, root: Path) -> Path:
        if self.packaged is not None:
            return self.packaged()
        for rel in self.candidates:
            if (root / rel).is_file():
                return root / rel
        from fmlab.data.download import DOWNLOADABLE

        fix = (f"or run `fmlab data download {self.name}`" if self.name in DOWNLOADABLE
               else f"or copy it there ({self.provenance})")
        raise DataError(
            f"dataset {self.name!r} not found under data root {root} (looked for "
            f"{', '.join(self.candidates)}); set --data-root or FMLAB_DATA, {fix}"
        )

    def metadata_for(self, path: Path) -> dict:
        for rel, meta in self.metadata_by_file:
            if str(path).endswith(rel):
                return dict(meta)
        return {}


def _demo_path() -> Path:
    from importlib.resources import files

    return Path(str(files("fmlab") / "assets" / "cifar10_demo.npz"))


NAMED: dict[str, NamedDataset] = {
    d.name: d
    for d in [
        NamedDataset(
            "mnist", "image", ("mnist/mnist.npz",),
            "MNIST digits, 60,000 train / 10,000 test, 28x28 grey",
            "LeCun, Cortes & Burges; see mnist/PROVENANCE.md in the data root",
        ),
        NamedDataset(
            "cifar10", "image", ("cifar10/cifar10_jpeg.npz", "cifar10/cifar10.npz"),
            "CIFAR-10, 50,000 train / 10,000 test, 32x32 RGB",
            "Krizhevsky 2009; see cifar10/PROVENANCE.md in the data root",
            (
                ("cifar10_jpeg.npz", (
                    ("variant", "jpeg_q75"),
                    ("warning", "JPEG q~75 copy: pixels differ from the originals by ~6/255 and "
                                "accuracies are ~10 points lower; never quote as CIFAR-10 results"),
                )),
                ("cifar10.npz", (("variant", "original"),)),
            ),
        ),
        NamedDataset(
            "coco_mini", "image-text", ("coco_mini/coco_mini_captions.npz",),
            "COCO-mini: 159 images x 5 captions (80 train2017, 79 val2017)",
            "COCO 2017 captions (CC BY 4.0), images under their Flickr licences",
        ),
        NamedDataset(
            "eurosat", "image", ("eurosat/eurosat_rgb_4k.npz",),
            "EuroSAT RGB subset (Sentinel-2), 3,000 train / 1,000 test, 64x64 RGB, 10 classes "
            "(300 / 100 per class, stored class by class: shuffle before training)",
            "Helber et al. 2019, EuroSAT (MIT per its README; Copernicus Sentinel data terms); "
            "subset drawn with numpy default_rng(0); see eurosat/PROVENANCE.md in the data root",
            (("eurosat_rgb_4k.npz", (("variant", "rgb_4k_subset"),)),),
        ),
        NamedDataset(
            "cifar10_demo", "image", (),
            "2,000 CIFAR-10 test images (JPEG q~75 copy), 200 per class, shipped inside fmlab "
            "(train: 1,000, test: 1,000)",
            "Derived from the CIFAR-10 test set (Krizhevsky 2009) via the JPEG copy; see "
            "fmlab/assets/LICENSES.md",
            (("cifar10_demo.npz", (("variant", "jpeg_q75"),)),),
            packaged=_demo_path,
        ),
    ]
}
