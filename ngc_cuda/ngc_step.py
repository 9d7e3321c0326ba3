"""The per-step path of Algorithm 1: kernels/ngc_step.cu, one synchronous settling step fused per layer.

    predict(z_l, W_l, b, cfg, out_hw)        ngc_predict_v1        == ngc_ref.model.predict (Eq. 1)
    predict_error(z_l, W_l, b, z_below, cfg) ngc_predict_error_v1  Eq. 1 + the errors of one layer pair
    correct_(z_l, e_own, e_below, E_l, cfg)  ngc_correct_v1        Eq. 2 for one layer, in place
    energy(e)                                ngc_energy_v1         == ngc_ref.model.energy (Eq. 3)

and, over every layer as ngc_ref.model has them, predictions_and_errors, correct and init_states, from
which `settle` runs T steps exactly as ngc_ref.model.settle does: every prediction and error from the
current states first, then every correction (in place: a layer's correction reads its own states and the
errors, never another layer's states), then the energy. ngc_cuda.model publishes these names.

This module sits below the entry: `device` (a backend.Device) is a required keyword, and the arguments are
what the entry checked (ngc_cuda.model with checks.py: shapes, float32 C-contiguous arrays of the device),
so nothing here checks them again and every function only allocates and launches. In shapes, m stands for
the layer below, l - 1: (Cm, Hm, Wm).
"""
from ngc_ref.model import SettleResult, error_filters

from .launch import BLOCK, REDUCE_THREADS, f32, grid, i32

__all__ = ["predict", "predict_error", "correct_", "energy", "predictions_and_errors", "correct", "init_states",
           "settle"]


# ---- one layer: the kernels ------------------------------------------------------------------------
def predict(z_l, W_l, b, cfg, out_hw, *, device):
    """Eq. 1: zbar^{l-1} = g(W^l ⊙_s phi(z^l) + b^l), g = identity (== ngc_ref.model.predict); ngc_predict_v1.
    b: b^l, one scalar per map (C_{l-1},) or a bias map (C_{l-1}, H_{l-1}, W_{l-1}) (cfg.bias = "pixel");
    out_hw: (H_{l-1}, W_{l-1})."""
    B, Cl, H, Wd = z_l.shape
    Cm, K = W_l.shape[1], W_l.shape[-1]
    Hm, Wm = out_hw
    zbar = device.empty((B, Cm, Hm, Wm))
    if zbar.size:
        device.launch("ngc_step", "ngc_predict_v1", grid(zbar.size), BLOCK,
                      (z_l, W_l, b, zbar, i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm),
                       i32(K), i32(cfg.stride), f32(cfg.leak), i32(b.ndim == 3)))
    return zbar


def predict_error(z_l, W_l, b, z_below, cfg, zbar=None, e=None, write_zbar=True, *, device):
    """Eq. 1 and the error units of one layer pair in one pass (ngc_predict_error_v1):
    zbar^{l-1} = W^l ⊙_s phi(z^l) + b^l,  e^{l-1} = z^{l-1} - zbar^{l-1}. -> (zbar, e); b as in predict.

    zbar/e: optional float32 C-contiguous outputs of z_below's shape (the settling loop reuses them).
    write_zbar=False stores only e (inside the settling loop; zbar is left untouched).
    """
    B, Cl, H, Wd = z_l.shape
    Cm, Hm, Wm = z_below.shape[1:]
    K = W_l.shape[-1]
    zbar = device.empty(z_below.shape) if zbar is None else zbar
    e = device.empty(z_below.shape) if e is None else e
    if zbar.size:
        device.launch("ngc_step", "ngc_predict_error_v1", grid(zbar.size), BLOCK,
                      (z_l, W_l, b, z_below, zbar, e, i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm),
                       i32(K), i32(cfg.stride), f32(cfg.leak), i32(b.ndim == 3), i32(1 if write_zbar else 0)))
    return zbar, e


def correct_(z_l, e_own, e_below, E_l, cfg, *, device):
    """Eq. 2 for one layer, IN PLACE on z_l (ngc_correct_v1):
        d = -e_own + E_l *_s e_below   [times phi'(z_l) when cfg.pcn];   z_l <- z_l + beta d - gamma z_l.
    e_own=None: the top layer (e^L = 0). e_below=None (and E_l=None): a free bottom layer (d^0 = -e^0),
    whose update has no leak when cfg.gamma_bottom is False (z^0 <- z^0 + beta d^0).
    z_l is a C-contiguous float32 array of the device (it is written). Returns z_l.
    """
    B, Cl, H, Wd = z_l.shape
    has_own, has_below = e_own is not None, e_below is not None
    Cm, Hm, Wm = e_below.shape[1:] if has_below else (0, 0, 0)
    K = E_l.shape[-1] if has_below else 1
    if z_l.size:
        nothing = device.unused                   # stands for the arrays a 0 flag tells the kernel not to read
        device.launch("ngc_step", "ngc_correct_v1", grid(z_l.size), BLOCK,
                      (z_l, e_own if has_own else nothing, e_below if has_below else nothing,
                       E_l if has_below else nothing, i32(B), i32(Cl), i32(H), i32(Wd), i32(Cm), i32(Hm), i32(Wm),
                       i32(K), i32(cfg.stride), f32(cfg.beta), f32(cfg.gamma), f32(cfg.leak), i32(has_own),
                       i32(has_below), i32(bool(cfg.pcn)), i32(not has_below and not cfg.gamma_bottom)))
    return z_l


