"""Open a labelled image source with its train split and an evaluation split, in one place.

``fmlab adapt`` and ``fmlab finetune`` both need "a source with class labels, its train split,
and the test split (or the one the user names)", with the same errors when either is missing.
"""

from __future__ import annotations

import os
from typing import Any

from fmlab.errors import DataError


def open_labelled(spec: str, data_root: str | os.PathLike | None = None,
                  test_split: str | None = None, *, command: str = "this command",
                  ) -> tuple[Any, Any, Any, str]:
    """Open ``spec``, check it has class labels, and pick its train and evaluation splits.

    Args:
        spec: the source spec (a named dataset, ``npz:PATH``, ``folder:PATH``).
        data_root: the folder of named datasets (None: the default).
        test_split: the evaluation split's name; None means ``"test"``, which must then exist.
        command: the command named in the errors (``"fmlab adapt"``).

    Returns:
        ``(source, train, test, test_name)``: the source, its train split, the evaluation split
        and that split's name.

    Raises:
        DataError: the source has no class labels, or no ``test`` split and none was named.

    Examples:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> imgs = np.zeros((4, 8, 8, 3), np.uint8); labels = np.array([0, 1, 0, 1])
        >>> np.savez(path, x_train=imgs, y_train=labels, x_test=imgs, y_test=labels)
        >>> source, train, test, name = open_labelled(f"npz:{path}")
        >>> len(train), len(test), name
        (4, 4, 'test')
    """
    from fmlab.data import open_source

    source = open_source(spec, data_root)
    if getattr(source, "class_names", None) is None:
        raise DataError(f"{spec} has no class labels; {command} needs a labelled image source")
    train = source.split("train")
    test_name = test_split or ("test" if "test" in source.splits else None)
    if test_name is None:
        raise DataError(f"{spec} has no 'test' split; pass --test-split")
    return source, train, source.split(test_name), test_name


def grey_pool(spec: str, split: str, data_root: str | os.PathLike | None = None,
              *, what: str = "data.source") -> tuple[Any, Any]:
    """All images of ``spec``'s ``split`` as a grey uint8 array (N, H, W) with their labels:
    the object pool that synthetic stories and clips are drawn from.

    Raises:
        DataError: the split has no labels, or its images are not single-channel.
    """
    import numpy as np

    from fmlab.data import open_source

    sp = open_source(spec, data_root).split(split)
    if sp.labels is None:
        raise DataError(f"{what}: {spec}:{split} has no class labels (the pool needs them)")
    images = np.asarray(sp.get_batch(np.arange(len(sp))))
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise DataError(f"{what}: {spec}:{split} images have shape {images.shape[1:]}; the pool "
                        "needs single-channel digits (H, W)")
    return images, np.asarray(sp.labels)
