"""What the kernels need and CuPy's RawKernel does not check (it ignores strides and takes a Python int as
long long), checked at the entry of each public ngc_cuda function, once per call: float32 only (TypeError;
a float64 array is NOT cast silently, since the reference would then be float64 and the kernel float32),
arrays of the call's device, C-contiguous copies where needed, and shapes and channel counts as ngc_ref
checks them (ValueError, from ngc_ref.checks where the rule is the reference's). What settle accepts is
ngc_ref.checks' check of every backend (settle_inputs).

Below the entry nothing is checked again: ngc_step.py, settle_whole.py and the launches of ops.py and
optim.py trust what their entry checked, so a settle of T steps runs its checks once, not on each of its
~T(2L+1) launches.
"""
import numpy as np

from ngc_ref import checks as ref_checks
from ngc_ref.model import error_filters
from ngc_ref.ops import conv_out_size

from .backend import resolve

__all__ = ["inputs", "output", "param", "stride", "kernel_size", "layer", "predict", "predictions_and_errors",
           "correct", "energy", "weight_grad", "filter_updates", "settle_inputs", "step_inputs"]


# ---- one array, one argument ----------------------------------------------------------------------------
def _own(op, name, a, dev):
    """An array of the device's kind: a NumPy array among CuPy ones would reach a kernel as a host pointer."""
    if not dev.owns(a):
        raise TypeError("%s: %s must be a %s array for backend %r, got %s"
                        % (op, name, "CuPy" if dev.name == "cuda" else "NumPy", dev.name, type(a).__module__))


def _array(op, name, a, dev):
    _own(op, name, a, dev)
    if a.dtype != np.float32:
        raise TypeError("%s: %s must be float32 (the kernels compute in float32 only), got %s; convert "
                        "with .astype(np.float32)" % (op, name, a.dtype))


def inputs(op, dev, **arrays):
    """Arrays a kernel reads: float32 arrays of the device, returned C-contiguous, in the order given."""
    out = []
    for name, a in arrays.items():
        _array(op, name, a, dev)
        out.append(dev.xp.ascontiguousarray(a))
    return out


def output(op, dev, a, shape, name="output array"):
    """An array a kernel writes: it must already be float32, C-contiguous and of the right shape."""
    _array(op, name, a, dev)
    if tuple(a.shape) != tuple(shape) or not a.flags.c_contiguous:
        raise ValueError("%s: %s must be C-contiguous of shape %s, got shape %s (contiguous: %s)"
                         % (op, name, tuple(shape), tuple(a.shape), bool(a.flags.c_contiguous)))
    return a


def param(op, p, dev):
    """A parameter array a kernel updates in place: float32, C-contiguous (copied once if not)."""
    if p.dtype != np.float32:
        raise TypeError("%s: parameters must be float32, got %s" % (op, p.dtype))
    return p if p.flags.c_contiguous else dev.xp.ascontiguousarray(p)


