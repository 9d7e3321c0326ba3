"""CIFAR-10 python pickle batches, read with an unpickler that resolves only numpy's array globals."""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import DataError, open_data, read_failure

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _empty_bytes(*args):
    """bytes() as a protocol-2 pickle calls it for an empty bytes value (b"" is pickled as __builtin__.bytes
    with no arguments): only that call; bytes(n) with a size would be an allocation, not data."""
    if args:
        raise pickle.UnpicklingError(f"refusing bytes{args!r}: only bytes() (an empty value) is data")
    return b""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a CIFAR batch needs (numpy arrays), never arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"),
                ("copyreg", "_reconstructor"), ("builtins", "object"),
                ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes this way
                # protocol 5 stores an array as _frombuffer(bytes, dtype, shape, order): data, not code
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):    # b"" in protocol 2
            return _empty_bytes
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
    if y.size == 0 and y.dtype.kind == "f":              # a batch of 0 images: labels [] (no dtype to tell)
        y = y.astype(np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8:
        raise DataError(f"{where}: CIFAR-10 'data' must be uint8 (N, 3072), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iub":
        got = "strings" if y.dtype.kind in "USO" else y.dtype.name
        raise DataError(f"{where}: CIFAR-10 'labels' must be integers 0..9, got {got} (e.g. {y.ravel()[:3].tolist()})")
    if y.shape != (len(x),) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{where}: CIFAR-10 'labels' must be N={len(x)} ints in 0..9, got shape {y.shape}")
    # rows are 1024 R, 1024 G, 1024 B values, each plane row-major 32x32 -> NHWC
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y.astype(np.uint8)


def load_cifar_batch(path) -> XY:
    """One CIFAR-10 python batch file (``data_batch_1`` .. ``test_batch``) -> ``(x (N,32,32,3) uint8, y uint8)``."""
    path = Path(path)
    with open_data(path, "; get CIFAR-10 with `convngc download cifar10`") as f:
        try:
            raw = f.read()
        except OSError as e:
            raise read_failure(e, path) from e
    return _parse_cifar_batch(raw, str(path))


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
    if path.name.endswith((".tar.gz", ".tgz", ".tar")) and path.exists() and not path.is_dir():
        with open_data(path, f"; {hint}") as f:
            try:
                with tarfile.open(fileobj=f) as tar:
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
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise DataError(f"{folder}: missing CIFAR-10 batch file(s) {missing}; {hint}")
        parts = [load_cifar_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
