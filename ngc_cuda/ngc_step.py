"""The per-step path of Algorithm 1: kernels/ngc_step.cu, one synchronous settling step fused per layer.

    predict(z_l, W_l, b, cfg, out_hw)        ngc_predict_v1        == ngc_ref.model.predict (Eq. 1)
    predict_error(z_l, W_l, b, z_below, cfg) ngc_predict_error_v1  Eq. 1 + the errors of one layer pair
    correct_(z_l, e_own, e_below, E_l, cfg)  ngc_correct_v1        Eq. 2 for one layer, in place
    energy(e)                                ngc_energy_v1         == ngc_ref.model.energy (Eq. 3)

and, over every layer as ngc_ref.model has them, predictions_and_errors, correct and init_states, from
which `settle` runs T steps exactly as ngc_ref.model.settle does: every prediction and error from the
current states first, then every correction (in place: a layer's correction reads its own states and the
errors, never another layer's states), then the energy. ngc_cuda.model publishes these names.

This module sits below the entry: `backend` ("cuda" or "cuda-emu") is a required keyword, decided by the
caller (ngc_cuda.model decides it from its arguments, once). Arrays are float32 of that backend's type
(NumPy -> emulated kernels, CuPy -> GPU). In shapes, m stands for the layer below, l - 1: (Cm, Hm, Wm).
"""
from ngc_ref.model import SettleResult
from ngc_ref.ops import conv_out_size

from . import checks
from .launch import BLOCK, REDUCE_THREADS, empty, f32, grid, i32, launch, unused, zeros

__all__ = ["predict", "predict_error", "correct_", "energy", "predictions_and_errors", "correct", "init_states",
           "settle"]


# ---- one layer: the kernels ------------------------------------------------------------------------
def predict(z_l, W_l, b, cfg, out_hw, *, backend):
    """Eq. 1: zbar^{l-1} = g(W^l ⊙_s phi(z^l) + b^l), g = identity (== ngc_ref.model.predict); ngc_predict_v1.
    b: b^l, one scalar per map (C_{l-1},) or a bias map (C_{l-1}, H_{l-1}, W_{l-1}) (cfg.bias = "pixel")."""
    s = checks.stride("predict", cfg.stride)
    Hm, Wm = checks.layer("predict", z_l, W_l, b, out_hw, s)
    z_l, W_l, b = checks.inputs("predict", backend, z=z_l, W=W_l, b=b)
    B, Cl, H, Wd = z_l.shape
    Cm, K = W_l.shape[1], W_l.shape[-1]
    zbar = empty(backend, (B, Cm, Hm, Wm))
    if zbar.size:
        launch(backend, "ngc_step", "ngc_predict_v1", grid(zbar.size), BLOCK,
               (z_l, W_l, b, zbar, i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm),
                i32(K), i32(s), f32(cfg.leak), i32(b.ndim == 3)))
    return zbar


def predict_error(z_l, W_l, b, z_below, cfg, zbar=None, e=None, write_zbar=True, *, backend):
    """Eq. 1 and the error units of one layer pair in one pass (ngc_predict_error_v1):
    zbar^{l-1} = W^l ⊙_s phi(z^l) + b^l,  e^{l-1} = z^{l-1} - zbar^{l-1}. -> (zbar, e); b as in predict.

    zbar/e: optional float32 C-contiguous outputs (the settling loop reuses them).
    write_zbar=False stores only e (inside the settling loop; zbar is left untouched).
    """
    s = checks.stride("predict_error", cfg.stride)
    if z_below.ndim != 4:
        raise ValueError("predict_error: z_below must be (B, C, H, W), got %s" % (tuple(z_below.shape),))
    Hm, Wm = checks.layer("predict_error", z_l, W_l, b, z_below.shape[2:], s)
    B, Cl, H, Wd = z_l.shape
    Cm, K = W_l.shape[1], W_l.shape[-1]
    if tuple(z_below.shape) != (B, Cm, Hm, Wm):
        raise ValueError("predict_error: z_below has shape %s, W and z predict %s"
                         % (tuple(z_below.shape), (B, Cm, Hm, Wm)))
    z_l, W_l, b, z_below = checks.inputs("predict_error", backend, z=z_l, W=W_l, b=b, z_below=z_below)
    zbar = empty(backend, z_below.shape) if zbar is None else checks.output("predict_error", backend, zbar, z_below.shape, "zbar")
    e = empty(backend, z_below.shape) if e is None else checks.output("predict_error", backend, e, z_below.shape, "e")
    if zbar.size:
        launch(backend, "ngc_step", "ngc_predict_error_v1", grid(zbar.size), BLOCK,
               (z_l, W_l, b, z_below, zbar, e, i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm),
                i32(K), i32(s), f32(cfg.leak), i32(b.ndim == 3), i32(1 if write_zbar else 0)))
    return zbar, e


