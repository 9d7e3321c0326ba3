"""Filter updates after settling (Sec. 3.2, Algorithm 2): descent, Adam or the normalised step, projection.

Sign (docs/reading.md): the displacements dW of `model.filter_updates` are minus the energy gradient, so
descent *adds* them: W <- W + alpha dW / (||dW|| + eps); for Adam the gradient passed in is -dW.
Algorithm 2 prints a minus sign, which would climb the energy; a test proves the descent direction.

`apply_step` is the loop over the learnable arrays (W, b, E and their layers), written once for every
backend: a backend passes its own per-array rules (adam, normalized, project) with the signatures of
`_adam`, `_normalized` and `project_kernels` below; `step` is that loop with the NumPy rules.
"""
import numpy as np

__all__ = ["init_state", "step", "apply_step", "project_kernels"]


def init_state(params):
    """Adam moments (zeros like every learnable array) and the step counter."""
    zeros = {k: [None if a is None else np.zeros_like(a) for a in v] for k, v in params.items() if v is not None}
    return {"t": 0, "m": zeros, "v": {k: [None if a is None else a.copy() for a in v] for k, v in zeros.items()}}


def project_kernels(w, max_norm=1.0):
    """Rescale every K x K kernel w[i, j] whose Euclidean norm exceeds max_norm back to max_norm."""
    norms = np.sqrt(np.sum(w * w, axis=(2, 3), keepdims=True))          # (C_l, C_{l-1}, 1, 1)
    scale = np.where(norms > max_norm, max_norm / np.maximum(norms, 1e-30), 1.0).astype(w.dtype)
    return w * scale


def _adam(p, d, m, v, t, cfg):
    """One bias-corrected Adam step (Kingma & Ba) on the gradient -d (d: the displacement); m, v in place."""
    b1, b2 = cfg.adam_b1, cfg.adam_b2
    grad = -d
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    return p - (cfg.lr * mhat / (np.sqrt(vhat) + cfg.adam_eps)).astype(p.dtype)


def _normalized(p, delta, cfg, per_kernel):
    """Algorithm 2 line 12 with the descent sign: p <- p + alpha delta / (||delta||_2 + eps),
    the norm taken per K x K kernel for filters, over the whole vector for biases."""
    axes = (2, 3) if per_kernel else None
    n = np.sqrt(np.sum(delta * delta, axis=axes, keepdims=per_kernel))
    return p + (cfg.lr * delta / (n + cfg.norm_eps)).astype(p.dtype)


def apply_step(params, deltas, opt_state, cfg, adam, normalized, project):
    """One update of every learnable array, in place in `params`: for W, b and E (when learnable), layer by
    layer, p <- adam(p, d, m, v, t, cfg) or normalized(p, d, cfg, per_kernel), then the filters (W, E)
    p <- project(p, cfg.max_kernel_norm). The rules return the new array (or p itself, updated)."""
    opt_state["t"] += 1
    t = opt_state["t"]
    for key in ("W", "b", "E"):
        if params.get(key) is None:
            continue
        for l in range(1, len(params[key])):
            p, d = params[key][l], deltas[key][l]
            if tuple(d.shape) != tuple(p.shape):
                raise ValueError("step: displacement %s[%d] has shape %s, the parameter %s"
                                 % (key, l, tuple(d.shape), tuple(p.shape)))
            if cfg.optimizer == "adam":
                p = adam(p, d, opt_state["m"][key][l], opt_state["v"][key][l], t, cfg)
            else:
                p = normalized(p, d, cfg, per_kernel=(key != "b"))
            if key != "b":
                p = project(p, cfg.max_kernel_norm)
            params[key][l] = p
    return params


def step(params, deltas, opt_state, cfg):
    """Apply one update in place: Adam (cfg.optimizer == "adam") or the normalised step, then project
    each filter kernel (W and learnable E) back into the ball of radius cfg.max_kernel_norm."""
    return apply_step(params, deltas, opt_state, cfg, _adam, _normalized, project_kernels)
