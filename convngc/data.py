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
from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import tarfile
import warnings
import zlib
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DataError", "DATASET_NAMES", "SPLITS", "CIFAR10_CLASSES",
    "load_idx", "load_mnist", "load_cifar_batch", "load_cifar10", "load_svhn_mat", "load_svhn",
    "load_image_folder", "load_npz", "load_cinic10_sample", "color_mnist", "resize_bilinear",
    "embedded_images", "split_train_val", "default_data_dirs", "load_dataset",
    "add_channel", "to_model", "check_images",
]

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]

DATASET_NAMES = ("cifar10", "cinic10", "mnist", "color-mnist", "svhn", "embedded")
SPLITS = ("train", "val", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
VAL_SIZE = 5000        # paper, Appendix B: 5,000 training images held out for validation
VAL_FRACTION = 0.10    # ... but at most this fraction of a smaller training set

_REPO = Path(__file__).resolve().parents[1]


class DataError(ValueError):
    """A data file/dir is missing, corrupt or in the wrong format (message says which file and what to do)."""


# ----------------------------------------------------------------------------------------------------------------
# MNIST idx
# ----------------------------------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path, hint: str = "") -> bytes:
    """Whole file contents, transparently gunzipped when the name ends in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found{hint}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError as e:
        raise DataError(f"{path}: truncated gzip stream ({e}); the download was cut short: delete it and "
                        f"re-download{hint}") from e
    except (OSError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip stream ({e}); delete it and re-download{hint}") from e


def load_idx(path, expect_ndim: Optional[int] = None, hint: str = "") -> Array:
    """Read an idx file (``.gz`` or raw): 4-byte magic ``00 00 <dtype> <ndim>``, ndim big-endian uint32 dims, payload.

    Checks the magic, the dtype code, ``expect_ndim`` (3 for images, 1 for labels) and that the payload size is
    exactly ``prod(dims) * itemsize``. Returns an array of native byte order.
    """
    path = Path(path)
    raw = _read_bytes(path, hint)
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an idx header; re-download{hint}")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    kinds = {1: "labels", 3: "images"}
    if raw[:2] != b"\0\0" or code not in _IDX_DTYPES or ndim == 0:
        want = f" (expected 0x{0x800 + expect_ndim:08x} for {kinds.get(expect_ndim, 'idx')})" if expect_ndim else ""
        raise DataError(f"{path}: wrong idx magic 0x{magic:08x}{want}; not an idx file (is it still compressed, "
                        f"or an HTML error page?){hint}")
    if expect_ndim is not None and ndim != expect_ndim:
        want = f"0x{(code << 8) | expect_ndim:08x} for {kinds.get(expect_ndim, f'{expect_ndim}-d data')}"
        other = f"; is this a {kinds[ndim]} file?" if ndim in kinds else ""
        raise DataError(f"{path}: wrong idx magic 0x{magic:08x} (expected {want}){other}{hint}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes, need {header}); re-download{hint}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != want:
        what = "truncated" if got < want else "trailing bytes"
        raise DataError(f"{path}: payload size mismatch ({what}): header dims {dims} need {want} bytes of "
                        f"{dtype.name}, file has {got}; re-download{hint}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(folder, split: str = "train") -> XY:
    """MNIST from the standard idx files in ``folder`` (``train-images-idx3-ubyte[.gz]`` etc.).

    ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000). Returns ``x`` uint8 ``(N, 28, 28)``, ``y`` uint8 ``(N,)``.
    """
    folder = Path(folder)
    if split not in MNIST_FILES:
        raise DataError(f"MNIST split must be 'train' or 'test' (the original files), got {split!r}")
    hint = "; get the files with `convngc download mnist` (or `python data/download.py mnist --dest DIR`)"
    paths = []
    for stem in MNIST_FILES[split]:
        p = _find_file(folder, stem)
        if p is None:
            raise DataError(f"{folder / stem}[.gz]: file not found{hint}")
        paths.append(p)
    x = load_idx(paths[0], expect_ndim=3, hint=hint)
    y = load_idx(paths[1], expect_ndim=1, hint=hint)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise DataError(f"{paths[0]}: MNIST idx files must hold uint8, got {x.dtype}/{y.dtype}")
    if len(x) != len(y):
        raise DataError(f"{paths[0]} has {len(x)} images but {paths[1]} has {len(y)} labels; mismatched files")
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10 python pickles
# ----------------------------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a CIFAR batch needs (numpy arrays), never arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"),
                ("copyreg", "_reconstructor"), ("builtins", "object"),
                ("_codecs", "encode")}  # protocol-2 pickles written by Python 3 store bytes this way

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_batch(data: bytes, where: str) -> XY:
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... : all mean "corrupt"
        raise DataError(f"{where}: corrupt CIFAR-10 pickle ({type(e).__name__}: {e}); re-download with "
                        f"`convngc download cifar10`") from e
    if not isinstance(d, dict):
        raise DataError(f"{where}: not a CIFAR-10 batch (pickle holds {type(d).__name__}, expected a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{where}: not a CIFAR-10 batch: keys {sorted(d)} lack 'data'/'labels' "
                        f"(CIFAR-100 uses 'fine_labels')")
    x = np.asarray(d["data"])
    y = np.asarray(d["labels"])
    if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8:
        raise DataError(f"{where}: CIFAR-10 'data' must be uint8 (N, 3072), got {x.dtype} {x.shape}")
    if y.shape != (len(x),) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{where}: CIFAR-10 'labels' must be N={len(x)} ints in 0..9, got shape {y.shape}")
    # rows are 1024 R, 1024 G, 1024 B values, each plane row-major 32x32 -> NHWC
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y.astype(np.uint8)


def load_cifar_batch(path) -> XY:
    """One CIFAR-10 python batch file (``data_batch_1`` .. ``test_batch``) -> ``(x (N,32,32,3) uint8, y uint8)``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; get CIFAR-10 with `convngc download cifar10`")
    return _parse_cifar_batch(path.read_bytes(), str(path))


