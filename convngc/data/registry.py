"""The dataset registry: names, where their files are searched, and :func:`load_dataset`."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .cifar import load_cifar10
from .errors import DataError, read_failure
from .idx import MNIST_FILES, find_file, load_mnist
from .npz import load_cinic10_sample, load_npz
from .pngtree import load_image_folder
from .splits import no_test_split, split_train_val
from .svhn import load_svhn
from .synthetic import colorize, red_coins, embedded_images

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]

DATASET_NAMES = ("cifar10", "cinic10", "mnist", "color-mnist", "svhn", "embedded")
SPLITS = ("train", "val", "test")

REPO = Path(__file__).resolve().parents[2]
# what one image of each set is, in the shared .npz layout (the original formats check their own)
IMAGE_SHAPES = {"mnist": (28, 28), "cifar10": (32, 32, 3), "svhn": (32, 32, 3), "cinic10": (32, 32, 3)}


def _check_shape(path: Path, x: Array, name: str) -> Array:
    want = IMAGE_SHAPES.get(name)
    if want is not None and x.shape[1:] != want:
        hint = " (a grayscale copy?)" if len(want) == 3 and x.ndim == 3 else ""
        raise DataError(f"{path}: 'x' has shape {x.shape}, but {name} images are (N, {', '.join(map(str, want))})"
                        f"{hint}; restore the original file")
    return x


def default_data_dirs(data_dir=None) -> list:
    """Where :func:`load_dataset` looks: ``data_dir``, else ``$CONVNGC_DATA_DIR``, else ``../shared/data``
    relative to the working directory and to the repository (those that exist)."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get("CONVNGC_DATA_DIR"):
        return [Path(os.environ["CONVNGC_DATA_DIR"])]
    out = []
    for p in (Path.cwd().parent / "shared" / "data", REPO.parent / "shared" / "data"):
        p = p.resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _there(p: Path) -> bool:
    """A data file is there (anything but a folder: a named pipe is found, then refused by its loader). An
    unreadable folder on the way raises PermissionError, which load_dataset reports as a read failure."""
    return p.exists() and not p.is_dir()


def _npz_loader(files_train: Sequence[Path], file_test: Path, name: str) -> Callable[[str], XY]:
    def load(part: str) -> XY:
        if part == "test":
            d = load_npz(file_test)
            return _check_shape(file_test, d["x"], name), d.get("y")
        present = [f for f in files_train if _there(f)]
        if len(present) < len(files_train):
            warnings.warn(f"{name}: only {len(present)} of {len(files_train)} training files present "
                          f"({', '.join(f.name for f in present)}); training on that subset")
        parts = [load_npz(f) for f in present]
        for f, d in zip(present, parts):
            _check_shape(f, d["x"], name)
        # labels are not needed to train: a copy without 'y' (in any of its files) loads with y = None
        y = np.concatenate([p["y"] for p in parts]) if all("y" in p for p in parts) else None
        return np.concatenate([p["x"] for p in parts]), y
    return load


def _candidates(name: str, root: Path, part: str) -> list:
    """``(description, found, loader(part) -> XY, has_test)`` for each supported layout of ``name`` in ``root``.

    ``part`` is the original split needed (``"train"`` or ``"test"``); ``found`` says whether its files exist.
    """
    test = part == "test"
    out = []
    if name == "mnist":
        for d in (root / "mnist", root):
            f = d / ("mnist_test.npz" if test else "mnist_train.npz")
            out.append((str(f), _there(f), _npz_loader([d / "mnist_train.npz"], d / "mnist_test.npz", name), True))
        for d in (root / "mnist" / "raw", root / "mnist", root / "MNIST" / "raw", root):
            stems = MNIST_FILES[part]
            out.append((f"{d}/{stems[0]}[.gz] + {stems[1]}[.gz]", all(find_file(d, s) for s in stems),
                        functools.partial(load_mnist, d), True))
    elif name == "cifar10":
        for d in (root / "cifar10", root):
            trains = [d / f"cifar10_train_batch{i}.npz" for i in range(1, 6)]
            found = _there(d / "cifar10_test.npz") if test else any(_there(f) for f in trains)
            out.append((f"{d}/cifar10_test.npz" if test else f"{d}/cifar10_train_batch{{1..5}}.npz", found,
                        _npz_loader(trains, d / "cifar10_test.npz", name), True))
        for d in (root / "cifar10" / "cifar-10-batches-py", root / "cifar-10-batches-py", root / "cifar10"):
            f = d / ("test_batch" if test else "data_batch_1")
            out.append((f"{d}/{'test_batch' if test else 'data_batch_{1..5}'}", _there(f),
                        functools.partial(load_cifar10, d), True))
        for f in (root / "cifar10" / "cifar-10-python.tar.gz", root / "cifar-10-python.tar.gz"):
            out.append((str(f), _there(f), functools.partial(load_cifar10, f), True))
    elif name == "svhn":
        for d in (root / "svhn", root):
            f = d / f"svhn_{part}.npz"
            out.append((str(f), _there(f), _npz_loader([d / "svhn_train.npz"], d / "svhn_test.npz", name), True))
        for d in (root / "svhn", root):
            f = d / f"{part}_32x32.mat"
            out.append((str(f), _there(f), functools.partial(load_svhn, d), True))
    elif name == "cinic10":
        for d in (root / "cinic10", root / "CINIC-10", root / "cinic-10"):
            out.append((f"{d}/{part}/<class>/*.png", (d / part).is_dir(),
                        lambda p, d=d: load_image_folder(d, p)[:2], True))
        for d in (root / "cinic10", root):
            f = d / "cinic10_sample2000.npz"
            out.append((f"{f} (sample: ImageNet-derived images only)", _there(f),
                        lambda p, f=f: _sample(f), False))
    return out


