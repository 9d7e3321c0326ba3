"""How close the synchronous settle is to its stability edge, measured two ways.

One settling step is z <- z + beta d(z) - gamma z (Eq. 2, all layers at once). Linearised at the settled
state its Jacobian J has eigenvalues 1 - gamma - beta h, h an eigenvalue of the energy's curvature; the step
is stable while every one stays above -1. Learning raises the filters' gain, so h grows until the most
negative eigenvalue reaches -1: past that edge the settle oscillates, the filter updates are computed from
states that have not settled, and training stalls, then blows up (docs/training.md).

  settle_eigenvalue(params, cfg, x)   the most negative eigenvalue of J at the state settled from x: the
                                      direct measure (power iteration on J - I, finite differences of Eq. 2)
  gains(params, cfg)                  sigma_max(W^l)^2 of each layer's prediction operator (W^l as a
                                      transposed convolution on its map): the curvature's main ingredient,
                                      no images needed
"""
import numpy as np

from ngc_ref import ops
from ngc_ref.model import draw_top

__all__ = ["settle_eigenvalue", "gains"]


def _float64(params):
    return {k: None if v is None else [None if a is None else np.asarray(a, np.float64) for a in v]
            for k, v in params.items()}


def settle_eigenvalue(params, cfg, x, T=None, iters=40, seed=0):
    """The most negative real part of the eigenvalues of one settling step's Jacobian (z^0 clamped to x) at
    the state reached after T steps (default cfg.T), by power iteration on J - I in float64 (finite
    differences of the cpu backend's `correct`). The settle is stable while it is above -1.

    Returns (eigenvalue, share of the eigenvector in each layer 1..L)."""
    from ngc_cpu import model as cm
    p = _float64(params)
    x = np.asarray(x, np.float64)
    T = cfg.T if T is None else T
    z = cm.settle(p, x, cfg, draw_top(cfg, len(x), np.random.default_rng(seed), np.float64), T=T).z

    def step(zz):
        _, e = cm.predictions_and_errors(zz, p, cfg)
        return cm.correct(zz, e, p, cfg)
    base = step(z)
    rng = np.random.default_rng(seed + 1)
    v = [None] + [rng.standard_normal(a.shape) for a in z[1:]]
    mu, eps = 0.0, 1e-6
    for _ in range(iters):
        n = np.sqrt(sum(float((a * a).sum()) for a in v[1:]))
        v = [None] + [a / n for a in v[1:]]
        out = step([z[0]] + [a + eps * b for a, b in zip(z[1:], v[1:])])
        v = [None] + [(o - b0) / eps - a for o, b0, a in zip(out[1:], base[1:], v[1:])]   # (J - I) v
        mu = np.sqrt(sum(float((a * a).sum()) for a in v[1:]))
    share = [float((a * a).sum()) for a in v[1:]]
    return 1.0 - mu, [s / sum(share) for s in share]


def gains(params, cfg, iters=30, seed=0):
    """sigma_max(W^l)^2 for l = 1..L: the largest eigenvalue of W^T W, W^l acting as the transposed
    convolution that predicts layer l-1 from a map of layer l (Eq. 1 without phi and the bias), by power
    iteration with its adjoint, the strided convolution. The per-kernel norm cap (<= 1) allows up to
    about C_{l-1} K^2 / s^2 here, far past what the settle tolerates. Returns a list (index 0 unused)."""
    rng = np.random.default_rng(seed)
    out = [None]
    for l in range(1, cfg.L + 1):
        W = np.asarray(params["W"][l], np.float64)
        v = rng.standard_normal((1, W.shape[0]) + cfg.map_hw(l))
        lam = 0.0
        for _ in range(iters):
            v /= np.linalg.norm(v)
            u = ops.conv2d(ops.conv2d_transpose(v, W, cfg.stride, cfg.map_hw(l - 1)), W, cfg.stride)   # W^T W v
            lam = float(np.vdot(v, u))
            v = u
        out.append(lam)
    return out