_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def load_cifar10(path, split: str = "train") -> XY:
    """CIFAR-10 python version: ``path`` is the ``cifar-10-batches-py`` folder, its parent, or the tarball.

    ``split="train"`` concatenates ``data_batch_1..5`` in order (50,000), ``"test"`` reads ``test_batch``.
    """
    path = Path(path)
    if split not in _CIFAR_BATCHES:
        raise DataError(f"CIFAR-10 split must be 'train' or 'test' (the original batches), got {split!r}")
    names = _CIFAR_BATCHES[split]
    hint = "get CIFAR-10 with `convngc download cifar10`"
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                parts = []
                for n in names:
                    if n not in members:
                        raise DataError(f"{path}: archive has no member {n}; is this cifar-10-python.tar.gz?")
                    parts.append(_parse_cifar_batch(tar.extractfile(members[n]).read(), f"{path}:{n}"))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: unreadable tarball ({e}); delete it and {hint}") from e
    else:
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        if not folder.is_dir():
            raise DataError(f"{path}: directory not found; {hint}")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DataError(f"{folder}: missing CIFAR-10 batch file(s) {missing}; {hint}")
        parts = [load_cifar_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------------------------
# SVHN .mat
# ----------------------------------------------------------------------------------------------------------------
def load_svhn_mat(path) -> XY:
    """SVHN cropped digits (``train_32x32.mat`` / ``test_32x32.mat``): 'X' (32,32,3,N), 'y' (N,1) with 10 = digit 0.

    Returns ``x`` uint8 ``(N, 32, 32, 3)`` and ``y`` uint8 digits 0..9 (label 10 mapped to 0).
    """
    import scipy.io

    path = Path(path)
    hint = "; get SVHN with `convngc download svhn`"
    if not path.is_file():
        raise DataError(f"{path}: file not found{hint}")
    try:
        m = scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
        raise DataError(f"{path}: MATLAB v7.3/HDF5 .mat is not the SVHN format ({e}){hint}") from e
    except Exception as e:  # MatReadError, ValueError, OSError, zlib.error, ...
        raise DataError(f"{path}: unreadable .mat file ({type(e).__name__}: {e}); delete it and re-download"
                        f"{hint}") from e
    if "X" not in m or "y" not in m:
        keys = sorted(k for k in m if not k.startswith("__"))
        raise DataError(f"{path}: not an SVHN .mat: variables {keys}, expected 'X' and 'y'")
    X, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.dtype != np.uint8:
        raise DataError(f"{path}: SVHN 'X' must be uint8 (32, 32, 3, N), got {X.dtype} {X.shape}")
    if len(y) != X.shape[3] or (y.size and (y.min() < 0 or y.max() > 10)):
        raise DataError(f"{path}: SVHN 'y' must be N={X.shape[3]} labels in 0..10, got {y.shape}")
    return np.ascontiguousarray(X.transpose(3, 0, 1, 2)), (y % 10).astype(np.uint8)


def load_svhn(folder, split: str = "train") -> XY:
    """SVHN ``{split}_32x32.mat`` from ``folder`` (``split`` ``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise DataError(f"SVHN split must be 'train' or 'test', got {split!r}")
    return load_svhn_mat(Path(folder) / f"{split}_32x32.mat")


# ----------------------------------------------------------------------------------------------------------------
# PNG trees (CINIC-10 layout) and npz
# ----------------------------------------------------------------------------------------------------------------
_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def load_image_folder(root, split: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                      ) -> Tuple[Array, Array, Tuple[str, ...]]:
    """Images in ``root/<split>/<class>/*.png`` (or ``root/<class>/*.png`` when ``split`` is None).

    Classes are the sorted sub-folder names unless given; files are read in sorted order. Grayscale (and
    palette/RGBA) images are converted to RGB, as CINIC-10 has a few grayscale PNGs. All images must have the
    same size. Returns ``(x (N,H,W,3) uint8, y uint8 class indices, classes)``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    folder = root / split if split else root
    if not folder.is_dir():
        raise DataError(f"{folder}: directory not found (expected <root>/<split>/<class>/*.png, as CINIC-10 ships)")
    if classes is None:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder}: no class sub-folders (expected {folder}/<class>/*.png)")
    images, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (folder / c).glob("*") if p.suffix.lower() in _IMG_EXT)
        for f in files:
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{f}: unreadable image ({e}); delete or replace it") from e
            if images and a.shape != images[0].shape:
                raise DataError(f"{f}: image size {a.shape[:2]} differs from {images[0].shape[:2]} of the others")
            images.append(a)
            labels.append(k)
    if not images:
        raise DataError(f"{folder}: no image files (*.png) in the class folders {list(classes)}")
    return np.stack(images), np.asarray(labels, dtype=np.uint8), tuple(classes)


def load_npz(path, keys: Iterable[str] = ()) -> dict:
    """Arrays of a shared-layout ``.npz`` (``x`` uint8 images, ``y`` uint8 labels, extras in ``keys``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            out = {k: z[k] for k in ("x", "y", *keys) if k in names}
    except DataError:
        raise
    except Exception as e:  # BadZipFile, ValueError, OSError, EOFError, zlib.error
        raise DataError(f"{path}: unreadable .npz ({type(e).__name__}: {e}); restore the file") from e
    if "x" not in out:
        raise DataError(f"{path}: .npz has no 'x' array (has {sorted(names)})")
    x = out["x"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise DataError(f"{path}: 'x' must be uint8 (N,H,W) or (N,H,W,C), got {x.dtype} {x.shape}")
    if "y" in out and out["y"].shape != (len(x),):
        raise DataError(f"{path}: 'y' has shape {out['y'].shape}, expected ({len(x)},)")
    return out


def load_cinic10_sample(path, imagenet_only: bool = True) -> XY:
    """The shared ``cinic10_sample2000.npz``.

    By default only the ``source == 0`` images (1,532 ImageNet-derived images, none of them in CIFAR-10) are
    returned, so the set is usable as out-of-distribution data for a CIFAR-10 model; ``imagenet_only=False``
    returns all 2,000 (468 of them are CIFAR-10 training images).
    """
    d = load_npz(path, keys=("source",))
    x, y = d["x"], d.get("y")
    if imagenet_only:
        if "source" not in d:
            raise DataError(f"{path}: no 'source' array, cannot select the ImageNet-derived images")
        keep = d["source"] == 0
        x, y = x[keep], (y[keep] if y is not None else None)
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# Color-MNIST
# ----------------------------------------------------------------------------------------------------------------
def _linear_matrix(n_in: int, n_out: int) -> Array:
    """(n_out, n_in) 1-D linear interpolation weights, half-pixel centres, edge clamped."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - w)
    np.add.at(m, (np.arange(n_out), hi), w)
    return m


def resize_bilinear(x: Array, size: Tuple[int, int]) -> Array:
    """Bilinear resize of a uint8 batch ``(N, H, W[, C])`` to ``size=(H', W')``, rounded back to uint8.

    Same result (up to +-1 from rounding ties) as ``skimage.transform.resize(img, size, order=1, mode="edge",
    anti_aliasing=False, preserve_range=True)``: half-pixel-centred coordinates, computed as two separable
    matrix products.
    """
    h, w = x.shape[1:3]
    a, b = _linear_matrix(h, size[0]), _linear_matrix(w, size[1])
    out = np.empty((len(x),) + tuple(size) + x.shape[3:], np.uint8)
    for i in range(0, len(x), 1024):  # chunks keep the float64 temporaries in cache
        t = np.tensordot(x[i:i + 1024].astype(np.float64), b, axes=([2], [1]))  # (n, H, [C,] W')
        t = np.tensordot(t, a, axes=([1], [1]))                                # (n, [C,] W', H')
        out[i:i + 1024] = np.clip(np.rint(np.moveaxis(t, (-1, -2), (1, 2))), 0, 255)
    return out


def color_mnist(x: Array, seed=0, size: int = 32) -> Tuple[Array, Array]:
    """Color-MNIST from grayscale MNIST ``(N, 28, 28)`` uint8 -> ``(N, size, size, 3)`` uint8 and ``red`` (bool, N).

    As in the paper, every digit is drawn either red or green: the grayscale intensity goes into the R channel
    or the G channel, the other channels are 0. The colour is an i.i.d. Bernoulli(0.5) draw per image from
    ``numpy.random.default_rng(seed)``, independent of the label. (We do not tie colour to the label as in
    Arjovsky et al.'s Colored-MNIST: that construction plants a spurious correlation for invariance studies,
    which a generative model of images does not need; an independent coin keeps both colours equally frequent
    for every digit.) Images are resized 28 -> ``size`` with bilinear interpolation (:func:`resize_bilinear`,
    equal to skimage ``resize(order=1)``) before colouring.
    """
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"color_mnist expects grayscale uint8 (N, H, W), got {x.dtype} {x.shape}")
    red = _red_coins(len(x), seed)
    return _colorize(x, red, size), red


def _red_coins(n: int, seed) -> Array:
    return np.random.default_rng(seed).random(n) < 0.5


def _colorize(x: Array, red: Array, size: int) -> Array:
    g = resize_bilinear(x, (size, size)) if x.shape[1:] != (size, size) else x
    out = np.zeros(g.shape + (3,), np.uint8)
    out[red, ..., 0] = g[red]
    out[~red, ..., 1] = g[~red]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Embedded natural-image patches (no download)
# ----------------------------------------------------------------------------------------------------------------
# colour photographs shipped inside the scikit-image wheel (no pooch download needed). `cat` is the same image
# as `chelsea` and `colorwheel`/`logo` are synthetic, so they are left out.
EMBEDDED_SOURCES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina",
                    "rocket", "stereo_motorcycle")
EMBEDDED_MIN_STD = 4.0  # patches whose pixel std (uint8 units) is below this are flat (sky, black borders): dropped


def _grid_patches(img: Array, p: int) -> Array:
    h, w = (img.shape[0] // p) * p, (img.shape[1] // p) * p
    g = img[:h, :w].reshape(h // p, p, w // p, p, 3).transpose(0, 2, 1, 3, 4)
    return g.reshape(-1, p, p, 3)


@functools.lru_cache(maxsize=4)
def _embedded_all(patch: int) -> Tuple[Array, Array]:
    import skimage.data

    xs, ys = [], []
    for k, name in enumerate(EMBEDDED_SOURCES):
        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # a future skimage may move an image behind a pooch download
            warnings.warn(f"embedded dataset: skimage.data.{name}() unavailable offline ({e}); skipped")
            continue
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity): use the left view
            img = img[0]
        img = np.asarray(img, np.uint8)[..., :3]
        h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
        half = img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        for im in (img, half):
            p = _grid_patches(im, patch)
            p = p[p.reshape(len(p), -1).std(axis=1) >= EMBEDDED_MIN_STD]
            xs.append(p)
            ys.append(np.full(len(p), k, np.uint8))
    if not xs:
        raise DataError("embedded dataset: no scikit-image sample photograph could be loaded")
    x, y = np.concatenate(xs), np.concatenate(ys)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def embedded_images(n: Optional[int] = None, seed: int = 0, patch: int = 32) -> XY:
    """Natural-image patches that need no download: ``(x (N,patch,patch,3) uint8, y uint8 source-image index)``.

    Non-overlapping ``patch x patch`` grid patches cut from the colour photographs bundled in scikit-image
    (:data:`EMBEDDED_SOURCES`), at full resolution and 2x2-box-downscaled (more natural-image statistics per
    patch); nearly flat patches (std < :data:`EMBEDDED_MIN_STD`) are dropped: 4,811 patches for ``patch=32``
    with scikit-image 0.26. The order is a permutation by ``seed``; ``n`` takes the first ``n``.
    """
    x, y = _embedded_all(int(patch))
    order = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[order], y[order]


# ----------------------------------------------------------------------------------------------------------------
# Splits and registry
# ----------------------------------------------------------------------------------------------------------------
def split_train_val(n_train: int, seed: int = 0, n_val: Optional[int] = None) -> Tuple[Array, Array]:
    """Indices ``(train_idx, val_idx)`` of a training set of size ``n_train``, both sorted, disjoint, complete.

    Default ``n_val = min(5000, n_train // 10)``: the paper holds out 5,000 training images (Appendix B); a
    training set smaller than 50,000 (embedded patches, partial CIFAR-10) gives 10% instead. Deterministic in seed.
    """
    if n_val is None:
        n_val = min(VAL_SIZE, int(n_train * VAL_FRACTION))
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def default_data_dirs(data_dir=None) -> list:
    """Where :func:`load_dataset` looks: ``data_dir``, else ``$CONVNGC_DATA_DIR``, else ``../shared/data``
    relative to the working directory and to the repository (those that exist)."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get("CONVNGC_DATA_DIR"):
        return [Path(os.environ["CONVNGC_DATA_DIR"])]
    out = []
    for p in (Path.cwd().parent / "shared" / "data", _REPO.parent / "shared" / "data"):
        p = p.resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _npz_loader(files_train: Sequence[Path], file_test: Path, name: str) -> Callable[[str], XY]:
    def load(part: str) -> XY:
        if part == "test":
            d = load_npz(file_test)
            return d["x"], d.get("y")
        present = [f for f in files_train if f.is_file()]
        if len(present) < len(files_train):
            warnings.warn(f"{name}: only {len(present)} of {len(files_train)} training files present "
                          f"({', '.join(f.name for f in present)}); training on that subset")
        parts = [load_npz(f) for f in present]
        return np.concatenate([p["x"] for p in parts]), np.concatenate([p["y"] for p in parts])
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
            out.append((str(f), f.is_file(), _npz_loader([d / "mnist_train.npz"], d / "mnist_test.npz", name), True))
        for d in (root / "mnist" / "raw", root / "mnist", root / "MNIST" / "raw", root):
            stems = MNIST_FILES[part]
            out.append((f"{d}/{stems[0]}[.gz] + {stems[1]}[.gz]", all(_find_file(d, s) for s in stems),
                        functools.partial(load_mnist, d), True))
    elif name == "cifar10":
        for d in (root / "cifar10", root):
            trains = [d / f"cifar10_train_batch{i}.npz" for i in range(1, 6)]
            found = (d / "cifar10_test.npz").is_file() if test else any(f.is_file() for f in trains)
            out.append((f"{d}/cifar10_test.npz" if test else f"{d}/cifar10_train_batch{{1..5}}.npz", found,
                        _npz_loader(trains, d / "cifar10_test.npz", name), True))
        for d in (root / "cifar10" / "cifar-10-batches-py", root / "cifar-10-batches-py", root / "cifar10"):
            f = d / ("test_batch" if test else "data_batch_1")
            out.append((f"{d}/{'test_batch' if test else 'data_batch_{1..5}'}", f.is_file(),
                        functools.partial(load_cifar10, d), True))
        for f in (root / "cifar10" / "cifar-10-python.tar.gz", root / "cifar-10-python.tar.gz"):
            out.append((str(f), f.is_file(), functools.partial(load_cifar10, f), True))
    elif name == "svhn":
        for d in (root / "svhn", root):
            f = d / f"svhn_{part}.npz"
            out.append((str(f), f.is_file(), _npz_loader([d / "svhn_train.npz"], d / "svhn_test.npz", name), True))
        for d in (root / "svhn", root):
            f = d / f"{part}_32x32.mat"
            out.append((str(f), f.is_file(), functools.partial(load_svhn, d), True))
    elif name == "cinic10":
        for d in (root / "cinic10", root / "CINIC-10", root / "cinic-10"):
            out.append((f"{d}/{part}/<class>/*.png", (d / part).is_dir(),
                        lambda p, d=d: load_image_folder(d, p)[:2], True))
        for d in (root / "cinic10", root):
            f = d / "cinic10_sample2000.npz"
            out.append((f"{f} (sample: ImageNet-derived images only)", f.is_file(),
                        lambda p, f=f: load_cinic10_sample(f), False))
    return out


def _no_test_split(x: Array, y: Optional[Array], split: str, seed: int) -> XY:
    """For a set without an official test split: a fixed 10% test part (seed 0, independent of ``seed``),
    then train/val as usual from the rest."""
    rest, test = split_train_val(len(x), seed=0, n_val=int(len(x) * VAL_FRACTION))
    idx = test if split == "test" else rest[split_train_val(len(rest), seed)[split == "val"]]
    return x[idx], (y[idx] if y is not None else None)


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
                return (x, y) if split == "all" else _no_test_split(x, y, split, seed)
            x, y = loader(part)
            if split in ("test", "all"):
                return x, y
            tr, va = split_train_val(len(x), seed)
            idx = va if split == "val" else tr
            return x[idx], (y[idx] if y is not None else None)
    where = "\n  ".join(looked) if looked else "(no data dir: none given, $CONVNGC_DATA_DIR unset, no ../shared/data)"
    raise DataError(f"dataset {name!r}: no supported files found. Looked for:\n  {where}\n"
                    f"Download it with `convngc download {name} --dest DIR` (or `python data/download.py {name} "
                    f"--dest DIR`) and pass `--data-dir DIR` / data_dir=DIR (or set CONVNGC_DATA_DIR=DIR).")


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
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS + ("all",):
        raise DataError(f"unknown split {split!r} for {name}; choose one of {', '.join(SPLITS)} (or 'all')")
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    if name == "embedded":
        x, y = embedded_images(seed=0)
        if split != "all":
            x, y = _no_test_split(x, y, split, seed)
    elif name == "color-mnist":  # == color_mnist(whole original split)[idx], but only the kept images are resized
        x, y = _load_original("mnist", "test" if split == "test" else "all", data_dir, seed)
        red = _red_coins(len(x), seed=(seed, int(split == "test")))
        idx = np.arange(len(x))
        if split in ("train", "val"):
            idx = split_train_val(len(x), seed)[split == "val"]
        idx = idx[:limit]
        x, y = _colorize(x[idx], red[idx], 32), y[idx]
    else:
        x, y = _load_original(name, split, data_dir, seed)
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# Conversion to the model's layout
# ----------------------------------------------------------------------------------------------------------------
def add_channel(x: Array) -> Array:
    """``(N, H, W)`` grayscale -> ``(N, H, W, 1)``; NHWC input is returned unchanged."""
    return x[..., None] if x.ndim == 3 else x


def to_model(x: Array, channels: Optional[int] = None) -> Array:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 NCHW in ``[0, 1]`` (the model's layout).

    ``channels=3`` broadcasts a single (grayscale) channel to RGB; otherwise channels are kept as they are.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"to_model expects uint8 images from a loader, got {x.dtype}; float data is probably "
                        f"already converted (use check_images on it)")
    x = add_channel(x)
    if x.ndim != 4:
        raise DataError(f"to_model expects (N, H, W) or (N, H, W, C) images, got shape {x.shape}")
    if channels is not None and x.shape[-1] != channels:
        if x.shape[-1] == 1:
            x = np.broadcast_to(x, x.shape[:-1] + (channels,))
        else:
            raise DataError(f"to_model: images have {x.shape[-1]} channels, cannot convert to {channels}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def check_images(x, channels: Optional[int] = None, size=None, value_range=(0.0, 1.0)) -> Array:
    """Validate a model input batch: float NCHW, finite, within ``value_range`` (None: unchecked; 1e-6 slack),
    ``channels`` and ``size`` (int or (H, W)) when given.

    Raises :class:`DataError` (a ``ValueError``) naming the problem; returns ``x`` unchanged when valid.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"images must be float32 NCHW in [0, 1], got dtype {x.dtype}; convert uint8 loader "
                        f"output with convngc.data.to_model")
    if x.ndim != 4:
        raise DataError(f"images must be a 4-d NCHW batch, got {x.ndim}-d shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        hint = " (looks like NHWC: use to_model)" if x.shape[-1] == channels else ""
        raise DataError(f"images have {x.shape[1]} channels (shape {x.shape}), model expects {channels}{hint}")
    if size is not None:
        hw = (size, size) if np.isscalar(size) else tuple(size)
        if tuple(x.shape[2:]) != hw:
            raise DataError(f"images are {x.shape[2]}x{x.shape[3]}, model expects {hw[0]}x{hw[1]}")
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.unique(np.nonzero(~finite)[0])
        kind = "NaN" if np.isnan(x).any() else "Inf"
        raise DataError(f"images contain {kind} values ({int((~finite).sum())} entries, in images "
                        f"{bad[:5].tolist()}{'...' if len(bad) > 5 else ''})")
    if value_range is not None and x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < value_range[0] - 1e-6 or hi > value_range[1] + 1e-6:
            raise DataError(f"image values must lie in [{value_range[0]:g}, {value_range[1]:g}], got range "
                            f"[{lo:.4g}, {hi:.4g}]{' (uint8 scale? use to_model)' if hi > 1.5 else ''}")
    return x
