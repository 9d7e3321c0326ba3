"""ngc_ref.model on the kernels: Conv-NGC settling (Algorithm 1) and filter updates (Algorithm 2).

Same names, arguments and results as ngc_ref.model (see its glossary); arrays are float32 of the
backend's type (NumPy -> emulated kernels, CuPy -> GPU). A settling step is synchronous, exactly as in
the reference: every prediction and error from the current states first (ngc_predict_error_v1 per
layer pair), then every correction (ngc_correct_v1 per free layer, in place), then the energy.

settle(kernel=...) picks how Algorithm 1 runs:
  "per-step"  T steps of the per-layer kernels above (any configuration)
  "whole"     ngc_cuda.settle_whole: the whole of Algorithm 1 in one launch, one block per image,
              everything in shared memory (only when it fits)
  "auto"      "whole" when ngc_cuda.settle_whole exists and fits() says the configuration fits the
              device's shared memory, else "per-step". The path taken is left in `last_settle_path`
              and logged at DEBUG level.
"""
import inspect
import logging

import numpy as np

from ngc_ref.config import Config
from ngc_ref.model import SettleResult, draw_top, init_params, n_filter_weights

from . import array_module, backend_of, ops

__all__ = ["Config", "SettleResult", "predict", "predictions_and_errors", "correct", "energy", "init_states",
           "settle", "filter_updates", "init_params", "draw_top", "n_filter_weights", "last_settle_path",
           "KERNELS"]

log = logging.getLogger(__name__)

KERNELS = ("auto", "per-step", "whole")
last_settle_path = None          # "whole" or "per-step": what the latest settle() ran


def _E(params):
    """Error filters: the learnable E when given, else W itself (E = W^T, the paper's setting)."""
    return params["E"] if params.get("E") is not None else params["W"]


def predict(z_l, W_l, b, cfg, out_hw):
    """Eq. 1: zbar_j^{l-1} = g( sum_i W_ij^l ⊙_s phi(z_i^l) + b_j ) (ngc_predict_v1)."""
    return ops.predict(z_l, W_l, b, cfg.leak, cfg.stride, out_hw)


def predictions_and_errors(z, params, cfg):
    """Eq. 1 for every layer from the same states, and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0."""
    L = cfg.L
    zbar, e = [], []
    for l in range(1, L + 1):
        zb, el = ops.predict_error(z[l], params["W"][l], params["b"][l], z[l - 1], cfg.leak, cfg.stride)
        zbar.append(zb)
        e.append(el)
    e.append(array_module(backend_of(z[L])).zeros(z[L].shape, np.float32))
    return zbar, e


def correct(z, e, params, cfg, free_bottom=False):
    """Eq. 2 for every free layer at once (returns new states; z is not modified):
        d^l = -e^l + sum_j E_ji^l *_s e_j^{l-1}   (times phi'(z^l) in PCN mode);  z^l <- z^l + beta d^l - gamma z^l
    z^0 is clamped unless free_bottom (d^0 = -e^0)."""
    E = _E(params)
    xp = array_module(backend_of(z[0]))
    new = list(z)
    for l in range(0 if free_bottom else 1, cfg.L + 1):
        zl = xp.array(z[l], order="C", copy=True)          # float32 is checked by the kernel wrapper
        ops.correct_(zl, e[l], e[l - 1] if l > 0 else None, E[l] if l > 0 else None,
                     cfg.stride, cfg.beta, cfg.gamma, cfg.leak, cfg.pcn)
        new[l] = zl
    return new


def energy(e):
    """Eq. 3 as a positive energy per image: F = 1/2 sum_l ||e^l||^2 -> (B,) (ngc_energy_v1 per layer)."""
    return ops.energy_(e)


