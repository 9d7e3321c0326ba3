"""ngc_ref.model on the CPU, fast: Conv-NGC settling (Algorithm 1) and filter updates (Algorithm 2).

Same names, arguments and results as ngc_ref.model (see its glossary): NumPy arrays in NCHW, float32 or
float64, every Config option (PCN, learnable E, leak, bias per channel or per pixel, sum or mean, the leak on
a free z^0, any channels / kernel / stride / map sizes the Config accepts).

How it is fast (kernels.py): the batch is cut into tiles of 16 images (8 in float64), stored so that the
16 images of one pixel are one vector; one thread runs Algorithm 1 for a whole tile, all T steps, with its
states, errors and one buffer (1.8 MB for 16 images of the paper's model) staying in the caches; the two
convolutions are gathers that skip the zeros of the dilation; 4 output maps are accumulated at once in
registers. Threads share the tiles (threads.py), and every image is computed the same way whatever
the thread count.
"""
import numpy as np

from ngc_ref import checks
from ngc_ref.config import Config
from ngc_ref.model import (SettleResult, bias_axes, bias_shape, draw_top, init_params, n_filter_weights, output_image,
                           over_batch, phi)

from . import kernels, ops, threads
from .layout import from_tiles, geometry, lanes, n_tiles, pack, to_tiles

__all__ = ["Config", "SettleResult", "predict", "predictions_and_errors", "correct", "energy", "init_states", "settle",
           "filter_updates", "init_params", "draw_top", "n_filter_weights", "bias_shape", "output_image", "DTYPES"]

DTYPES = (np.float32, np.float64)


class _Run:
    """The tiles of one batch and the packed network (a kernels.Net): the arguments of kernels.settle_tiles."""

    def __init__(self, params, cfg, B, dtype, pi0=1.0, momentum=0.0):
        self.cfg, self.B, self.dtype = cfg, B, np.dtype(dtype)
        self.V = lanes(dtype)
        self.geo, P = geometry(cfg, self.V)
        self.nt = n_tiles(B, self.V)
        # every region is written before it is read (inputs by put(), the rest by the kernels), except
        # e^L: the top has no prediction, its error stays zero
        self.z = np.empty((self.nt, P), dtype)
        self.e = np.empty((self.nt, P), dtype)
        self.zb = np.empty((self.nt, P), dtype)
        self.region(self.e, cfg.L)[:] = 0
        self.zp = np.empty((self.nt, P if momentum else 0), dtype)     # the previous states (heavy-ball momentum)
        gamma0 = cfg.gamma if cfg.gamma_bottom else 0.0
        nph = int(max(self.geo[l, 0] * self.geo[l, 1] * self.geo[l, 2] for l in range(cfg.L + 1))) * self.V
        self.net = kernels.Net(self.geo, cfg.L, *pack(params, cfg, dtype, pi0), cfg.kernel, cfg.stride,
                               np.array([cfg.leak, cfg.beta, cfg.gamma, gamma0, momentum], dtype), bool(cfg.pcn), self.V, nph)

    def region(self, buf, l):
        C, H, W, off = (int(v) for v in self.geo[l, :4])
        return buf[:, off:off + C * H * W * self.V]

    def put(self, buf, l, a):
        to_tiles(a, self.V, out=self.region(buf, l))

    def get(self, buf, l):
        C, H, W = (int(v) for v in self.geo[l, :3])
        return from_tiles(self.region(buf, l), self.B, (C, H, W), self.V)

    def run(self, T=0, free_bottom=False, init=False, correct_first=False, final=False):
        en = np.zeros((self.nt, T + 1, self.V), np.float64)
        threads.run(kernels.settle_tiles, self.nt, kernels.Tiles(self.z, self.e, self.zb, en, self.zp), self.net,
                    kernels.Steps(int(T), bool(free_bottom), bool(init), bool(correct_first), bool(final)))
        return en.transpose(1, 0, 2).reshape(T + 1, self.nt * self.V)[:, :self.B].astype(self.dtype)


