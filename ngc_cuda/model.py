"""ngc_ref.model on the kernels: Conv-NGC settling (Algorithm 1) and filter updates (Algorithm 2).

Same names, arguments and results as ngc_ref.model (see its glossary); arrays are float32 of the
backend's type (NumPy -> emulated kernels, CuPy -> GPU). This is the entry: every function takes
`backend=` ("cuda" or "cuda-emu"; None: told by the arrays' type), turns it into a backend.Device once,
checks its arguments once (checks.py) and hands both down; below, nothing is checked again.
settle(kernel=...) picks one of two paths, and records it in the result's `path`:

  "whole"     settle_whole.py: the whole of Algorithm 1 in one launch, one block per image, everything
              in shared memory (kernels/ngc_settle.cu; only when it fits the device's shared memory)
  "per-step"  ngc_step.py: T synchronous steps of the per-layer kernels (kernels/ngc_step.cu), written
              as ngc_ref.model.settle is, with the functions below; any configuration
  "auto"      (the default) "whole" when settle_whole.fits says so, else "per-step"
"""
import logging
from dataclasses import dataclass

import numpy as np

from ngc_ref import checks as ref_checks, model as ref_model
from ngc_ref.config import Config
from ngc_ref.model import draw_top, error_filters, init_params, n_filter_weights

from . import checks, ngc_step, ops, settle_whole
from .backend import resolve

__all__ = ["Config", "SettleResult", "predict", "predictions_and_errors", "correct", "energy", "init_states",
           "settle", "filter_updates", "init_params", "draw_top", "n_filter_weights", "KERNELS"]

log = logging.getLogger(__name__)

KERNELS = ("auto", "per-step", "whole")


@dataclass
class SettleResult(ref_model.SettleResult):
    """ngc_ref.model.SettleResult (z, zbar, e, energy) and the path that computed it: "whole" or "per-step"."""
    path: str = "per-step"


def predict(z_l, W_l, b, cfg, out_hw, backend=None):
    """Eq. 1: zbar_j^{l-1} = g( sum_i W_ij^l ⊙_s phi(z_i^l) + b_j^l ) (ngc_predict_v1); b = b^l, the bias
    of the prediction of layer l-1 (ngc_ref.model's glossary)."""
    dev = resolve(backend, z_l, W_l, b)
    z_l, W_l, b, hw = checks.predict("predict", z_l, W_l, b, cfg, out_hw, dev)
    return ngc_step.predict(z_l, W_l, b, cfg, hw, device=dev)


def predictions_and_errors(z, params, cfg, backend=None):
    """Eq. 1 for every layer from the same states, and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0."""
    dev = resolve(backend, *z)
    z, params = checks.predictions_and_errors(z, params, cfg, dev)
    return ngc_step.predictions_and_errors(z, params, cfg, device=dev)


def correct(z, e, params, cfg, free_bottom=False, backend=None, pi0=1.0):
    """Eq. 2 for every free layer at once (returns new states; z is not modified):
        d^l = -e^l + pi^{l-1} sum_j E_ji^l *_s e_j^{l-1}   (times phi'(z^l) in PCN mode);  z^l <- z^l + beta d^l - gamma z^l
    pi^0 = pi0, the precision of e^0 (ngc_ref.model.corrections), pi^l = 1 above. z^0 is clamped unless
    free_bottom (d^0 = -e^0; the leak on z^0 only if cfg.gamma_bottom)."""
    dev = resolve(backend, *z)
    params = _precision_weighted(params, ref_checks.check_precision(pi0, "correct"))
    e, E = checks.correct(z, e, params, cfg, free_bottom, dev)
    return ngc_step.correct(z, e, E, cfg, free_bottom, device=dev)


def _precision_weighted(params, pi0):
    """params whose E^1 is pi0 E^1 (E = W^T when E is not learnable): the kernels' bottom-up message
    E^1 *_s e^0 then carries the precision pi0 of e^0. pi0 = 1 returns params itself."""
    if pi0 == 1.0:
        return params
    E = error_filters(params)
    return dict(params, E=[None, E[1] * np.float32(pi0)] + list(E[2:]))


def energy(e, backend=None):
    """Eq. 3 as a positive energy per image: F = 1/2 sum_l ||e^l||^2 -> (B,) (ngc_energy_v1 per layer)."""
    dev = resolve(backend, *e)
    return ngc_step.energy(checks.energy(e, dev), device=dev)


