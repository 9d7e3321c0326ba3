"""Conv-NGC inference and learning, written as the paper's equations (Eqs. 1-3, Algorithms 1-2).

Glossary (paper symbol -> code). Layers are indexed l = 0..L, l = 0 is the image, l = L the top
(Config's docstring states the channel order once).
  z[l]      z^l      state maps of layer l                    (B, C_l, H_l, W_l)
  zbar[l]   zbar^l   prediction of layer l made by layer l+1  (B, C_l, H_l, W_l), l = 0..L-1
  e[l]      e^l      error units z^l - zbar^l                 e[L] = 0 (the top has no prediction)
  d[l]      d^l      state correction (perturbation), Eq. 2
  W[l]      W^l      generative filters, layer l predicts l-1 (C_l, C_{l-1}, K, K); W[0] is None
  b[l]      b^l      bias added to the prediction of layer l-1, as Algorithm 1 lines 10 and 19 write it
                     (zbar^{l-1} = g(... + b^l)); b[0] is None. One scalar per map, (C_{l-1},), or with
                     cfg.bias = "pixel" a bias map (C_{l-1}, H_{l-1}, W_{l-1})
  E[l]      E^l      error filters carrying e^{l-1} up to l   same layout as W[l]; E = W^T is E[l] is W[l]
  phi, g             state activation (leaky ReLU), prediction activation (identity)
  beta, gamma        state correction rate and leak; T settling steps

Reading choices (docs/reading.md), one line each:
  - a settling step is synchronous: all predictions/errors from the current states, then all corrections.
  - E = W^T means the bottom-up message is conv2d (correlation) with the *same* stored kernels: the adjoint.
  - no phi'(z) factor in Eq. 2 (NGC); `cfg.pcn=True` multiplies it in and recovers PCN.
  - denoising: z^0 is the noisy image and, as in Algorithm 1 (whose lines 12-25 correct z^1..z^L only), it
    is never corrected; the output zbar^0 is the model's reconstruction of the noisy image. Sec. 4 says
    instead that z^0 is clamped at t = 1 only and then evolves by Eq. 2 (d^0 = -e^0, with the leak gamma):
    `cfg.denoise="free"` (and `cfg.gamma_bottom=False` without the leak). results/STUDY.md measures both:
    the free z^0 forgets its input as T grows; the clamped reading is the one that denoises.
  - the output image is zbar^0 recomputed from the final states after step T (`cfg.output="z"`: z^0).
  - dW and db are summed over the batch (`cfg.reduce="mean"`: averaged).
"""
from dataclasses import dataclass
import numpy as np

from . import checks, ops
from .config import Config

__all__ = ["Config", "phi", "phi_prime", "predict", "predictions_and_errors", "corrections", "correct", "energy",
           "heavy_ball", "init_states", "settle", "settle_steps", "SettleResult", "filter_updates", "init_params", "n_filter_weights",
           "draw_top", "bias_shape", "output_image", "error_filters", "precision", "leak_term", "bias_axes",
           "over_batch"]


# phi and phi' are defined once per language. To change the activation, change all four:
#   ngc_ref/model.py    phi, phi_prime                 NumPy: the definition every backend is tested against
#   ngc_cpu/simd.py     vphi, vphi_prime               Numba vectors (used by ngc_cpu/kernels.py)
#   kernels/common.cuh  leaky_relu, leaky_relu_prime   CUDA (ngc_step.cu, ngc_settle.cu, conv2d_weight_grad.cu)
#   bench/torch_ngc.py  phi, phi_prime                 PyTorch, the timing baseline
# then the independent oracle's own phi (tests/ref/test_ref_semantics.py), `make golden` (the golden file holds
# the reference's outputs), `make resources` (a kernel header changed), and, if its parameter changes,
# Config's `leak` (ngc_ref/config.py RANGES, --leak in convngc/cli.py). FC-NGC and the residual blocks use phi.
def phi(v, leak):
    """State activation: leaky ReLU, phi(v) = v if v > 0 else leak * v (leak = 1 gives the identity)."""
    return np.where(v > 0, v, leak * v)