def _check_states(z, cfg, what="z"):
    L, C = cfg.L, cfg.layer_channels
    if len(z) != L + 1:
        raise ValueError("%s must hold L + 1 = %d layers, got %d" % (what, L + 1, len(z)))
    B = z[0].shape[0]
    dtype = np.dtype(z[0].dtype)
    if dtype not in [np.dtype(d) for d in DTYPES]:
        raise TypeError("%s[0] has dtype %s; the cpu backend computes in float32 or float64" % (what, dtype))
    for l in range(L + 1):
        want = (B, C[l]) + cfg.map_hw(l)
        if tuple(z[l].shape) != want:
            raise ValueError("%s[%d] has shape %s, the config needs %s" % (what, l, tuple(z[l].shape), want))
        if z[l].dtype != dtype:
            raise TypeError("%s[%d] is %s but %s[0] is %s; pass one dtype" % (what, l, z[l].dtype, what, dtype))
    return B, dtype


def predict(z_l, W_l, b, cfg, out_hw):
    """Eq. 1 for one layer: zbar^{l-1} = g( W^l (transposed conv, stride s) phi(z^l) + b^l ), g = identity."""
    b_map = b[:, None, None] if b.ndim == 1 else b
    return ops.conv2d_transpose(phi(z_l, cfg.leak), W_l, cfg.stride, out_hw) + b_map


def init_states(x, params, cfg, z_top):
    """Algorithm 1 lines 3-10: z^L = z_top, the ancestral pass z^l = zbar^l for l = L-1..1, z^0 = x."""
    dtype = checks.check_settle_inputs(params, x, cfg, z_top, DTYPES, where="init_states")
    r = _Run(params, cfg, x.shape[0], dtype)
    r.put(r.z, 0, x)
    r.put(r.z, cfg.L, z_top)
    r.run(init=True)
    return [x.copy()] + [r.get(r.z, l) for l in range(1, cfg.L)] + [z_top.copy()]


def predictions_and_errors(z, params, cfg):
    """Eq. 1 for every layer from the same states: zbar^{l-1} from z^l, e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0."""
    B, dtype = _check_states(z, cfg)
    checks.check_params(params, cfg, "predictions_and_errors", (dtype,))
    r = _Run(params, cfg, B, dtype)
    for l in range(cfg.L + 1):
        r.put(r.z, l, z[l])
    r.run(final=True)
    zbar = [r.get(r.zb, l) for l in range(cfg.L)]
    e = [r.get(r.e, l) for l in range(cfg.L)] + [np.zeros_like(z[cfg.L])]
    return zbar, e


def correct(z, e, params, cfg, free_bottom=False, pi0=1.0):
    """Eq. 2 for every free layer at once (new arrays; z is not modified):
        d^l = -e^l + pi^{l-1} sum_j E_ji^l *_s e_j^{l-1}   (times phi'(z^l) in PCN mode);  z^l <- z^l + beta d^l - gamma z^l
    pi^0 = pi0 (the precision of e^0, applied as E^1 scaled by pi0), pi^l = 1 above. z^0 is clamped unless
    free_bottom (d^0 = -e^0; the leak on z^0 only if cfg.gamma_bottom)."""
    B, dtype = _check_states(z, cfg)
    _check_states(e, cfg, "e")
    checks.check_params(params, cfg, "correct", (dtype,))
    r = _Run(params, cfg, B, dtype, checks.check_precision(pi0, "correct"))
    for l in range(cfg.L + 1):
        r.put(r.z, l, z[l])
        r.put(r.e, l, e[l])                  # e[L] as given (settle keeps it zero), as ngc_ref.model.correct
    r.run(free_bottom=free_bottom, correct_first=True)
    return [r.get(r.z, l) if (l or free_bottom) else z[0] for l in range(cfg.L + 1)]