def _int(op, what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError("%s: %s must be an int >= 1, got %r" % (op, what, v))
    return int(v)


def stride(op, s):
    return _int(op, "stride", s)


def kernel_size(op, K):
    return _int(op, "K", K)


def layer(op, z_l, W, b, below_hw, s):
    """Shapes of one layer pair: z_l (B, C_l, H, W), W (C_l, C_{l-1}, K, K), b^l (C_{l-1},) or a bias map
    (C_{l-1}, H_{l-1}, W_{l-1}) -> (H_{l-1}, W_{l-1})."""
    ref_checks.check_filters(op, z_l, W, z_l.shape[1] == W.shape[0],
                             "%s: z has %d channels, W expects %d" % (op, z_l.shape[1], W.shape[0]))
    hw = ref_checks.check_out_hw(op, z_l.shape[2], z_l.shape[3], s, below_hw)
    if b is not None and tuple(b.shape) not in ((W.shape[1],), (W.shape[1],) + hw):
        raise ValueError("%s: bias has shape %s; W predicts %d maps of %dx%d, so it must be (%d,) or a bias map %s"
                         % ((op, tuple(b.shape), W.shape[1]) + hw + (W.shape[1], (W.shape[1],) + hw)))
    return hw


# ---- the per-step model functions (model.py's entries; ngc_step.py trusts them) -----------------------
def predict(op, z_l, W_l, b, cfg, out_hw, dev):
    """Eq. 1 for one layer pair -> (z_l, W_l, b, (H_{l-1}, W_{l-1})), the arrays C-contiguous."""
    hw = layer(op, z_l, W_l, b, out_hw, cfg.stride)
    return inputs(op, dev, z=z_l, W=W_l, b=b) + [hw]


def _predict_error(op, z_l, W_l, b, z_below, cfg, dev):
    if z_below.ndim != 4:
        raise ValueError("%s: z_below must be (B, C, H, W), got %s" % (op, tuple(z_below.shape),))
    Hm, Wm = layer(op, z_l, W_l, b, z_below.shape[2:], cfg.stride)
    want = (z_l.shape[0], W_l.shape[1], Hm, Wm)
    if tuple(z_below.shape) != want:
        raise ValueError("%s: z_below has shape %s, W and z predict %s" % (op, tuple(z_below.shape), want))
    return inputs(op, dev, z=z_l, W=W_l, b=b, z_below=z_below)


def predictions_and_errors(z, params, cfg, dev):
    """Eq. 1 and the errors for every layer pair (as ngc_step.predict_error names them) -> (z, params) of
    C-contiguous float32 arrays of the device (new lists; the arrays themselves where they already were)."""
    z, W, b = list(z), list(params["W"]), list(params["b"])
    for l in range(1, cfg.L + 1):
        z[l], W[l], b[l], z[l - 1] = _predict_error("predict_error", z[l], W[l], b[l], z[l - 1], cfg, dev)
    return z, {"W": W, "b": b}


def _correct(op, z_l, e_own, e_below, E_l, cfg, dev):
    s = cfg.stride
    if z_l.ndim != 4:
        raise ValueError("%s: z must be (B, C, H, W), got %s" % (op, tuple(z_l.shape)))
    _array(op, "z", z_l, dev)
    B, Cl, H, Wd = z_l.shape
    if e_own is not None:
        if tuple(e_own.shape) != tuple(z_l.shape):
            raise ValueError("%s: e_own has shape %s, z has %s" % (op, tuple(e_own.shape), tuple(z_l.shape)))
        e_own, = inputs(op, dev, e_own=e_own)
    if e_below is not None:
        if E_l is None:
            raise ValueError("%s: e_below given without the error filters E" % op)
        ref_checks.check_filters(op, e_below, E_l, e_below.shape[1] == E_l.shape[1] and E_l.shape[0] == Cl,
                                 "%s: e_below has %d channels and z %d, E is %s"
                                 % (op, e_below.shape[1], Cl, tuple(E_l.shape)))
        Hm, Wm = e_below.shape[2:]
        if e_below.shape[0] != B or (conv_out_size(Hm, s), conv_out_size(Wm, s)) != (H, Wd):
            raise ValueError("%s: e_below of shape %s does not map onto z of shape %s at stride %d"
                             % (op, tuple(e_below.shape), tuple(z_l.shape), s))
        e_below, E_l = inputs(op, dev, e_below=e_below, E=E_l)
    return e_own, e_below, E_l


def correct(z, e, params, cfg, free_bottom, dev):
    """Eq. 2 for every free layer (as ngc_step.correct_ names them) -> (e, E): the errors and the error filters
    (error_filters(params)) as C-contiguous float32 arrays of the device, in new lists."""
    e, E = list(e), list(error_filters(params))
    for l in range(0 if free_bottom else 1, cfg.L + 1):
        e_own, e_below, E_l = _correct("correct_", z[l], e[l] if l < cfg.L else None, e[l - 1] if l > 0 else None,
                                       E[l] if l > 0 else None, cfg, dev)
        if l < cfg.L:
            e[l] = e_own
        if l > 0:
            e[l - 1], E[l] = e_below, E_l
    return e, E


def energy(e, dev, op="energy"):
    """Error arrays of one batch (None entries dropped) -> a list of C-contiguous float32 arrays of the device."""
    e = [a for a in e if a is not None]
    B = e[0].shape[0]
    for el in e:
        if el.shape[0] != B:
            raise ValueError("%s: error arrays disagree on the batch size (%d vs %d)" % (op, el.shape[0], B))
    return [inputs(op, dev, e=el)[0] for el in e]


# ---- the filter updates (ops.py's entries, model.filter_updates) ---------------------------------------
def weight_grad(op, e, a, K, s, dev):
    """A weight gradient's error e (B, C_{l-1}, Ho, Wo) and activity a (B, C_l, ceil(Ho/s), ceil(Wo/s)) ->
    (e, a, K, s), the arrays C-contiguous. Stricter than the reference: a's size must be exactly ceil(e's / s)."""
    s, K = stride(op, s), kernel_size(op, K)
    ref_checks.check_weight_grad(op, e, a, s)
    return inputs(op, dev, e=e, a=a) + [K, s]


def filter_updates(res, cfg, dev, op="conv2d_weight_grad_phi"):
    """The final states and errors of a settle -> [(e^{l-1}, z^l) for l = 1..L], as weight_grad checks each."""
    return [tuple(weight_grad(op, res.e[l - 1], res.z[l], cfg.kernel, cfg.stride, dev)[:2])
            for l in range(1, cfg.L + 1)]


# ---- settling (model.settle and init_states) ---------------------------------------------------------
def settle_inputs(op, params, x, cfg, z_top, T=None, clamp="always", backend=None):
    """What either settling path relies on, checked once at the entry, in this order:
      1. as every backend checks it (ngc_ref.checks: the same error for the same bad input on numpy, cpu
         and cuda): clamp, the params dict and every shape the config needs, a batch of >= 1 image,
         float32 throughout, T;
      2. the call's device (`backend`, or the arrays' kind) and every array of that kind;
      3. finite values (ngc_ref.checks: one pass over each array, on a GPU one synchronisation for all).
    Returns (T, device, params): T is cfg.T when None; params with every array C-contiguous."""
    ref_checks.check_clamp(clamp, op)
    ref_checks.check_settle_inputs(params, x, cfg, z_top, dtypes=(np.float32,), where=op, finite=False)
    T = cfg.T if T is None else ref_checks.check_steps(T, op)
    dev = resolve(backend, x, z_top)
    named = [("x", x), ("z_top", z_top)] + [("params[%r][%d]" % t, a) for t, a in ref_checks.named_params(params)]
    for name, a in named:
        _own(op, name, a, dev)
    ref_checks.check_finite_inputs(params, x, z_top, op)
    contiguous = {k: [None if a is None else dev.xp.ascontiguousarray(a) for a in params[k]]
                  for k in ("W", "b", "E") if params.get(k) is not None}
    return T, dev, dict(params, **contiguous)


# ---- the optimiser (optim.step) ----------------------------------------------------------------------------
def step_inputs(params, deltas, opt_state, cfg, dev):
    """Every array of one optimiser step, as the per-array rules check theirs (named by the rule: "adam" or
    "normalized", "project_kernels"): parameters float32 (a non-contiguous one is replaced by a contiguous copy
    IN params, as the update is in place), displacements float32 arrays of the device (-> contiguous copies, in a
    new dict), Adam's moments float32, C-contiguous, of the parameter's shape; filters 4-D with square kernels.
    Returns the displacements."""
    rule = "adam" if cfg.optimizer == "adam" else "normalized"
    checked = {}
    for key in ("W", "b", "E"):
        if params.get(key) is None:
            continue
        checked[key] = list(deltas[key])
        for l in range(1, len(params[key])):
            p = params[key][l] = param(rule, params[key][l], dev)
            checked[key][l], = inputs(rule, dev, d=deltas[key][l])
            if rule == "adam":
                output(rule, dev, opt_state["m"][key][l], p.shape, "m")
                output(rule, dev, opt_state["v"][key][l], p.shape, "v")
            if key != "b" and (p.ndim != 4 or p.shape[2] != p.shape[3]):
                raise ValueError("project_kernels: w must be (C_l, C_{l-1}, K, K), got %s" % (tuple(p.shape),))
    return dict(deltas, **checked)