def energy(e, out=None, *, device):
    """Eq. 3 as a positive energy per image, F = 1/2 sum_l ||e^l||^2 (== ngc_ref.model.energy) -> (B,).

    One ngc_energy_v1 launch per layer, in order, each adding its term: deterministic. e: the error arrays of
    one batch (no None). out: optional (B,) C-contiguous float32 array to write into (a row of the energy trace).
    """
    B = e[0].shape[0]
    out = device.empty((B,)) if out is None else out
    first = True
    for el in e:
        n = el.size // B if B else 0
        if n == 0:
            continue
        device.launch("ngc_step", "ngc_energy_v1", B, REDUCE_THREADS, (el, out, i32(n), i32(0 if first else 1)))
        first = False
    if first:
        out[...] = 0
    return out


# ---- every layer, as ngc_ref.model ---------------------------------------------------------------
def predictions_and_errors(z, params, cfg, zbar=None, e=None, write_zbar=True, *, device):
    """Eq. 1 for every layer from the same states, and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0.
    zbar (L arrays) and e (L + 1, e[L] zeros): optional outputs, written in place (the settling loop)."""
    L = cfg.L
    zbar = [None] * L if zbar is None else zbar
    e = [None] * L + [device.zeros(z[L].shape)] if e is None else e
    for l in range(1, L + 1):
        zbar[l - 1], e[l - 1] = predict_error(z[l], params["W"][l], params["b"][l], z[l - 1], cfg, zbar[l - 1],
                                              e[l - 1], write_zbar, device=device)
    return zbar, e


def correct(z, e, E, cfg, free_bottom=False, in_place=False, *, device):
    """Eq. 2 for every free layer at once, from the errors e of the states z and the error filters E
    (ngc_ref.model.error_filters):
        d^l = -e^l + sum_j E_ji^l *_s e_j^{l-1}   (times phi'(z^l) in PCN mode);  z^l <- z^l + beta d^l - gamma z^l
    z^0 is clamped unless free_bottom (d^0 = -e^0; the leak on z^0 only if cfg.gamma_bottom). Returns new
    states (C-contiguous copies), or z itself updated when in_place."""
    new = z if in_place else list(z)
    for l in range(0 if free_bottom else 1, cfg.L + 1):
        if not in_place:
            new[l] = z[l].copy(order="C")
        correct_(new[l], e[l] if l < cfg.L else None, e[l - 1] if l > 0 else None, E[l] if l > 0 else None, cfg,
                 device=device)
    return new


def init_states(x, params, cfg, z_top, *, device):
    """Algorithm 1 lines 3-10: z^L = z_top, the ancestral pass z^l = zbar^l for l = L-1..1, z^0 = x.
    The states are fresh C-contiguous copies of float32 x and z_top (settling updates them in place)."""
    L = cfg.L
    z = [None] * (L + 1)
    z[0], z[L] = x.copy(order="C"), z_top.copy(order="C")
    for l in range(L - 1, 0, -1):
        z[l] = predict(z[l + 1], params["W"][l + 1], params["b"][l + 1], cfg, cfg.map_hw(l), device=device)
    return z


def settle(params, x, cfg, z_top, T, clamp="always", momentum=0.0, *, device):
    """Algorithm 1 on the per-step kernels (== ngc_ref.model.settle): the ancestral initialisation, then T
    synchronous steps, each one predictions_and_errors, energy, correct; any configuration fits.
    The inputs are as ngc_cuda.model.settle checked them (checks.settle_inputs), T an int. momentum: the
    heavy-ball weight of each step (ngc_ref.model.heavy_ball; a clamped settle), as array arithmetic after
    the correction kernels: z^l += momentum (old z^l - previous z^l).
    Returns an ngc_ref.model.SettleResult of float32 arrays of x's type."""
    L, E = cfg.L, error_filters(params)
    z = init_states(x, params, cfg, z_top, device=device)
    zbar = [device.empty(z[l].shape) for l in range(L)]
    e = [device.empty(z[l].shape) for l in range(L)] + [device.zeros(z[L].shape)]
    trace = device.empty((T + 1, x.shape[0]))      # row t (a contiguous view) is written by the energy kernel
    prev = [zl.copy() for zl in z[1:]] if momentum else None          # no velocity at the start
    for t in range(T):
        predictions_and_errors(z, params, cfg, zbar, e, write_zbar=False, device=device)   # zbar: only at the end
        energy(e[:L], out=trace[t], device=device)
        old = [zl.copy() for zl in z[1:]] if momentum else None
        correct(z, e, E, cfg, free_bottom=(clamp == "first"), in_place=True, device=device)
        if momentum:
            for zl, o, p in zip(z[1:], old, prev):
                zl += momentum * (o - p)
            prev = old
    predictions_and_errors(z, params, cfg, zbar, e, device=device)
    energy(e[:L], out=trace[T], device=device)
    return SettleResult(z, zbar, e, trace)