def correct_(z_l, e_own, e_below, E_l, cfg, *, backend):
    """Eq. 2 for one layer, IN PLACE on z_l (ngc_correct_v1):
        d = -e_own + E_l *_s e_below   [times phi'(z_l) when cfg.pcn];   z_l <- z_l + beta d - gamma z_l.
    e_own=None: the top layer (e^L = 0). e_below=None (and E_l=None): a free bottom layer (d^0 = -e^0),
    whose update has no leak when cfg.gamma_bottom is False (z^0 <- z^0 + beta d^0).
    z_l must be a C-contiguous float32 array of the backend (it is written). Returns z_l.
    """
    s = checks.stride("correct_", cfg.stride)
    if z_l.ndim != 4:
        raise ValueError("correct_: z must be (B, C, H, W), got %s" % (tuple(z_l.shape),))
    checks.output("correct_", backend, z_l, z_l.shape, "z")
    B, Cl, H, Wd = z_l.shape
    has_own, has_below = e_own is not None, e_below is not None
    if has_own:
        if tuple(e_own.shape) != tuple(z_l.shape):
            raise ValueError("correct_: e_own has shape %s, z has %s" % (tuple(e_own.shape), tuple(z_l.shape)))
        e_own, = checks.inputs("correct_", backend, e_own=e_own)
    if has_below:
        if E_l is None:
            raise ValueError("correct_: e_below given without the error filters E")
        checks.filters("correct_", e_below, E_l, e_below.shape[1] == E_l.shape[1] and E_l.shape[0] == Cl,
                       "correct_: e_below has %d channels and z %d, E is %s" % (e_below.shape[1], Cl, tuple(E_l.shape)))
        Cm, Hm, Wm = e_below.shape[1:]
        if e_below.shape[0] != B or (conv_out_size(Hm, s), conv_out_size(Wm, s)) != (H, Wd):
            raise ValueError("correct_: e_below of shape %s does not map onto z of shape %s at stride %d"
                             % (tuple(e_below.shape), tuple(z_l.shape), s))
        e_below, E_l = checks.inputs("correct_", backend, e_below=e_below, E=E_l)
        K = E_l.shape[-1]
    else:
        Cm, Hm, Wm, K = 0, 0, 0, 1
    if z_l.size:
        nothing = unused(backend)                 # stands for the arrays a 0 flag tells the kernel not to read
        launch(backend, "ngc_step", "ngc_correct_v1", grid(z_l.size), BLOCK,
               (z_l, e_own if has_own else nothing, e_below if has_below else nothing, E_l if has_below else nothing,
                i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm), i32(K), i32(s), f32(cfg.beta),
                f32(cfg.gamma), f32(cfg.leak), i32(has_own), i32(has_below), i32(bool(cfg.pcn)),
                i32(not has_below and not cfg.gamma_bottom)))
    return z_l


def energy(e, out=None, *, backend):
    """Eq. 3 as a positive energy per image, F = 1/2 sum_l ||e^l||^2 (== ngc_ref.model.energy) -> (B,).

    One ngc_energy_v1 launch per layer, in order, each adding its term: deterministic. None entries are
    skipped. out: optional (B,) C-contiguous float32 array to write into (a row of the energy trace).
    """
    e = [a for a in e if a is not None]
    B = e[0].shape[0]
    out = empty(backend, (B,)) if out is None else checks.output("energy", backend, out, (B,), "out")
    first = True
    for el in e:
        if el.shape[0] != B:
            raise ValueError("energy: error arrays disagree on the batch size (%d vs %d)" % (el.shape[0], B))
        el, = checks.inputs("energy", backend, e=el)
        n = el.size // B if B else 0
        if n == 0:
            continue
        launch(backend, "ngc_step", "ngc_energy_v1", B, REDUCE_THREADS, (el, out, i32(n), i32(0 if first else 1)))
        first = False
    if first:
        out[...] = 0
    return out


