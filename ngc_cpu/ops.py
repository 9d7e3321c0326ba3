"""ngc_ref.ops on the CPU, fast: the same names, signatures and results (float32 or float64, NumPy in and out).

    conv2d(x, w, stride=2)                     == ngc_ref.ops.conv2d            (kernels.conv2d_tiles)
    conv2d_transpose(z, w, stride=2, out_hw)   == ngc_ref.ops.conv2d_transpose  (kernels.conv2d_transpose_tiles)
    conv2d_weight_grad(e, a, K, stride=2)      == ngc_ref.ops.conv2d_weight_grad (kernels.weight_grad_tiles)

Each converts to the tile layout, runs the same per-pixel gathers the fused settle runs (kernels.py), and
converts back, so testing these against the reference tests the building blocks of model.settle.
"""
import numpy as np

from ngc_ref.checks import check_filters, check_out_hw, check_weight_grad
from ngc_ref.ops import conv_out_size, same_padding  # noqa: F401  (one SAME rule for every backend)

from . import kernels, threads
from .layout import from_tiles, lanes, pack_conv, pack_predict, to_tiles

__all__ = ["conv2d", "conv2d_transpose", "conv2d_weight_grad", "conv_out_size", "same_padding"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(op, *arrays):
    dt = np.dtype(arrays[0].dtype)
    for a in arrays:
        if np.dtype(a.dtype) not in DTYPES:
            raise TypeError("%s: the cpu backend computes in float32 or float64, got %s" % (op, a.dtype))
        if a.dtype != dt:
            raise TypeError("%s: got %s and %s; pass one dtype" % (op, dt, a.dtype))
    return dt


def _geo(out_chw, in_chw, pad, K, s):
    return np.array([list(out_chw) + [0, 0, 0], list(in_chw) + [0] + list(pad), [K, s, 0, 0, 0, 0]], np.int64)


def conv2d(x, w, stride=2):
    """Strided convolution `*_s` with SAME padding: (B, C_{l-1}, H, W), (C_l, C_{l-1}, K, K) -> (B, C_l, ceil(H/s), ceil(W/s))."""
    check_filters("conv2d", x, w, x.shape[1] == w.shape[1], "conv2d: x has %d channels, w expects %d"
                  % (x.shape[1], w.shape[1]))
    dt = _dtype("conv2d", x, w)
    V = lanes(dt)
    B, Cin, H, W = x.shape
    Cout, K = w.shape[0], w.shape[-1]
    Ho, Wo = conv_out_size(H, stride), conv_out_size(W, stride)
    geo = _geo((Cin, H, W), (Cout, Ho, Wo), (same_padding(H, K, stride)[0], same_padding(W, K, stride)[0]), K, stride)
    src = to_tiles(np.ascontiguousarray(x), V)
    out = np.empty((src.shape[0], Cout * Ho * Wo * V), dt)
    threads.run(kernels.conv2d_tiles, src.shape[0], src, out, geo, pack_conv(w, dt), V)
    return from_tiles(out, B, (Cout, Ho, Wo), V)


def conv2d_transpose(z, w, stride=2, out_hw=None):
    """Transposed convolution `⊙_s`, the exact adjoint of conv2d over an input of size out_hw (default s*H x s*W)."""
    check_filters("conv2d_transpose", z, w, z.shape[1] == w.shape[0],
                  "conv2d_transpose: z has %d channels, w expects %d" % (z.shape[1], w.shape[0]))
    dt = _dtype("conv2d_transpose", z, w)
    V = lanes(dt)
    B, Cu, H, W = z.shape
    Cl, K = w.shape[1], w.shape[-1]
    Ho, Wo = check_out_hw("conv2d_transpose", H, W, stride, out_hw)
    geo = _geo((Cl, Ho, Wo), (Cu, H, W), (same_padding(Ho, K, stride)[0], same_padding(Wo, K, stride)[0]), K, stride)
    src = to_tiles(np.ascontiguousarray(z), V)
    out = np.empty((src.shape[0], Cl * Ho * Wo * V), dt)
    threads.run(kernels.conv2d_transpose_tiles, src.shape[0], src, out, geo, pack_predict(w, dt), V)
    return from_tiles(out, B, (Cl, Ho, Wo), V)


def conv2d_weight_grad(e, a, K, stride=2):
    """Alg. 2 line 9: Delta W_ij = e_j *_1 Dilate(a_i, s), summed over the batch -> (C_l, C_{l-1}, K, K).
    Summed per tile in the dtype, then tile after tile in float64."""
    check_weight_grad("conv2d_weight_grad", e, a, stride)
    B, C, H, W = a.shape
    dt = _dtype("conv2d_weight_grad", e, a)
    V = lanes(dt)
    Cl, Ho, Wo = e.shape[1:]
    geo = _geo((Cl, Ho, Wo), (C, H, W), (same_padding(Ho, K, stride)[0], same_padding(Wo, K, stride)[0]), K, stride)
    at, et = to_tiles(np.ascontiguousarray(a), V), to_tiles(np.ascontiguousarray(e), V)
    parts = np.zeros((at.shape[0], C * Cl * K * K), np.float64)
    threads.run(kernels.weight_grad_tiles, at.shape[0], at, et, parts, geo, V)
    return parts.sum(axis=0).reshape(C, Cl, K, K).astype(dt)
