"""The ``.npz`` files of the shared data folder (``x`` uint8 NHWC, ``y`` uint8) and the CINIC-10 sample."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np

from .errors import DataError, open_data

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]


def load_npz(path, keys: Iterable[str] = ()) -> dict:
    """Arrays of a shared-layout ``.npz`` (``x`` uint8 images, ``y`` uint8 labels, extras in ``keys``)."""
    path = Path(path)
    try:
        with open_data(path) as f, np.load(f, allow_pickle=False) as z:
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
    if len(x) == 0 or x.size == 0:
        raise DataError(f"{path}: holds no images ('x' has shape {x.shape})")
    if "y" in out and out["y"].shape != (len(x),):
        raise DataError(f"{path}: 'y' has shape {out['y'].shape}, expected ({len(x)},)")
    if "y" in out and out["y"].dtype.kind not in "iu":
        y = out["y"]
        got = "strings" if y.dtype.kind in "USO" else y.dtype.name
        raise DataError(f"{path}: 'y' must be integer labels (uint8), got {got} (e.g. {y[:3].tolist()}); restore "
                        f"the original file, or leave 'y' out (labels are not needed to train)")
    top = int(x.max())
    if top <= 1:
        what = "every pixel is 0" if top == 0 else "pixel values are only 0 and 1, not 0-255 (a binarised copy or a mask?)"
        warnings.warn(f"{path}: {what}; the images will look black to the model")
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