# ---- every layer, as ngc_ref.model ---------------------------------------------------------------
def _E(params):
    """Error filters: the learnable E when given, else W itself (E = W^T, the paper's setting)."""
    return params["E"] if params.get("E") is not None else params["W"]


def predictions_and_errors(z, params, cfg, zbar=None, e=None, write_zbar=True, *, backend):
    """Eq. 1 for every layer from the same states, and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0.
    zbar (L arrays) and e (L + 1, e[L] zeros): optional outputs, written in place (the settling loop)."""
    L = cfg.L
    zbar = [None] * L if zbar is None else zbar
    e = [None] * L + [zeros(backend, z[L].shape)] if e is None else e
    for l in range(1, L + 1):
        zbar[l - 1], e[l - 1] = predict_error(z[l], params["W"][l], params["b"][l], z[l - 1], cfg, zbar[l - 1],
                                              e[l - 1], write_zbar, backend=backend)
    return zbar, e


def correct(z, e, params, cfg, free_bottom=False, in_place=False, *, backend):
    """Eq. 2 for every free layer at once, from the errors e of the states z:
        d^l = -e^l + sum_j E_ji^l *_s e_j^{l-1}   (times phi'(z^l) in PCN mode);  z^l <- z^l + beta d^l - gamma z^l
    z^0 is clamped unless free_bottom (d^0 = -e^0; the leak on z^0 only if cfg.gamma_bottom). Returns new
    states, or z itself updated when in_place."""
    E = _E(params)
    new = z if in_place else list(z)
    for l in range(0 if free_bottom else 1, cfg.L + 1):
        if not in_place:
            new[l] = z[l].copy(order="C")
        correct_(new[l], e[l] if l < cfg.L else None, e[l - 1] if l > 0 else None, E[l] if l > 0 else None, cfg,
                 backend=backend)
    return new


def init_states(x, params, cfg, z_top, *, backend):
    """Algorithm 1 lines 3-10: z^L = z_top, the ancestral pass z^l = zbar^l for l = L-1..1, z^0 = x.
    The states are fresh C-contiguous copies of float32 x and z_top (settling updates them in place)."""
    L = cfg.L
    z = [None] * (L + 1)
    z[0], z[L] = x.copy(order="C"), z_top.copy(order="C")
    for l in range(L - 1, 0, -1):
        z[l] = predict(z[l + 1], params["W"][l + 1], params["b"][l + 1], cfg, cfg.map_hw(l), backend=backend)
    return z


def settle(params, x, cfg, z_top, T, clamp="always", *, backend):
    """Algorithm 1 on the per-step kernels (== ngc_ref.model.settle): the ancestral initialisation, then T
    synchronous steps, each one predictions_and_errors, energy, correct; any configuration fits.
    The inputs are as ngc_cuda.model.settle checked them (checks.settle_inputs), T an int.
    Returns an ngc_ref.model.SettleResult of float32 arrays of x's type."""
    L = cfg.L
    z = init_states(x, params, cfg, z_top, backend=backend)
    zbar = [empty(backend, z[l].shape) for l in range(L)]
    e = [empty(backend, z[l].shape) for l in range(L)] + [zeros(backend, z[L].shape)]
    trace = empty(backend, (T + 1, x.shape[0]))     # row t (a contiguous view) is written by the energy kernel
    for t in range(T):
        predictions_and_errors(z, params, cfg, zbar, e, write_zbar=False, backend=backend)   # zbar: only at the end
        energy(e[:L], out=trace[t], backend=backend)
        correct(z, e, params, cfg, free_bottom=(clamp == "first"), in_place=True, backend=backend)
    predictions_and_errors(z, params, cfg, zbar, e, backend=backend)
    energy(e[:L], out=trace[T], backend=backend)
    return SettleResult(z, zbar, e, trace)