def phi_prime(v, leak):
    """Derivative of phi, used only in PCN mode (cfg.pcn)."""
    return np.where(v > 0, v.dtype.type(1), v.dtype.type(leak))


def g(v):
    """Prediction activation g^l: the identity for every layer (Appendix B)."""
    return v


def bias_shape(cfg, l):
    """Shape of b^l, the bias of the prediction of layer l-1: (C_{l-1},), or (C_{l-1}, H_{l-1}, W_{l-1}) per pixel."""
    return checks.param_shape(cfg, "b", l)


def init_params(cfg, rng, dtype=np.float32):
    """Weights ~ N(0, w_std) (0.1 in the paper), biases 0 (Appendix B). E starts as a copy of W if learnable."""
    C, K = cfg.layer_channels, cfg.kernel
    W = [None] + [(rng.standard_normal((C[l], C[l - 1], K, K)) * cfg.w_std).astype(dtype)
                  for l in range(1, cfg.L + 1)]
    b = [None] + [np.zeros(bias_shape(cfg, l), dtype) for l in range(1, cfg.L + 1)]
    E = ([None] + [w.copy() for w in W[1:]]) if cfg.learn_E else None
    return {"W": W, "b": b, "E": E}


def n_filter_weights(params):
    """The paper's parameter count: filter weights only (9,225 for its configuration; biases not counted)."""
    return sum(w.size for w in params["W"][1:])


def predict(z_l, W_l, b, cfg, out_hw):
    """Eq. 1: zbar_j^{l-1} = g( sum_i W_ij^l (transposed conv, stride s) phi(z_i^l) + b_j )."""
    b_map = b[:, None, None] if b.ndim == 1 else b                          # (C_{l-1}, 1, 1) or (C_{l-1}, H, W)
    return g(ops.conv2d_transpose(phi(z_l, cfg.leak), W_l, cfg.stride, out_hw) + b_map)   # (B, C_{l-1}, H, W)


def predictions_and_errors(z, params, cfg):
    """Eq. 1 for every layer at once: zbar^{l-1} from z^l, and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0."""
    L = cfg.L
    zbar = [predict(z[l], params["W"][l], params["b"][l], cfg, z[l - 1].shape[2:]) for l in range(1, L + 1)]
    e = [z[l] - zbar[l] for l in range(L)] + [np.zeros_like(z[L])]
    return zbar, e


def error_filters(params):
    """E^l, the filters that carry e^{l-1} up to layer l: the learnable E when params has one, else W itself
    (E = W^T: the same stored kernels, read by the strided convolution; module docstring)."""
    return params["E"] if params.get("E") is not None else params["W"]


def precision(l, pi0):
    """pi^{l-1}, the precision of the error e^{l-1} in z^l's correction: pi0 for e^0 (< 1 in precision-weighted
    denoising, where e^0 carries the noise of the image: z^1 trusts it less), 1 above."""
    return pi0 if l == 1 else 1.0


def leak_term(zl, l, cfg):
    """gamma z^l, Eq. 2's leak: every free layer takes it, a free z^0 only if cfg.gamma_bottom (else none:
    z^0 <- z^0 + beta d^0)."""
    return 0.0 if (l == 0 and not cfg.gamma_bottom) else cfg.gamma * zl


def corrections(z, e, params, cfg, free_bottom=False, pi0=1.0):
    """Eq. 2's perturbations, for every free layer:
        d^l = -e^l + pi^{l-1} sum_j E_ji^l (strided conv, stride s) e_j^{l-1}     (times phi'(z^l) in PCN mode)
    with E^l = `error_filters` and pi^{l-1} = `precision`. d[0] is None while z^0 is clamped; with
    `free_bottom` (denoising after t = 1) d^0 = -e^0.
    """
    E = error_filters(params)
    d = [-e[0] if free_bottom else None]
    for l in range(1, cfg.L + 1):
        up = precision(l, pi0) * ops.conv2d(e[l - 1], E[l], cfg.stride)   # (B, C_l, H_l, W_l)
        if cfg.pcn:
            up = up * phi_prime(z[l], cfg.leak)
        d.append(-e[l] + up)
    return d