def _sample(f: Path) -> XY:
    x, y = load_cinic10_sample(f)
    return _check_shape(f, x, "cinic10"), y


def _load_original(name: str, split: str, data_dir, seed: int) -> XY:
    """``split`` of dataset ``name`` (``"all"`` = the training set before the validation split, if any)."""
    roots = default_data_dirs(data_dir)
    part = "test" if split == "test" else "train"
    looked = []
    for root in roots:
        for desc, exists, loader, has_test in _candidates(name, root, part):
            looked.append(desc)
            if not exists:
                continue
            if not has_test:  # e.g. the CINIC-10 sample
                x, y = loader("all")
                return (x, y) if split == "all" else no_test_split(x, y, split, seed)
            x, y = loader(part)
            if split in ("test", "all"):
                return x, y
            tr, va = split_train_val(len(x), seed)
            idx = va if split == "val" else tr
            if len(idx) == 0:
                raise DataError(f"dataset {name!r}, split {split!r}: 0 images: {desc} holds only {len(x)} training "
                                f"images, too few to hold out a validation split (10%)")
            return x[idx], (y[idx] if y is not None else None)
    where = "\n  ".join(looked) if looked else "(no data dir: none given, $CONVNGC_DATA_DIR unset, no ../shared/data)"
    raise DataError(f"dataset {name!r}: no supported files found. Looked for:\n  {where}\n"
                    f"Download it with `convngc download {name} --dest DIR` (or `python data/download.py {name} "
                    f"--dest DIR`) and pass `--data-dir DIR` / data_dir=DIR (or set CONVNGC_DATA_DIR=DIR).")


def dataset_available(name: str, data_dir=None) -> bool:
    """Whether :func:`load_dataset` finds files of dataset ``name`` (its test split, or the set itself when it
    has none), by looking at the file system only: nothing is read, so it takes milliseconds. A file that is
    there but corrupt is found here and refused by :func:`load_dataset`."""
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if name == "embedded":
        return True
    if name == "color-mnist":
        name = "mnist"
    try:
        return any(found for root in default_data_dirs(data_dir) for _, found, _, _ in _candidates(name, root, "test"))
    except OSError:              # an unreadable folder on the way: load_dataset would name it
        return False


def load_dataset(name: str, split: str = "train", data_dir=None, seed: int = 0, limit: Optional[int] = None) -> XY:
    """Load ``split`` (``"train"``, ``"val"``, ``"test"``) of dataset ``name`` as uint8 NHWC ``(x, y)``.

    Names: ``cifar10``, ``cinic10``, ``mnist``, ``color-mnist``, ``svhn``, ``embedded``. Files are searched in
    :func:`default_data_dirs` (shared ``.npz`` layout first, then the original formats; for ``cinic10`` a full
    PNG tree is preferred over the 2,000-image shared sample). ``val`` is held out of
    the training set by :func:`split_train_val` (5,000 images, or 10% of a smaller training set), deterministic in
    ``seed``; ``test`` is the official test set. Sets without one (``embedded``, the CINIC-10 sample, which by
    default holds only its ImageNet-derived ``source == 0`` images) carve a fixed 10% test part first.
    ``split="all"`` returns the official training set (or the whole set) unsplit, e.g. for OOD evaluation.
    ``color-mnist`` is ``color_mnist(MNIST original split, seed=(seed, 0 for train / 1 for test))``, then split.
    ``limit`` keeps the first ``limit`` images after splitting.
    """
    try:
        return _load_dataset(name, split, data_dir, seed, limit)
    except DataError:
        raise
    except OSError as e:             # a file or folder there but unreadable (permissions, I/O): a read failure
        raise read_failure(e, f"dataset {name!r}") from e


def _load_dataset(name, split, data_dir, seed, limit):
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS + ("all",):
        raise DataError(f"unknown split {split!r} for {name}; choose one of {', '.join(SPLITS)} (or 'all')")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit} (None: every image)")
    if name == "embedded":
        x, y = embedded_images(seed=0)
        if split != "all":
            x, y = no_test_split(x, y, split, seed)
    elif name == "color-mnist":  # == color_mnist(whole original split)[idx], but only the kept images are resized
        x, y = _load_original("mnist", "test" if split == "test" else "all", data_dir, seed)
        red = red_coins(len(x), seed=(seed, int(split == "test")))
        idx = np.arange(len(x))
        if split in ("train", "val"):
            idx = split_train_val(len(x), seed)[split == "val"]
        idx = idx[:limit]
        x, y = colorize(x[idx], red[idx], 32), y[idx]
    else:
        x, y = _load_original(name, split, data_dir, seed)
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    if len(x) == 0:
        raise DataError(f"dataset {name!r}, split {split!r}: 0 images")
    return x, y
