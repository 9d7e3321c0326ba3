"""Datasets for Conv-NGC: loaders for the real distribution formats, splits and conversion.

Conventions (repo-wide):

* Loaders return ``(x, y)``: ``x`` is ``uint8`` in HWC layout, ``(N, H, W, C)`` for colour data and
  ``(N, H, W)`` for MNIST (use :func:`add_channel` for ``(N, H, W, 1)``); ``y`` is ``uint8`` labels or ``None``.
* The model consumes ``float32`` NCHW in ``[0, 1]``: convert with :func:`to_model`, validate with
  :func:`check_images`.
* Every data problem raises :class:`DataError` (a ``ValueError``) naming the file, the problem and the fix.

Supported formats: MNIST idx (``.gz`` or raw), CIFAR-10 python pickle batches (folder ``cifar-10-batches-py`` or
the ``cifar-10-python.tar.gz`` tarball itself), SVHN ``*_32x32.mat``, CINIC-10 style PNG trees, and the ``.npz``
files of the shared data folder (``x`` uint8 NHWC, ``y`` uint8). Entry point: :func:`load_dataset`.
"""
# Layout: errors (DataError); the file formats idx, cifar, svhn, pngtree, npz; synthetic (Color-MNIST, embedded
# photo patches); splits; registry (dataset names, data-folder discovery, load_dataset); convert (the model's layout).
# Constants such as MNIST_FILES or VAL_SIZE are re-exported so `convngc.data.X` keeps working.
from .cifar import CIFAR10_CLASSES, load_cifar10, load_cifar_batch
from .convert import add_channel, check_images, to_model
from .errors import DataError, DataReadError
from .idx import MNIST_FILES, load_idx, load_mnist  # noqa: F401
from .npz import load_cinic10_sample, load_npz
from .pngtree import load_image_folder
from .registry import DATASET_NAMES, SPLITS, dataset_available, default_data_dirs, load_dataset
from .splits import VAL_FRACTION, VAL_SIZE, split_train_val  # noqa: F401
from .svhn import load_svhn, load_svhn_mat
from .synthetic import (EMBEDDED_MIN_STD, EMBEDDED_SOURCES, color_mnist, embedded_images,  # noqa: F401
                        resize_bilinear)

__all__ = [
    "DataError", "DataReadError", "DATASET_NAMES", "SPLITS", "CIFAR10_CLASSES",
    "load_idx", "load_mnist", "load_cifar_batch", "load_cifar10", "load_svhn_mat", "load_svhn",
    "load_image_folder", "load_npz", "load_cinic10_sample", "color_mnist", "resize_bilinear",
    "embedded_images", "split_train_val", "default_data_dirs", "dataset_available", "load_dataset",
    "add_channel", "to_model", "check_images",
]
