"""What `settle` accepts, checked in one place for every backend (ngc_ref, ngc_cpu; ngc_cuda can call it too).

Each problem gets one clear error that names the argument, what it is and what the config needs:
a params dict without 'W' or 'b', a layer missing or None, a wrong shape (W, E, b, x, z_top), an empty
batch, a dtype the backend does not compute in (TypeError), mixed dtypes, NaN or Inf anywhere.

    dtype = check_settle_inputs(params, x, cfg, z_top)                        # the reference: any float dtype
    dtype = check_settle_inputs(params, x, cfg, z_top, dtypes=(np.float32,))  # a float32-only backend
"""
import numbers

import numpy as np

__all__ = ["check_settle_inputs", "check_params", "check_steps", "check_precision", "param_shape"]

_ROLE = {"W": "generative filters W^l", "b": "biases b^l", "E": "error filters E^l"}


def param_shape(cfg, key, l):
    """The shape the config needs for params[key][l], l = 1..L."""
    C, K = cfg.layer_channels, cfg.kernel
    if key == "b":
        return (C[l - 1],) if cfg.bias == "channel" else (C[l - 1],) + cfg.map_hw(l - 1)
    return (C[l], C[l - 1], K, K)


def _finite(a):
    return bool(np.isfinite(a).all())      # NumPy arrays; CuPy arrays answer np.isfinite too


def _check_dtype(what, a, dtypes, where):
    dt = np.dtype(a.dtype)
    ok = dt.kind == "f" if dtypes is None else dt in [np.dtype(d) for d in dtypes]
    if not ok:
        need = "a floating-point dtype" if dtypes is None else " or ".join(np.dtype(d).name for d in dtypes)
        raise TypeError("%s: %s has dtype %s; this backend computes in %s" % (where, what, dt, need))
    return dt


def _check_same_dtype(what, a, dtype, other, dtypes, where):
    """`a` has the dtype of the arrays before it (`other`, of dtype `dtype`, already checked): a float of
    another dtype is named as a mix, whatever the backend computes in; a non-float by what it computes in."""
    dt = np.dtype(a.dtype)
    if dt != dtype:
        if dt.kind != "f":
            _check_dtype(what, a, dtypes, where)
        raise TypeError("%s: %s is %s but %s %s; pass every array in one dtype" % (where, what, dt, other, dtype))


def _check_array(what, a, where):
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        raise TypeError("%s: %s must be an array, got %s" % (where, what, type(a).__name__))


def check_params(params, cfg, where="settle", dtypes=None):
    """Check a params dict {"W": [None, W^1..W^L], "b": [None, b^1..b^L], "E": None or [...]} against cfg.
    Returns the dtype of the parameters (all must share it)."""
    if not isinstance(params, dict):
        raise TypeError("%s: params must be a dict with keys 'W', 'b' (and optionally 'E'), as made by "
                        "init_params; got %s" % (where, type(params).__name__))
    L = cfg.L
    for key in ("W", "b"):
        if key not in params or params[key] is None:
            raise ValueError("%s: params has no %r (the %s); expected the keys 'W', 'b' and optionally 'E', "
                             "as made by init_params" % (where, key, _ROLE[key]))
    dtype = None
    for key in ("W", "b", "E"):
        arrs = params.get(key)
        if arrs is None:
            continue
        if not isinstance(arrs, (list, tuple)) or len(arrs) != L + 1:
            n = len(arrs) if isinstance(arrs, (list, tuple)) else None
            raise ValueError("%s: params[%r] must be a list of L + 1 = %d entries (index 0 unused, layers 1..%d), "
                             "got %s" % (where, key, L + 1, L,
                                         "%d entries" % n if n is not None else type(arrs).__name__))
        for l in range(1, L + 1):
            a, what = arrs[l], "params[%r][%d]" % (key, l)
            want = param_shape(cfg, key, l)
            if a is None:
                raise ValueError("%s: %s is None; every layer 1..%d needs its %s, shape %s here"
                                 % (where, what, L, _ROLE[key], want))
            _check_array(what, a, where)
            if tuple(a.shape) != want:
                raise ValueError("%s: %s has shape %s, the config needs %s" % (where, what, tuple(a.shape), want))
            if dtype is None:
                dtype = _check_dtype(what, a, dtypes, where)
            else:
                _check_same_dtype(what, a, dtype, "params['W'][1] is", dtypes, where)
            if not _finite(a):
                raise ValueError("%s: %s contains NaN or Inf" % (where, what))
    return dtype


def check_settle_inputs(params, x, cfg, z_top, dtypes=None, where="settle"):
    """Check settle's arguments against cfg; returns their common dtype.

    x: (B, C_0, H_0, W_0) with B >= 1; z_top: (B, C_L, H_L, W_L); params as check_params; every array
    of one dtype (in `dtypes` when given, else any float dtype), finite."""
    dtype = check_params(params, cfg, where, dtypes)
    C, L = cfg.layer_channels, cfg.L
    for what, a in (("x", x), ("z_top", z_top)):
        _check_array(what, a, where)
    if x.ndim != 4 or tuple(x.shape[1:]) != (C[0],) + cfg.map_hw(0):
        raise ValueError("%s: x has shape %s, the config needs (B, %d, %d, %d)"
                         % ((where, tuple(x.shape), C[0]) + cfg.map_hw(0)))
    if x.shape[0] == 0:
        raise ValueError("%s: the batch is empty (x has shape %s); pass at least one image" % (where, tuple(x.shape)))
    want = (x.shape[0], C[L]) + cfg.map_hw(L)
    if tuple(z_top.shape) != want:
        raise ValueError("%s: z_top has shape %s, the config needs %s (B, C_L, H_L, W_L) for this batch"
                         % (where, tuple(z_top.shape), want))
    for what, a in (("x", x), ("z_top", z_top)):
        _check_same_dtype(what, a, dtype, "the parameters are", dtypes, where)
        if not _finite(a):
            raise ValueError("%s: %s contains NaN or Inf" % (where, what))
    return dtype


def check_steps(T, where="settle"):
    """T, the number of settling steps: a whole number >= 0 (a bool or 2.5 is refused, not rounded)."""
    if isinstance(T, bool) or not isinstance(T, numbers.Integral):
        raise TypeError("%s: T must be a whole number of settling steps, got %r" % (where, T))
    if T < 0:
        raise ValueError("%s: T must be >= 0, got %d" % (where, T))
    from .config import RANGES
    if T > RANGES["T"][3]:
        raise ValueError("%s: T must be <= %d (Config's bound on settling steps), got %d" % (where, RANGES["T"][3], T))
    return int(T)


def check_precision(pi0, where="settle"):
    """pi0, the precision of the bottom error in z^1's correction: a finite number > 0 (1: Algorithm 1)."""
    if isinstance(pi0, bool) or not isinstance(pi0, numbers.Real) or not (0 < float(pi0) < float("inf")):
        raise ValueError("%s: pi0 must be a finite number > 0 (the precision of e^0; 1 = Algorithm 1), got %r"
                         % (where, pi0))
    return float(pi0)
