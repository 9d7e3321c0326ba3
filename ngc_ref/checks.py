"""Every check of what a user passes in, in one module, for every backend and the library.

What `settle` accepts is checked here for ngc_ref, ngc_cpu and ngc_cuda alike, so the same bad input gets the
same error from every backend: a params dict without 'W' or 'b', a layer missing or None, a wrong shape (W, E,
b, x, z_top), an empty batch, a dtype the backend does not compute in (TypeError), mixed dtypes, NaN or Inf
anywhere (NonFiniteError, a ValueError), a bad clamp, T or pi0. The operators' shape rules (check_filters,
check_out_hw, check_weight_grad: written in ngc_ref.ops beside the SAME rule, published here) and the library's
image batches (check_image_batch, convngc.model) are here too.

Checks run once, at the entry of a public function (settle, an operator, ConvNGC.settle); below the entry
nothing checks again (ngc_cuda's kernel launches trust what their entry checked). Shapes and dtypes, which
cost nothing, are checked before values; the NaN/Inf test of all of settle's arrays is one pass over each,
and on a GPU one synchronisation for all of them (`first_nonfinite`), not one per array.

    dtype = check_settle_inputs(params, x, cfg, z_top)                        # the reference: any float dtype
    dtype = check_settle_inputs(params, x, cfg, z_top, dtypes=(np.float32,))  # a float32-only backend
"""
import numbers
import sys

import numpy as np

# the operators' shape rules are written beside the operators, with the SAME rule they check, and published here
from .ops import check_filters, check_out_hw, check_weight_grad  # noqa: F401

__all__ = ["check_settle_inputs", "check_params", "check_steps", "check_precision", "check_momentum", "check_clamp",
           "param_shape", "NonFiniteError", "first_nonfinite", "nonfinite_kind", "named_params", "check_filters", "check_out_hw",
           "check_weight_grad", "check_image_batch", "check_finite_inputs"]

_ROLE = {"W": "generative filters W^l", "b": "biases b^l", "E": "error filters E^l"}


def param_shape(cfg, key, l):
    """The shape the config needs for params[key][l], l = 1..L."""
    C, K = cfg.layer_channels, cfg.kernel
    if key == "b":
        return (C[l - 1],) if cfg.bias == "channel" else (C[l - 1],) + cfg.map_hw(l - 1)
    return (C[l], C[l - 1], K, K)


class NonFiniteError(ValueError):
    """An input holds NaN or Inf. `name` says which ("x", "z_top", "params['W'][2]"); for a parameter `key`
    and `layer` too (else None); `array` is the array itself (`nonfinite_kind` tells NaN from Inf)."""

    def __init__(self, where, name, array, key=None, layer=None):
        super().__init__("%s: %s contains NaN or Inf" % (where, name))
        self.name, self.array, self.key, self.layer = name, array, key, layer


def _to_host(values):
    """0-d results computed where their arrays live (np.isfinite(a).all(), a.min(), ...) -> host values; the
    ones on a GPU (CuPy arrays: .get) come back in one transfer, so one synchronisation however many."""
    out = list(values)
    on_gpu = [i for i, v in enumerate(values) if hasattr(v, "get")]
    if on_gpu:
        cupy = sys.modules[type(values[on_gpu[0]]).__module__.split(".")[0]]
        for i, v in zip(on_gpu, cupy.stack([values[i] for i in on_gpu]).get()):
            out[i] = v
    return out


def first_nonfinite(named):
    """The first (tag, array) of `named`, pairs (tag, array or None), whose array holds NaN or Inf; None when
    every one is finite. One pass over each array (np.isfinite answers CuPy arrays too, on the GPU)."""
    named = [(tag, a) for tag, a in named if a is not None]
    for (tag, a), ok in zip(named, _to_host([np.isfinite(a).all() for _, a in named])):
        if not bool(ok):
            return tag, a
    return None


def nonfinite_kind(a):
    """'NaN' when `a` holds a NaN, else 'Inf' (call it on an array that `first_nonfinite` named)."""
    return "NaN" if bool(np.isnan(a).any()) else "Inf"


def named_params(params):
    """((key, l), params[key][l]) for every parameter array, in the order W, b, E and by layer."""
    return [((key, l), a) for key in ("W", "b", "E") for l, a in enumerate(params.get(key) or []) if a is not None]


def _check_finite(named, where):
    """Raise NonFiniteError for the first array of `named` ((key, l) or a name, array) holding NaN or Inf."""
    bad = first_nonfinite(named)
    if bad is not None:
        tag, a = bad
        if isinstance(tag, tuple):
            raise NonFiniteError(where, "params[%r][%d]" % tag, a, *tag)
        raise NonFiniteError(where, tag, a)


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