def init_states(x, params, cfg, z_top):
    """Algorithm 1 lines 3-10: z^L = z_top, the ancestral pass z^l = zbar^l for l = L-1..1, z^0 = x.
    The states are fresh float32 copies (settling updates them in place)."""
    xp = array_module(backend_of(x, z_top))
    L = cfg.L
    z = [None] * (L + 1)
    z[0] = xp.array(x, dtype=x.dtype, order="C", copy=True)
    z[L] = xp.array(z_top, dtype=z_top.dtype, order="C", copy=True)
    for l in range(L - 1, 0, -1):
        z[l] = predict(z[l + 1], params["W"][l + 1], params["b"][l + 1], cfg, cfg.map_hw(l))
    return z


def _check_inputs(params, x, cfg, z_top):
    """Shapes the per-step path relies on (dtype is checked by every op: float32 only)."""
    L, C, K = cfg.L, cfg.layer_channels, cfg.kernel
    for name, a in (("x", x), ("z_top", z_top)):
        if a.dtype != np.float32:
            raise TypeError("settle: %s must be float32 (the kernels compute in float32), got %s" % (name, a.dtype))
    if x.ndim != 4 or tuple(x.shape[1:]) != (C[0],) + tuple(cfg.map_hw(0)):
        raise ValueError("settle: x has shape %s, the config needs (B, %d, %d, %d)"
                         % ((tuple(x.shape), C[0]) + tuple(cfg.map_hw(0))))
    want = (x.shape[0], C[L]) + tuple(cfg.map_hw(L))
    if tuple(z_top.shape) != want:
        raise ValueError("settle: z_top has shape %s, the config needs %s" % (tuple(z_top.shape), want))
    if len(params["W"]) != L + 1 or len(params["b"]) != L + 1:
        raise ValueError("settle: params hold %d layers of filters, the config has L = %d" % (len(params["W"]) - 1, L))
    for key in ("W", "E"):
        if params.get(key) is None:
            continue
        for l in range(1, L + 1):
            if tuple(params[key][l].shape) != (C[l], C[l - 1], K, K):
                raise ValueError("settle: %s[%d] has shape %s, the config needs %s"
                                 % (key, l, tuple(params[key][l].shape), (C[l], C[l - 1], K, K)))
    for l in range(1, L + 1):
        if tuple(params["b"][l].shape) != (C[l - 1],):
            raise ValueError("settle: b[%d] has shape %s, the config needs (%d,)" % (l, tuple(params["b"][l].shape), C[l - 1]))


def _device_smem(backend, sw):
    """Opt-in shared memory per block that the whole-settle kernel may use on this backend."""
    if backend == "cuda":
        import cupy as cp
        return int(cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])
    from .emu import H100_SMEM_LIMIT
    return int(getattr(sw, "EMU_SMEM_BYTES", H100_SMEM_LIMIT))


def _fits(sw, cfg, learn_E, smem):
    if "learn_E" in inspect.signature(sw.fits).parameters:
        return bool(sw.fits(cfg, learn_E=learn_E, device_smem_bytes=smem))
    return bool(sw.fits(cfg, smem))


def _settle_whole_module():
    """ngc_cuda.settle_whole, or None while it does not exist."""
    try:
        from . import settle_whole as sw
    except ModuleNotFoundError as err:
        if err.name not in ("ngc_cuda.settle_whole",):
            raise                     # a missing dependency inside it is a real error
        return None
    return sw


