"""What CuPy's RawKernel does not check, checked before every launch (it ignores strides and takes a
Python int as long long): float32 only (TypeError; a float64 array is NOT cast silently, since the
reference would then be float64 and the kernel float32), arrays of the call's backend, C-contiguous
copies where needed, and shapes and channel counts as ngc_ref checks them (ValueError). What settle
accepts is checked by ngc_ref.checks, the one validation of every backend (settle_inputs).
"""
import numpy as np

from ngc_ref import checks as ref_checks

from .backend import array_module, belongs, resolve_all

__all__ = ["inputs", "output", "stride", "kernel_size", "filters", "out_hw", "layer", "settle_inputs"]


def _array(op, name, a, backend):
    if not belongs(a, backend):
        raise TypeError("%s: %s must be a %s array for backend %r, got %s"
                        % (op, name, "CuPy" if backend == "cuda" else "NumPy", backend, type(a).__module__))
    if a.dtype != np.float32:
        raise TypeError("%s: %s must be float32 (the kernels compute in float32 only), got %s; convert "
                        "with .astype(np.float32)" % (op, name, a.dtype))


def inputs(op, backend, **arrays):
    """Arrays the kernel reads: float32 arrays of the backend, returned C-contiguous, in the order given."""
    xp = array_module(backend)
    out = []
    for name, a in arrays.items():
        _array(op, name, a, backend)
        out.append(xp.ascontiguousarray(a))
    return out


def output(op, backend, a, shape, name="output array"):
    """An array the kernel writes: it must already be float32, C-contiguous and of the right shape."""
    _array(op, name, a, backend)
    if tuple(a.shape) != tuple(shape) or not a.flags.c_contiguous:
        raise ValueError("%s: %s must be C-contiguous of shape %s, got shape %s (contiguous: %s)"
                         % (op, name, tuple(shape), tuple(a.shape), bool(a.flags.c_contiguous)))
    return a


def _int(op, what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError("%s: %s must be an int >= 1, got %r" % (op, what, v))
    return int(v)


def stride(op, s):
    return _int(op, "stride", s)


def kernel_size(op, K):
    return _int(op, "K", K)


filters = ref_checks.check_filters        # 4-D arrays, square filters, agreeing channels (ValueError otherwise)
out_hw = ref_checks.check_out_hw          # the size of the layer below; it must map back


def layer(op, z_l, W, b, below_hw, s):
    """Shapes of one layer pair: z_l (B, C_l, H, W), W (C_l, C_{l-1}, K, K), b^l (C_{l-1},) or a bias map
    (C_{l-1}, H_{l-1}, W_{l-1}) -> (H_{l-1}, W_{l-1})."""
    filters(op, z_l, W, z_l.shape[1] == W.shape[0], "%s: z has %d channels, W expects %d" % (op, z_l.shape[1], W.shape[0]))
    hw = out_hw(op, z_l.shape[2], z_l.shape[3], s, below_hw)
    if b is not None and tuple(b.shape) not in ((W.shape[1],), (W.shape[1],) + hw):
        raise ValueError("%s: bias has shape %s; W predicts %d maps of %dx%d, so it must be (%d,) or a bias map %s"
                         % ((op, tuple(b.shape), W.shape[1]) + hw + (W.shape[1], (W.shape[1],) + hw)))
    return hw


def settle_inputs(op, params, x, cfg, z_top, T=None, clamp="always", backend=None):
    """What either settling path relies on, checked once at the entry, in this order:
      1. as every backend checks it (ngc_ref.checks: the same error for the same bad input on numpy, cpu
         and cuda): clamp, the params dict and every shape the config needs, a batch of >= 1 image,
         float32 throughout, finite values, T;
      2. the call's backend (`backend`, or the arrays' kind) and every array of that kind (backend.resolve_all).
    Returns (T, backend): T is cfg.T when None."""
    ref_checks.check_clamp(clamp, op)
    ref_checks.check_settle_inputs(params, x, cfg, z_top, dtypes=(np.float32,), where=op)
    T = cfg.T if T is None else ref_checks.check_steps(T, op)
    return T, resolve_all(op, backend, params, x, z_top)
