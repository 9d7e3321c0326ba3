"""MNIST idx files (``.gz`` or raw): ``00 00 <dtype> <ndim>``, big-endian dims, payload."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import DataError, open_data

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]


_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path, hint: str = "") -> bytes:
    """Whole file contents, transparently gunzipped when the name ends in ``.gz``."""
    path = Path(path)
    with open_data(path, hint) as raw:
        return _read_open(raw, path, hint)


def _read_open(raw, path: Path, hint: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(raw, "rb") as f:
                return f.read()
        return raw.read()
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
    if 0 in dims:
        raise DataError(f"{path}: zero-sized dimension in header dims {dims}: the file holds no data; re-download"
                        f"{hint}")
    dtype = _IDX_DTYPES[code]
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != want:
        what = "truncated" if got < want else "trailing bytes"
        raise DataError(f"{path}: payload size mismatch ({what}): header dims {dims} need {want} bytes of "
                        f"{dtype.name}, file has {got}; re-download{hint}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).exists() and not (folder / name).is_dir():
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
        p = find_file(folder, stem)
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
