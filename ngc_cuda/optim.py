"""ngc_ref.optim on the kernels (kernels/optim.cu): Adam or the normalised step, then the projection.

Same sign convention as the reference: the displacements of `model.filter_updates` are minus the
energy gradient, so descent adds them (normalised step) and Adam is fed the gradient -d. The per-array
updates `adam`, `normalized` and `project_kernels` update their array IN PLACE and return it; `step`
runs them over every parameter through ngc_ref.optim.apply_step, the loop every backend shares (a
non-contiguous parameter is replaced by a contiguous copy), and returns params.
"""
import functools

from ngc_ref.optim import apply_step

from . import checks
from .backend import resolve
from .launch import BLOCK, ceil_div, f32, i32

__all__ = ["init_state", "adam", "normalized", "project_kernels", "step"]


def init_state(params, backend=None):
    """Adam moments (zeros like every learnable array) and the step counter, as ngc_ref.optim.init_state."""
    dev = resolve(backend, *[a for v in params.values() if v is not None for a in v])

    def zeros(v):
        return [None if a is None else dev.zeros(a.shape) for a in v]
    return {"t": 0, "m": {k: zeros(v) for k, v in params.items() if v is not None},
            "v": {k: zeros(v) for k, v in params.items() if v is not None}}


def project_kernels(w, max_norm=1.0, backend=None):
    """Rescale every K x K kernel w[i, j] whose Euclidean norm exceeds max_norm back to max_norm
    (== ngc_ref.optim.project_kernels, project_kernels_v1). Returns the projected array: w itself
    (updated in place) when it is a C-contiguous float32 array."""
    dev = resolve(backend, w)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError("project_kernels: w must be (C_l, C_{l-1}, K, K), got %s" % (tuple(w.shape),))
    return _project(checks.param("project_kernels", w, dev), max_norm, device=dev)


def adam(p, d, m, v, t, cfg, backend=None):
    """One bias-corrected Adam step (ngc_ref.optim._adam) on the gradient -d, step number t >= 1
    (adam_v1): p, m, v updated in place; returns p."""
    dev = resolve(backend, p, d, m, v)
    p = checks.param("adam", p, dev)
    d, = checks.inputs("adam", dev, d=d)
    checks.output("adam", dev, m, p.shape, "m")
    checks.output("adam", dev, v, p.shape, "v")
    return _adam(p, d, m, v, t, cfg, device=dev)


def normalized(p, d, cfg, per_kernel, backend=None):
    """Algorithm 2 line 12 with the descent sign (ngc_ref.optim._normalized): p <- p + lr d / (||d|| + eps),
    the norm per K x K kernel for filters (per_kernel), over the whole vector for biases
    (normalized_step_v1): p updated in place; returns p."""
    dev = resolve(backend, p, d)
    p = checks.param("normalized", p, dev)
    d, = checks.inputs("normalized", dev, d=d)
    return _normalized(p, d, cfg, per_kernel, device=dev)


def step(params, deltas, opt_state, cfg, backend=None):
    """One update in place (== ngc_ref.optim.step): Adam (cfg.optimizer == "adam") or the normalised
    step, then each filter kernel of W (and learnable E) projected to norm <= cfg.max_kernel_norm.
    Every array is checked once, here (checks.step_inputs); the loop over them is ngc_ref.optim.apply_step,
    the one every backend runs, with the rules below on this call's device."""
    dev = resolve(backend, params["W"][1])
    deltas = checks.step_inputs(params, deltas, opt_state, cfg, dev)
    on = functools.partial
    return apply_step(params, deltas, opt_state, cfg, on(_adam, device=dev), on(_normalized, device=dev),
                      on(_project, device=dev))


# ---- below the entry: the launches, on checked arrays (float32, C-contiguous, of the device) ---------------
def _project(w, max_norm, *, device):
    n, KK = w.shape[0] * w.shape[1], w.shape[2] * w.shape[3]
    if n and KK:
        device.launch("optim", "project_kernels_v1", ceil_div(n, BLOCK), BLOCK, (w, i32(n), i32(KK), f32(max_norm)))
    return w


def _adam(p, d, m, v, t, cfg, *, device):
    b1, b2 = cfg.adam_b1, cfg.adam_b2
    if p.size:
        device.launch("optim", "adam_v1", ceil_div(p.size, BLOCK), BLOCK,
                      (p, m, v, d, i32(p.size), f32(cfg.lr), f32(b1), f32(b2), f32(1 - b1), f32(1 - b2),
                       f32(1 - b1 ** t), f32(1 - b2 ** t), f32(cfg.adam_eps)))
    return p


def _normalized(p, d, cfg, per_kernel, *, device):
    groups, size = (p.shape[0] * p.shape[1], p.shape[2] * p.shape[3]) if per_kernel else (1, p.size)
    if groups and size:
        device.launch("optim", "normalized_step_v1", ceil_div(groups, BLOCK), BLOCK,
                      (p, d, i32(groups), i32(size), f32(cfg.lr), f32(cfg.norm_eps)))
    return p