def check_params(params, cfg, where="settle", dtypes=None, finite=True):
    """Check a params dict {"W": [None, W^1..W^L], "b": [None, b^1..b^L], "E": None or [...]} against cfg:
    keys, layers, shapes, one dtype (in `dtypes` when given, else any float dtype) and, unless finite=False,
    no NaN or Inf. Returns the dtype of the parameters (all must share it)."""
    dtype = _check_param_structure(params, cfg, where, dtypes)
    if finite:
        _check_finite(named_params(params), where)
    return dtype


def _check_param_structure(params, cfg, where, dtypes):
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
    return dtype


def check_settle_inputs(params, x, cfg, z_top, dtypes=None, where="settle", finite=True):
    """Check settle's arguments against cfg; returns their common dtype.

    x: (B, C_0, H_0, W_0) with B >= 1; z_top: (B, C_L, H_L, W_L); params as check_params; every array
    of one dtype (in `dtypes` when given, else any float dtype) and, unless finite=False (the caller then
    calls check_finite_inputs itself), finite: first every shape and dtype, then the values of all of them."""
    dtype = _check_param_structure(params, cfg, where, dtypes)
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
    if finite:
        check_finite_inputs(params, x, z_top, where)
    return dtype


def check_finite_inputs(params, x, z_top, where="settle"):
    """No NaN or Inf in the parameters, x or z_top (NonFiniteError naming the first): one pass over each
    array, one synchronisation on a GPU."""
    _check_finite(named_params(params) + [("x", x), ("z_top", z_top)], where)


def check_clamp(clamp, where="settle"):
    """clamp: "always" (z^0 = x throughout) or "first" (z^0 = x at t = 1 only, denoising)."""
    if clamp not in ("always", "first"):
        raise ValueError("%s: clamp must be 'always' or 'first', got %r" % (where, clamp))
    return clamp


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


def check_momentum(momentum, clamp="always", where="settle"):
    """momentum, the heavy-ball weight of a settle (ngc_ref.model.heavy_ball): a number in [0, 1) (0: Algorithm 1's
    plain steps). Only for a clamped settle: a free z^0 (clamp "first") keeps Algorithm 1's steps."""
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not (0 <= float(momentum) < 1):
        raise ValueError("%s: momentum must be a number in [0, 1) (0 = Algorithm 1's plain steps), got %r"
                         % (where, momentum))
    if momentum and clamp != "always":
        raise ValueError("%s: momentum is for clamped settles (clamp 'always', the precision reading of denoising); "
                         "clamp %r settles with plain steps" % (where, clamp))
    return float(momentum)


# ---- the library's image batches (convngc.model) ---------------------------------------------------------
def check_image_batch(x, cfg, what="x"):
    """An image batch for ConvNGC: a float array (B, C_0, H, W) matching the config, finite, pixels in [0, 1]
    (a noisy input a little outside). Returns (x, lo, hi): x as an array, its smallest and largest value (one
    min and one max answer NaN/Inf and the range both)."""
    x = np.asarray(x) if not hasattr(x, "__cuda_array_interface__") else x
    if x.ndim != 4:
        raise ValueError("%s: expected a 4-D batch (B, C, H, W), got shape %s" % (what, tuple(x.shape)))
    C0 = cfg.layer_channels[0]
    if x.shape[1] != C0:
        hint = " (is it NHWC? convngc.data.to_model converts uint8 NHWC images)" if x.shape[-1] == C0 else ""
        raise ValueError("%s: expected %d channels in axis 1, got shape %s%s" % (what, C0, tuple(x.shape), hint))
    if tuple(x.shape[2:]) != cfg.image_hw:
        raise ValueError("%s: expected images of %dx%d (config image_hw), got %dx%d"
                         % ((what,) + cfg.image_hw + tuple(x.shape[2:])))
    if x.dtype.kind != "f":
        raise TypeError("%s: expected floating-point pixels in [0, 1], got dtype %s (convert uint8 images "
                        "with convngc.data.to_model)" % (what, x.dtype))
    if not x.size:
        return x, 0.0, 0.0
    lo, hi = (float(v) for v in _to_host([x.min(), x.max()]))     # NaN anywhere makes both NaN
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("%s: contains NaN or Inf" % what)
    # [0, 1] images; a denoising input x + N(0, 0.1) strays a little outside, never past [-1, 2] (10 sigma)
    if lo < -1.0 or hi > 2.0:
        hint = " (0-255 scale? divide by 255, or convert uint8 images with convngc.data.to_model)" if hi > 2 else ""
        raise ValueError("%s: pixel values must lie in [0, 1] (a noisy input a little outside), got range "
                         "[%.4g, %.4g]%s" % (what, lo, hi, hint))
    return x, lo, hi