def correct(z, e, params, cfg, free_bottom=False, pi0=1.0):
    """Eq. 2's update, synchronously for every free layer: z^l <- z^l + beta d^l - gamma z^l (`leak_term`).
    A clamped layer (d^l is None: z^0 unless free_bottom) keeps its state. pi0: the precision of e^0 in d^1
    (`corrections`)."""
    d = corrections(z, e, params, cfg, free_bottom, pi0)
    return [zl if dl is None else zl + cfg.beta * dl - leak_term(zl, l, cfg)
            for l, (zl, dl) in enumerate(zip(z, d))]


def energy(e):
    """Eq. 3 as a positive energy per image: F = 1/2 sum_l ||e^l||^2 (the paper's ToD is -F). -> (B,)"""
    return sum(0.5 * np.sum(el.reshape(el.shape[0], -1) ** 2, axis=1) for el in e)


def init_states(x, params, cfg, z_top):
    """Algorithm 1, lines 3-10: z^L given (drawn from N(mu_z, sigma_z) by the caller, see `draw_top`),
    then the ancestral pass z^l = zbar^l for l = L-1 .. 1, and z^0 = x."""
    L = cfg.L
    z = [None] * (L + 1)
    z[0], z[L] = x, z_top
    for l in range(L - 1, 0, -1):
        z[l] = predict(z[l + 1], params["W"][l + 1], params["b"][l + 1], cfg, cfg.map_hw(l))
    return z


@dataclass
class SettleResult:
    """What settling returns: final states z, predictions zbar and errors e recomputed from them
    (zbar[0] is the output image), and the energy per image before each step and after the last: (T+1, B)."""
    z: list
    zbar: list
    e: list
    energy: np.ndarray


def heavy_ball(correct, momentum):
    """Eq. 2's update with heavy-ball momentum (Polyak), a solver for the same fixed point in fewer steps:
        z_{t+1} = correct(z_t, e_t) + momentum (z_t - z_{t-1}),     z_{-1} = z_0 (no velocity at the start)
    A fixed point of Eq. 2 (d^l = (gamma / beta) z^l) is one of this update and back. Precision-weighted denoising
    needs it: a small pi0 drives z^1 weakly, so plain steps creep along the slow directions (T ~ 1 / (beta pi0));
    momentum 0.9 reaches the same output in about 1/16 of the steps (docs/reading.md, "Momentum"). A clamped
    z^0 has no velocity and stays clamped. momentum 0 returns `correct` itself: Algorithm 1."""
    if not momentum:
        return correct
    prev = []

    def step(z, e):
        new = correct(z, e)
        if prev:
            new = [n + momentum * (zl - p) for n, zl, p in zip(new, z, prev[0])]
        prev[:] = [z]
        return new
    return step


def settle(params, x, cfg, z_top, T=None, clamp="always", pi0=1.0, momentum=0.0):
    """Algorithm 1: ancestral initialisation then T synchronous steps of Eq. 1 + Eq. 2.

    x: (B, C_0, H, W) image (the noisy one for denoising); z_top: (B, C_L, H_L, W_L) initial top state.
    clamp="always": z^0 = x throughout (reconstruction, training); clamp="first": z^0 = x at t = 1 only.
    pi0: the precision of the bottom error e^0 in z^1's correction (1: Algorithm 1; precision-weighted
    denoising passes cfg.pi0, see `corrections`). momentum: heavy-ball weight of each step (0: Algorithm 1;
    precision-weighted denoising passes cfg.momentum, see `heavy_ball`).
    """
    checks.check_clamp(clamp)
    checks.check_settle_inputs(params, x, cfg, z_top)
    T = cfg.T if T is None else checks.check_steps(T)
    pi0 = checks.check_precision(pi0)
    momentum = checks.check_momentum(momentum, clamp)
    z = init_states(x, params, cfg, z_top)                                 # lines 3-10
    return settle_steps(z, T, lambda z: predictions_and_errors(z, params, cfg),   # lines 11-26
                        heavy_ball(lambda z, e: correct(z, e, params, cfg, free_bottom=(clamp == "first"), pi0=pi0),
                                   momentum))


