"""Datasets as integer image tensors.

Every loader returns an :class:`ImageDataset`: ``images`` (N, C, H, W) integer levels and optional
``labels`` (N,) int64. The embedded default (``"bundled"``) is a 10,000 / 1,000 image MNIST subset that ships
inside the package (``pixelzoo/data/README.md`` gives its provenance and licence).

What :func:`load_dataset` accepts, and which files each ``split`` reads (train / test):

- ``None``, ``"bundled"``, ``"bundled:mnist"``: the first 10,000 MNIST training images / the first 1,000 test
  images.
- a CIFAR-10 python folder (``cifar-10-batches-py/``, or the folder holding it): ``data_batch_1`` ..
  ``data_batch_5``, all five required / ``test_batch``.
- an MNIST / Fashion-MNIST IDX folder (or the one whose ``raw/`` sub-folder holds the files, as torchvision
  keeps them), files gzipped or not: ``[prefix-]train-images-idx3-ubyte`` with ``train-labels-idx1-ubyte`` /
  the ``t10k-`` (or ``test-``) pair.
- a PNG folder with ``train/`` and ``test/`` sub-folders: ``train/`` / ``test/``.
- an ``.npz`` holding ``train_images`` and ``test_images``: ``train_images``, ``train_labels`` /
  ``test_images``, ``test_labels``.

Sources that are a single split already ignore ``split`` and give a dataset whose ``.split`` is None: one
file (``data_batch_3``, ``test_batch``, an IDX images file, an ``.npz`` holding ``images``), a PNG folder
without ``train/``/``test/`` sub-folders, and a dataset object (torchvision style). Check ``dataset.split``
before you report a number as a test-set result.

Formats:

- CIFAR-10 batches are Python pickles. They are read by a restricted unpickler that resolves only the three
  numpy globals an array needs and refuses every other one (a pickle that names ``os.system`` is an error,
  not a call). Pickles written with protocol 5 use ``numpy._core.numeric._frombuffer`` and are refused too.
- IDX: the header (magic 2051 for images, 2049 for labels, big-endian sizes) is checked against the file's
  length; a bad magic, a truncated or an over-long file is an error. A gzip file is recognised by its bytes.
- PNG: a flat folder gives unlabelled images; a folder of class sub-folders gives labels in sorted folder-name
  order (as torchvision's ``ImageFolder``); files are taken in natural order (``2.png`` before ``10.png``).
  Modes: ``L`` -> 1 channel, ``RGB`` -> 3, ``1`` -> 1 channel at 1 bit, ``I;16`` -> 1 channel at 16 bits.
  ``RGBA``/``LA`` drop the alpha channel only when it is 255 everywhere (then it holds no information);
  a translucent pixel is an error. Palette (``P``) and 16-bit colour PNGs are errors with the fix.
- ``.npz`` (read with ``allow_pickle=False``): ``images`` (N, H, W) or (N, H, W, C) channels-last, optional
  ``labels`` (N,), optional scalar ``bits``. uint8 means 8 bits; a wider integer type needs ``bits`` (in the
  file or as an argument), since the type alone does not say how many levels there are.
"""
from .cifar import load_cifar10
from .dataset import BUNDLED_NAMES, SPLITS, DatasetNotFoundError, ImageDataset
from .idx import load_idx, read_idx
from .loading import load_dataset
from .npz import load_bundled, load_npz
from .objects import from_torchvision
from .png import load_png_folder

__all__ = ["ImageDataset", "load_dataset", "load_bundled", "load_cifar10", "load_idx", "read_idx", "load_png_folder",
           "load_npz", "from_torchvision", "DatasetNotFoundError", "BUNDLED_NAMES", "SPLITS"]
