"""Build the assets `fmlab demo` ships (run once by a maintainer; the outputs are committed).

- resnet20_cifar10.safetensors: the BSD-2 ResNet-20 CIFAR-10 weights (Idelbayev), converted from
  the torch checkpoint to safetensors with the `module.` prefix dropped.
- cifar10_demo.npz: 2,000 images of the CIFAR-10 *test* split of the JPEG q~75 copy (their JPEG
  bytes unchanged), 200 per class drawn with seed 0: 100 per class form the demo's `train` split,
  100 per class its `test` split. Test images were never seen by the pretrained ResNet.

Usage: python tools/make_demo_assets.py /path/to/shared/data
"""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

root = Path(sys.argv[1])
out = Path(__file__).resolve().parents[1] / "src" / "fmlab" / "assets"

ckpt = torch.load(root / "weights/resnet_cifar10/resnet20-12fca82f.th", map_location="cpu", weights_only=True)
sd = {k.removeprefix("module."): v.contiguous() for k, v in ckpt["state_dict"].items()}
save_file(sd, str(out / "resnet20_cifar10.safetensors"),
          metadata={"source": "akamaster/pytorch_resnet_cifar10 resnet20-12fca82f.th", "license": "BSD-2-Clause"})

z = np.load(root / "cifar10/cifar10_jpeg.npz")
buf, off, y = z["x_test_jpeg"], z["x_test_jpeg_offsets"], z["y_test"]
rng = np.random.default_rng(0)
train_idx, test_idx = [], []
for c in range(10):
    pick = rng.permutation(np.flatnonzero(y == c))[:200]
    train_idx += sorted(pick[:100].tolist())
    test_idx += sorted(pick[100:].tolist())


def pack(indices):
    parts = [buf[off[i]:off[i + 1]] for i in indices]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return np.concatenate(parts), offsets


xtr, otr = pack(train_idx)
xte, ote = pack(test_idx)
np.savez(out / "cifar10_demo.npz", x_train_jpeg=xtr, x_train_jpeg_offsets=otr, y_train=y[train_idx],
         x_test_jpeg=xte, x_test_jpeg_offsets=ote, y_test=y[test_idx], class_names=z["class_names"],
         source_test_index_train=np.array(train_idx), source_test_index_test=np.array(test_idx))
print("ok", (out / "cifar10_demo.npz").stat().st_size)