def settle(params, x, cfg, z_top, T=None, clamp="always", kernel="auto"):
    """Algorithm 1: ancestral initialisation then T synchronous steps of Eq. 1 + Eq. 2 (== ngc_ref.model.settle).

    x: (B, C_0, H, W) float32 image (the noisy one for denoising); z_top: (B, C_L, H_L, W_L) initial top
    state; clamp "always" (z^0 = x throughout) or "first" (z^0 = x at t = 1 only, then d^0 = -e^0).
    kernel: "auto", "per-step" or "whole" (module docstring). Returns a SettleResult of float32 arrays
    of x's type: final z, zbar and e recomputed from them, and the energy trace (T+1, B).
    """
    global last_settle_path
    if kernel not in KERNELS:
        raise ValueError("settle: kernel must be one of %s, got %r" % (KERNELS, kernel))
    if clamp not in ("always", "first"):
        raise ValueError("settle: clamp must be 'always' or 'first', got %r" % (clamp,))
    T = cfg.T if T is None else int(T)
    if T < 0:
        raise ValueError("settle: T must be >= 0, got %d" % T)
    L = cfg.L
    backend = backend_of(x, z_top, *params["W"][1:], *params["b"][1:], *(params.get("E") or [None]))
    _check_inputs(params, x, cfg, z_top)

    if kernel != "per-step":
        sw = _settle_whole_module()
        learn_E = params.get("E") is not None
        if sw is None:
            if kernel == "whole":
                raise RuntimeError("settle: kernel='whole' needs ngc_cuda.settle_whole, which is not available")
            reason = "ngc_cuda.settle_whole is not available"
        else:
            smem = _device_smem(backend, sw)
            if kernel == "whole" or _fits(sw, cfg, learn_E, smem):
                kw = {}
                order = ops.emu_settings()["order"]
                if backend == "cuda-emu" and order != "forward":
                    kw["order"] = order
                res = sw.settle_whole(params, x, cfg, z_top, T=T, clamp=clamp, **kw)
                last_settle_path = "whole"
                log.debug("settle: whole-settle kernel (%s, B=%d, T=%d)", backend, x.shape[0], T)
                return res
            reason = "needs %d bytes of shared memory per image, the device allows %d" % (
                sw.smem_bytes(cfg, learn_E) if hasattr(sw, "smem_bytes") else -1, smem)
        log.debug("settle: per-step kernels (%s)", reason)
    else:
        log.debug("settle: per-step kernels (requested)")

    xp = array_module(backend)
    E = _E(params)
    W, b, s = params["W"], params["b"], cfg.stride
    z = init_states(x, params, cfg, z_top)
    B = x.shape[0]
    zbar = [xp.empty(z[l].shape, np.float32) for l in range(L)]
    e = [xp.empty(z[l].shape, np.float32) for l in range(L)]
    trace = xp.empty((T + 1, B), np.float32)  # row t (a contiguous view) is written by the energy kernel

    def predict_all(final=False):
        for l in range(1, L + 1):            # all from the same states (synchronous); zbar stored only at the end
            ops.predict_error(z[l], W[l], b[l], z[l - 1], cfg.leak, s, zbar=zbar[l - 1], e=e[l - 1], write_zbar=final)

    def energy_into(t):
        ops.energy_(e, out=trace[t])

    for t in range(T):
        predict_all()
        energy_into(t)
        for l in range(0 if clamp == "first" else 1, L + 1):
            ops.correct_(z[l], e[l] if l < L else None, e[l - 1] if l > 0 else None, E[l] if l > 0 else None,
                         s, cfg.beta, cfg.gamma, cfg.leak, cfg.pcn)
    predict_all(final=True)
    energy_into(T)
    last_settle_path = "per-step"
    return SettleResult(z, zbar, e + [xp.zeros(z[L].shape, np.float32)], trace)


def filter_updates(res, params, cfg):
    """Sec. 3.2 / Algorithm 2 lines 9-10 from the final states and errors of `settle`:
        dW_ij^l = e_j^{l-1} (stride-1 corr) Dilate(phi(z_i^l), s)   summed over the batch (conv2d_wgrad_v1, phi inside)
        db^{l-1} = sum of e^{l-1} over batch and space                (bias_reduce_v1)
        dE^l = lambda dW^l                                             when E is learnable
    Displacements (minus the energy gradient): descent adds them."""
    K, s, L = cfg.kernel, cfg.stride, cfg.L
    dW = [None] + [ops.weight_grad_phi(res.e[l - 1], res.z[l], K, s, cfg.leak) for l in range(1, L + 1)]
    db = [None] + [ops.bias_grad(res.e[l - 1]) for l in range(1, L + 1)]
    dE = [None] + [w * np.float32(cfg.lam) for w in dW[1:]] if params.get("E") is not None else None
    return {"W": dW, "b": db, "E": dE}
