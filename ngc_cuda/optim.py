"""ngc_ref.optim on the kernels (kernels/optim.cu): Adam or the normalised step, then the projection.

Same sign convention as the reference: the displacements of `model.filter_updates` are minus the
energy gradient, so descent adds them (normalised step) and Adam is fed the gradient -d. The per-array
updates `adam`, `normalized` and `project_kernels` update their array IN PLACE and return it; `step`
runs them over every parameter through ngc_ref.optim.apply_step, the loop every backend shares (a
non-contiguous parameter is replaced by a contiguous copy), and returns params.
"""
import functools

import numpy as np

from ngc_ref.optim import apply_step

from . import checks
from .backend import array_module, resolve
from .launch import BLOCK, ceil_div, f32, i32, launch

__all__ = ["init_state", "adam", "normalized", "project_kernels", "step"]


def init_state(params, backend=None):
    """Adam moments (zeros like every learnable array) and the step counter, as ngc_ref.optim.init_state."""
    backend = resolve(backend, *[a for v in params.values() if v is not None for a in v])
    xp = array_module(backend)

    def zeros(v):
        return [None if a is None else xp.zeros(a.shape, np.float32) for a in v]
    return {"t": 0, "m": {k: zeros(v) for k, v in params.items() if v is not None},
            "v": {k: zeros(v) for k, v in params.items() if v is not None}}


def _param(op, p, backend):
    """A parameter array the kernels update in place: float32, C-contiguous (copied once if not)."""
    if p.dtype != np.float32:
        raise TypeError("%s: parameters must be float32, got %s" % (op, p.dtype))
    return p if p.flags.c_contiguous else array_module(backend).ascontiguousarray(p)


def project_kernels(w, max_norm=1.0, backend=None):
    """Rescale every K x K kernel w[i, j] whose Euclidean norm exceeds max_norm back to max_norm
    (== ngc_ref.optim.project_kernels, project_kernels_v1). Returns the projected array: w itself
    (updated in place) when it is a C-contiguous float32 array."""
    backend = resolve(backend, w)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError("project_kernels: w must be (C_l, C_{l-1}, K, K), got %s" % (tuple(w.shape),))
    w = _param("project_kernels", w, backend)
    n, KK = w.shape[0] * w.shape[1], w.shape[2] * w.shape[3]
    if n and KK:
        launch(backend, "optim", "project_kernels_v1", ceil_div(n, BLOCK), BLOCK, (w, i32(n), i32(KK), f32(max_norm)))
    return w


def adam(p, d, m, v, t, cfg, backend=None):
    """One bias-corrected Adam step (ngc_ref.optim._adam) on the gradient -d, step number t >= 1
    (adam_v1): p, m, v updated in place; returns p."""
    backend = resolve(backend, p, d, m, v)
    p = _param("adam", p, backend)
    d, = checks.inputs("adam", backend, d=d)
    checks.output("adam", backend, m, p.shape, "m")
    checks.output("adam", backend, v, p.shape, "v")
    b1, b2 = cfg.adam_b1, cfg.adam_b2
    if p.size:
        launch(backend, "optim", "adam_v1", ceil_div(p.size, BLOCK), BLOCK,
               (p, m, v, d, i32(p.size), f32(cfg.lr), f32(b1), f32(b2), f32(1 - b1), f32(1 - b2),
                f32(1 - b1 ** t), f32(1 - b2 ** t), f32(cfg.adam_eps)))
    return p


def normalized(p, d, cfg, per_kernel, backend=None):
    """Algorithm 2 line 12 with the descent sign (ngc_ref.optim._normalized): p <- p + lr d / (||d|| + eps),
    the norm per K x K kernel for filters (per_kernel), over the whole vector for biases
    (normalized_step_v1): p updated in place; returns p."""
    backend = resolve(backend, p, d)
    p = _param("normalized", p, backend)
    d, = checks.inputs("normalized", backend, d=d)
    groups, size = (p.shape[0] * p.shape[1], p.shape[2] * p.shape[3]) if per_kernel else (1, p.size)
    if groups and size:
        launch(backend, "optim", "normalized_step_v1", ceil_div(groups, BLOCK), BLOCK,
               (p, d, i32(groups), i32(size), f32(cfg.lr), f32(cfg.norm_eps)))
    return p


def step(params, deltas, opt_state, cfg, backend=None):
    """One update in place (== ngc_ref.optim.step): Adam (cfg.optimizer == "adam") or the normalised
    step, then each filter kernel of W (and learnable E) projected to norm <= cfg.max_kernel_norm.
    The loop over the arrays is ngc_ref.optim.apply_step, the one every backend runs; the rules are the
    kernels above, on this call's backend."""
    on = functools.partial
    backend = resolve(backend, params["W"][1])
    return apply_step(params, deltas, opt_state, cfg, on(adam, backend=backend), on(normalized, backend=backend),
                      on(project_kernels, backend=backend))
