"""What CuPy's RawKernel does not check, checked before every launch (it ignores strides and takes a
Python int as long long): float32 only (TypeError; a float64 array is NOT cast silently, since the
reference would then be float64 and the kernel float32), arrays of the call's backend, C-contiguous
copies where needed, and shapes and channel counts as ngc_ref checks them (ValueError).
"""
import numpy as np

from ngc_ref.ops import conv_out_size

from .backend import array_module, belongs

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


def filters(op, x, w, ok, msg):
    """ngc_ref.ops' checks: 4-D arrays, square filters, agreeing channels (ValueError otherwise)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("%s: expected 4-D arrays (B, C, H, W) and (C_out, C_in, K, K), got %s and %s"
                         % (op, tuple(x.shape), tuple(w.shape)))
    if w.shape[2] != w.shape[3]:
        raise ValueError("%s: filters must be square, got %s" % (op, tuple(w.shape),))
    if not ok:
        raise ValueError(msg)


def out_hw(op, H, W, s, hw):
    """The size of the layer below a (H, W) map at stride s: s*H x s*W unless `hw` names it; it must map back."""
    Hm, Wm = (int(v) for v in hw) if hw is not None else (H * s, W * s)
    if conv_out_size(Hm, s) != H or conv_out_size(Wm, s) != W:
        raise ValueError("%s: output %dx%d does not map back to input %dx%d at stride %d "
                         "(SAME needs ceil(out/s) == in)" % (op, Hm, Wm, H, W, s))
    return Hm, Wm


def layer(op, z_l, W, b, below_hw, s):
    """Shapes of one layer pair: z_l (B, C_l, H, W), W (C_l, C_{l-1}, K, K), b (C_{l-1},) -> (H_{l-1}, W_{l-1})."""
    filters(op, z_l, W, z_l.shape[1] == W.shape[0], "%s: z has %d channels, W expects %d" % (op, z_l.shape[1], W.shape[0]))
    if b is not None and tuple(b.shape) != (W.shape[1],):
        raise ValueError("%s: bias has shape %s, W predicts %d maps" % (op, tuple(b.shape), W.shape[1]))
    return out_hw(op, z_l.shape[2], z_l.shape[3], s, below_hw)


def settle_inputs(op, backend, params, x, cfg, z_top, T, clamp):
    """Everything either settling path relies on: arrays of the backend, float32, shaped as the config
    says; clamp and T. Returns T (cfg.T when None)."""
    if clamp not in ("always", "first"):
        raise ValueError("%s: clamp must be 'always' or 'first', got %r" % (op, clamp))
    T = cfg.T if T is None else int(T)
    if T < 0:
        raise ValueError("%s: T must be >= 0, got %d" % (op, T))
    L, C, K = cfg.L, cfg.layer_channels, cfg.kernel
    if len(params["W"]) != L + 1 or len(params["b"]) != L + 1:
        raise ValueError("%s: params hold %d layers of filters, the config has L = %d" % (op, len(params["W"]) - 1, L))
    if x.ndim != 4 or tuple(x.shape[1:]) != (C[0],) + tuple(cfg.map_hw(0)):
        raise ValueError("%s: x has shape %s, the config needs (B, %d, %d, %d)"
                         % ((op, tuple(x.shape), C[0]) + tuple(cfg.map_hw(0))))
    want = {"z_top": (x.shape[0], C[L]) + tuple(cfg.map_hw(L))}
    arrays = {"x": x, "z_top": z_top}
    for key in ("W", "b", "E"):
        if params.get(key) is None:
            continue
        for l in range(1, L + 1):
            arrays["%s[%d]" % (key, l)] = params[key][l]
            want["%s[%d]" % (key, l)] = (C[l - 1],) if key == "b" else (C[l], C[l - 1], K, K)
    for name, a in arrays.items():
        _array(op, name, a, backend)
        if name in want and tuple(a.shape) != want[name]:
            raise ValueError("%s: %s has shape %s, the config needs %s" % (op, name, tuple(a.shape), want[name]))
    return T