def energy(e):
    """Eq. 3 as a positive energy per image: F = 1/2 sum_l ||e^l||^2 -> (B,), summed in float64."""
    B = e[0].shape[0]
    total = sum(np.sum(np.square(el.reshape(B, -1), dtype=np.float64), axis=1) for el in e)
    return (0.5 * total).astype(e[0].dtype)


def settle(params, x, cfg, z_top, T=None, clamp="always", pi0=1.0, momentum=0.0):
    """Algorithm 1 (== ngc_ref.model.settle): ancestral initialisation then T synchronous steps of Eq. 1 + Eq. 2.

    x: (B, C_0, H, W) image (the noisy one for denoising); z_top: (B, C_L, H_L, W_L) initial top state;
    float32 or float64, one dtype. clamp="always": z^0 = x throughout (reconstruction, training);
    clamp="first": z^0 = x at t = 1 only, then d^0 = -e^0. pi0: the precision of e^0 in z^1's correction
    (ngc_ref.model.corrections); momentum: the heavy-ball weight of each step (ngc_ref.model.heavy_ball). Returns
    a SettleResult of NumPy arrays: final z, zbar and e recomputed from them, and the energy per image before each
    step and after the last (T+1, B).
    """
    checks.check_clamp(clamp)
    dtype = checks.check_settle_inputs(params, x, cfg, z_top, DTYPES)
    T = cfg.T if T is None else checks.check_steps(T)
    r = _Run(params, cfg, x.shape[0], dtype, checks.check_precision(pi0), checks.check_momentum(momentum, clamp))
    r.put(r.z, 0, x)
    r.put(r.z, cfg.L, z_top)
    energy_trace = r.run(T, free_bottom=(clamp == "first"), init=True, final=True)
    z = [r.get(r.z, l) for l in range(cfg.L + 1)]
    zbar = [r.get(r.zb, l) for l in range(cfg.L)]
    e = [r.get(r.e, l) for l in range(cfg.L)] + [np.zeros_like(z[cfg.L])]
    return SettleResult(z, zbar, e, energy_trace)


def filter_updates(res, params, cfg):
    """Sec. 3.2 / Algorithm 2 lines 9-10 (== ngc_ref.model.filter_updates), from the final states and errors:
        dW_ij^l = e_j^{l-1} (stride-1 corr) Dilate(phi(z_i^l), s)   summed over the batch (cfg.reduce="mean": averaged)
        db^l = sum of e^{l-1} over batch and space (over the batch only for a bias map)
        dE^l = lambda dW^l                                             when E is learnable
    dW is summed per tile of images in the dtype, then tile after tile in float64 (fixed order)."""
    L, K = cfg.L, cfg.kernel
    B, dtype = _check_states(res.z, cfg, "res.z")
    if len(res.e) < L:
        raise ValueError("res.e must hold the errors e^0..e^{L-1}, got %d arrays" % len(res.e))
    r = _Run(params, cfg, B, dtype)
    for l in range(L + 1):
        if l:
            r.put(r.z, l, res.z[l])
        if l < L:
            r.put(r.e, l, res.e[l])
    C = cfg.layer_channels
    sizes = [C[l] * C[l - 1] * K * K for l in range(1, L + 1)]
    parts = np.zeros((r.nt, sum(sizes)), np.float64)
    threads.run(kernels.filter_update_tiles, r.nt, r.z, r.e, parts, r.net)
    flat = parts.sum(axis=0)
    dW, start = [None], 0
    for l in range(1, L + 1):
        dW.append(flat[start:start + sizes[l - 1]].reshape(C[l], C[l - 1], K, K).astype(dtype))
        start += sizes[l - 1]
    dW = [None] + [over_batch(w, B, cfg) for w in dW[1:]]
    db = [None] + [over_batch(res.e[l - 1].sum(axis=bias_axes(cfg)), B, cfg) for l in range(1, L + 1)]
    dE = ([None] + [cfg.lam * w for w in dW[1:]]) if params.get("E") is not None else None
    return {"W": dW, "b": db, "E": dE}