def settle_steps(z, T, predictions_and_errors, correct, energy=energy, stack=np.stack):
    """Algorithm 1 lines 11-26 from the initial states z: T synchronous steps, each every prediction and error
    from the same states (Eq. 1), the energy before the step (Eq. 3), then every correction (Eq. 2); then the
    predictions and errors of the final states. -> SettleResult.

    Every settle is this loop (Conv-NGC here, FC-NGC in fc.py, residual Conv-NGC in residual.py, the PyTorch
    baseline in bench/torch_ngc.py): they differ in Eq. 1 and Eq. 2 only, passed in as
    predictions_and_errors(z) -> (zbar, e) and correct(z, e) -> new states (and, for arrays other than NumPy's,
    their `energy` and `stack`).
    """
    trace = []
    for _ in range(T):
        zbar, e = predictions_and_errors(z)                              # all from the same states
        trace.append(energy(e))
        z = correct(z, e)
    zbar, e = predictions_and_errors(z)
    trace.append(energy(e))
    return SettleResult(z, zbar, e, stack(trace))


def filter_updates(res, params, cfg):
    """Sec. 3.2 / Algorithm 2, lines 9-10, from the final states and errors of `settle`:
        dW_ij^l = e_j^{l-1} (stride-1 corr) Dilate(phi(z_i^l), s)    summed over the batch
        db^l = sum of e^{l-1} over batch and space                   (over the batch only for a bias map: `bias_axes`)
        dE^l = lambda dW^l          (E stored in W's layout, so (dW_ij)^T is dW[i, j] itself)
    With cfg.reduce = "mean" every sum over the batch becomes a mean (`over_batch`).
    These are displacements (minus the energy gradient): descent adds them.
    """
    e, z, L, B = res.e, res.z, cfg.L, res.e[0].shape[0]
    dW = [None] + [over_batch(ops.conv2d_weight_grad(e[l - 1], phi(z[l], cfg.leak), cfg.kernel, cfg.stride), B, cfg)
                   for l in range(1, L + 1)]
    db = [None] + [over_batch(e[l - 1].sum(axis=bias_axes(cfg)), B, cfg) for l in range(1, L + 1)]
    dE = ([None] + [cfg.lam * w for w in dW[1:]]) if params.get("E") is not None else None
    return {"W": dW, "b": db, "E": dE}


def bias_axes(cfg):
    """The axes of e^{l-1} (B, C, H, W) that db^l sums: batch and space for one bias per map, the batch only
    for a bias map (cfg.bias = "pixel")."""
    return (0, 2, 3) if cfg.bias == "channel" else (0,)


def over_batch(total, B, cfg):
    """A sum over a batch of B images, as Algorithm 2 has it, or its mean with cfg.reduce = "mean"."""
    return total / B if cfg.reduce == "mean" else total


def denoise_clamp(cfg):
    """The `clamp` of a denoising settle: "always" (cfg.denoise = "precision", the default, or "clamped",
    Algorithm 1) or "first" (cfg.denoise = "free", Sec. 4: z^0 is the noisy image at t = 1 only)."""
    return "first" if cfg.denoise == "free" else "always"


def output_image(res, cfg):
    """The model's output image after settling: zbar^0 (cfg.output = "zbar", the default) or z^0 ("z")."""
    return res.zbar[0] if cfg.output == "zbar" else res.z[0]


def draw_top(cfg, batch, rng, dtype=np.float32):
    """Algorithm 1 line 4: z^L ~ N(mu_z, sigma_z) per element, drawn on the host so every backend
    starts from the same numbers."""
    shape = (batch, cfg.layer_channels[cfg.L]) + cfg.map_hw(cfg.L)
    return (cfg.mu_z + cfg.sigma_z * rng.standard_normal(shape)).astype(dtype)
