"""SVHN cropped digits, ``{train,test}_32x32.mat``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import DataError, open_data

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]


def load_svhn_mat(path) -> XY:
    """SVHN cropped digits (``train_32x32.mat`` / ``test_32x32.mat``): 'X' (32,32,3,N), 'y' (N,1) with 10 = digit 0.

    Returns ``x`` uint8 ``(N, 32, 32, 3)`` and ``y`` uint8 digits 0..9 (label 10 mapped to 0).
    """
    path = Path(path)
    hint = "; get SVHN with `convngc download svhn`"
    with open_data(path, hint) as f:
        return _parse_svhn(f, path, hint)


def _parse_svhn(f, path, hint) -> XY:
    import scipy.io

    try:
        m = scipy.io.loadmat(f)
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
    if y.dtype.kind not in "iubf":
        got = "strings" if y.dtype.kind in "USO" else y.dtype.name
        raise DataError(f"{path}: SVHN 'y' must be integer labels 0..10, got {got} (e.g. {y.ravel()[:3].tolist()})")
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):      # MATLAB stores the labels as doubles
        raise DataError(f"{path}: SVHN 'y' must be whole-number labels 0..10, got {y[y != np.round(y)][:3].tolist()}")
    if len(y) != X.shape[3] or (y.size and (y.min() < 0 or y.max() > 10)):
        raise DataError(f"{path}: SVHN 'y' must be N={X.shape[3]} labels in 0..10, got {y.shape}")
    return np.ascontiguousarray(X.transpose(3, 0, 1, 2)), (y % 10).astype(np.uint8)


def load_svhn(folder, split: str = "train") -> XY:
    """SVHN ``{split}_32x32.mat`` from ``folder`` (``split`` ``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise DataError(f"SVHN split must be 'train' or 'test', got {split!r}")
    return load_svhn_mat(Path(folder) / f"{split}_32x32.mat")
