"""Conversion to the model's layout: uint8 NHWC from a loader -> float32 NCHW in [0, 1], and its check."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import DataError

Array = np.ndarray


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