def init_states(x, params, cfg, z_top, backend=None):
    """Algorithm 1 lines 3-10: z^L = z_top, the ancestral pass z^l = zbar^l for l = L-1..1, z^0 = x.
    The states are fresh float32 copies (settling updates them in place)."""
    _, dev, params = checks.settle_inputs("init_states", params, x, cfg, z_top, backend=backend)
    return ngc_step.init_states(x, params, cfg, z_top, device=dev)


def settle(params, x, cfg, z_top, T=None, clamp="always", kernel="auto", backend=None, pi0=1.0, momentum=0.0):
    """Algorithm 1: ancestral initialisation then T synchronous steps of Eq. 1 + Eq. 2 (== ngc_ref.model.settle).

    x: (B, C_0, H, W) float32 image (the noisy one for denoising); z_top: (B, C_L, H_L, W_L) initial top
    state; clamp "always" (z^0 = x throughout) or "first" (z^0 = x at t = 1 only, then d^0 = -e^0).
    kernel: "auto", "per-step" or "whole" (module docstring). pi0: the precision of e^0 in z^1's correction
    (ngc_ref.model.corrections), carried by E^1 scaled by pi0. momentum: the heavy-ball weight of each step
    (ngc_ref.model.heavy_ball), on the per-step path only: the whole-settle kernel keeps one copy of the states
    in shared memory, and the previous states would double it (kernel "auto" takes the per-step path).
    Returns a SettleResult of float32 arrays of x's type: final z, zbar and e recomputed from them, the energy
    trace (T+1, B), and the path taken.
    """
    if kernel not in KERNELS:
        raise ValueError("settle: kernel must be one of %s, got %r" % (KERNELS, kernel))
    T, dev, params = checks.settle_inputs("settle", params, x, cfg, z_top, T, clamp, backend)   # both paths trust them
    params = _precision_weighted(params, ref_checks.check_precision(pi0))
    momentum = ref_checks.check_momentum(momentum, clamp)
    if momentum and kernel == "whole":
        raise ValueError("settle: the whole-settle kernel has no momentum (it keeps one copy of the states in shared "
                         "memory); pass kernel='per-step' or 'auto'")
    whole = kernel == "whole" or (kernel == "auto" and not momentum and
                                  settle_whole.fits(cfg, params.get("E") is not None, dev.smem_limit))
    log.debug("settle: %s path (kernel=%r, %s)", "whole" if whole else "per-step", kernel, dev)
    if whole:
        res = settle_whole.settle_whole(params, x, cfg, z_top, T=T, clamp=clamp, device=dev)
        return SettleResult(res.z, res.zbar, res.e, res.energy, path="whole")
    res = ngc_step.settle(params, x, cfg, z_top, T=T, clamp=clamp, momentum=momentum, device=dev)
    return SettleResult(res.z, res.zbar, res.e, res.energy, path="per-step")


def filter_updates(res, params, cfg, backend=None):
    """Sec. 3.2 / Algorithm 2 lines 9-10 from the final states and errors of `settle`:
        dW_ij^l = e_j^{l-1} (stride-1 corr) Dilate(phi(z_i^l), s)   summed over the batch (conv2d_weight_grad_v1)
        db^l = sum of e^{l-1} over batch and space                    (bias_grad_v1)
                                       (over the batch only for a bias map, cfg.bias = "pixel")
        dE^l = lambda dW^l                                             when E is learnable
    With cfg.reduce = "mean" every sum over the batch becomes a mean (divided by the batch size).
    Displacements (minus the energy gradient): descent adds them."""
    dev = resolve(backend, res.e[0])
    pairs = checks.filter_updates(res, cfg, dev)                 # (e^{l-1}, z^l) for l = 1..L, checked once
    mean, pixel = cfg.reduce == "mean", cfg.bias == "pixel"
    dW = [None] + [ops.launch_weight_grad(e, z, cfg.kernel, cfg.stride, True, cfg.leak, mean, device=dev)
                   for e, z in pairs]
    db = [None] + [ops.launch_bias_grad(e, pixel, mean, device=dev) for e, _ in pairs]
    dE = ([None] + [w * np.float32(cfg.lam) for w in dW[1:]]) if params.get("E") is not None else None
    return {"W": dW, "b": db, "E": dE}
