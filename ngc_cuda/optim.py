"""ngc_ref.optim on the kernels (kernels/optim.cu): Adam or the normalised step, then the projection.

Same sign convention as the reference: the displacements of `model.filter_updates` are minus the
energy gradient, so descent adds them (normalised step) and Adam is fed the gradient -d.
`step` updates params IN PLACE (the kernels write into the arrays; a non-contiguous parameter is
replaced by a contiguous copy) and returns params, like ngc_ref.optim.step.
"""
import numpy as np

from . import array_module, backend_of
from .ops import BLOCK, _f32, _i32, _launch, _out_buffer, _prep, ceil_div

__all__ = ["init_state", "step", "project_kernels"]


def init_state(params):
    """Adam moments (zeros like every learnable array) and the step counter, as ngc_ref.optim.init_state."""
    def zeros(v):
        return [None if a is None else array_module(backend_of(a)).zeros(a.shape, np.float32) for a in v]
    m = {k: zeros(v) for k, v in params.items() if v is not None}
    return {"t": 0, "m": m, "v": {k: zeros(v) for k, v in params.items() if v is not None}}


def _param(p, op):
    """A parameter array the kernels update in place: float32, C-contiguous (copied once if not)."""
    if p.dtype != np.float32:
        raise TypeError("%s: parameters must be float32, got %s" % (op, p.dtype))
    return p if p.flags.c_contiguous else array_module(backend_of(p)).ascontiguousarray(p)


def project_kernels(w, max_norm=1.0):
    """Rescale every K x K kernel w[i, j] whose Euclidean norm exceeds max_norm back to max_norm
    (== ngc_ref.optim.project_kernels, project_kernels_v1). Returns the projected array: w itself
    (updated in place) when it is a C-contiguous float32 array."""
    backend = backend_of(w)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError("project_kernels: w must be (C_l, C_{l-1}, K, K), got %s" % (tuple(w.shape),))
    w = _param(w, "project_kernels")
    n, KK = w.shape[0] * w.shape[1], w.shape[2] * w.shape[3]
    if n and KK:
        _launch(backend, "optim", "project_kernels_v1", ceil_div(n, BLOCK), BLOCK,
                (w, _i32(n), _i32(KK), _f32(max_norm)))
    return w


def _adam(p, d, m, v, t, cfg, backend):
    """One bias-corrected Adam step on the gradient -d (adam_v1); p, m, v in place."""
    b1, b2 = cfg.adam_b1, cfg.adam_b2
    _out_buffer("adam", m, p.shape)
    _out_buffer("adam", v, p.shape)
    if p.size:
        _launch(backend, "optim", "adam_v1", ceil_div(p.size, BLOCK), BLOCK,
                (p, m, v, d, _i32(p.size), _f32(cfg.lr), _f32(b1), _f32(b2), _f32(1 - b1), _f32(1 - b2),
                 _f32(1 - b1 ** t), _f32(1 - b2 ** t), _f32(cfg.adam_eps)))


def _normalized(p, d, cfg, per_kernel, backend):
    """Algorithm 2 line 12 with the descent sign: p <- p + lr d / (||d|| + eps), the norm per K x K
    kernel for filters, over the whole vector for biases (normalized_step_v1); p in place."""
    if per_kernel:
        groups, size = p.shape[0] * p.shape[1], p.shape[2] * p.shape[3]
    else:
        groups, size = 1, p.size
    if groups and size:
        _launch(backend, "optim", "normalized_step_v1", ceil_div(groups, BLOCK), BLOCK,
                (p, d, _i32(groups), _i32(size), _f32(cfg.lr), _f32(cfg.norm_eps)))


def step(params, deltas, opt_state, cfg):
    """One update in place (== ngc_ref.optim.step): Adam (cfg.optimizer == "adam") or the normalised
    step, then each filter kernel of W (and learnable E) projected to norm <= cfg.max_kernel_norm."""
    opt_state["t"] += 1
    t = opt_state["t"]
    for key in ("W", "b", "E"):
        if params.get(key) is None:
            continue
        for l in range(1, len(params[key])):
            p, d = params[key][l], deltas[key][l]
            backend = backend_of(p, d)
            p = _param(p, "step")
            if tuple(d.shape) != tuple(p.shape):
                raise ValueError("step: delta %s[%d] has shape %s, the parameter %s"
                                 % (key, l, tuple(d.shape), tuple(p.shape)))
            d, = _prep("step", backend, d=d)
            if cfg.optimizer == "adam":
                _adam(p, d, opt_state["m"][key][l], opt_state["v"][key][l], t, cfg, backend)
            else:
                _normalized(p, d, cfg, key != "b", backend)
            if key != "b":
                p = project_kernels(p, cfg.max_kernel_norm)
            params[key][l] = p
    return params
