"""Residual Conv-NGC: predicting and correcting through residual blocks (Appendix C, Eqs. 7-12).

A block replaces the single transposed convolution of Eq. 1. Layer l predicts layer l-1 through a chain of
n transforms q = n, n-1, ..., 1 (the paper's example, Eq. 7, has n = 4 and skip length s = n + 1 = 5):

    a^{l,n}   = phi(z^l)                                               the input of the first transform
    a^{l,q-1} = post_q( sum_i W^{l,q}_ij (transposed conv) a^{l,q}_i )  q = n .. 2, the intermediate activities
    zbar^{l-1} = post_1( sum_i W^{l,1}_ij (transposed conv) a^{l,1}_i + b^{l-1} ) + skip(z^l)

with post_q from Eq. 7 (top to bottom): none, ReLU(Pool(.)), Pool(.), ReLU(.). Errors travel back through
intermediate perturbations that skip pooling and activations (Eqs. 8-11, E = W^T):

    d^{l,0} = e^{l-1};   d^{l,q} = E^{l,q} *_stride d^{l,q-1}  (q = 1 .. n-1);   d^l = -e^l + E^{l,n} *_s d^{l,n-1}

and every transform learns from the perturbation at its output and its own input activity (Eq. 12):

    dW^{l,q} = d^{l,q-1} *_1 Dilate(a^{l,q}, stride)

Eq. 7's labels (h^{l,q} is the OUTPUT of W^{l,q}) and Eq. 12's (h^{l,q} paired with W^{l,q} as its INPUT) are
one index apart; they are read as follows, one line each:
  - Eq. 12's phi^l(h^{l,q}) is the activity W^{l,q} multiplies in Eq. 7: phi(z^l) for q = n (Eq. 12's h^{l,s} =
    z^l), the chain's activity a^{l,q} (Eq. 7's h^{l,q+1}, already activated or not as printed) below that.
  - d^{l,q} lives at the input of W^{l,q} (Eq. 11: d^{l,1} = E^{l,1} e^{l-1}), so W^{l,q}'s output carries
    d^{l,q-1}, with d^{l,0} = e^{l-1} (Eq. 12).
  - "E_ji d_j" in Eqs. 8-11 is the strided convolution with the same kernels (E = W^T, as Conv-NGC's default);
    it skips Pool and ReLU, as the text says ("skips over non-learnable operations").
  - ⊙_s: only the transform that reads z^l (q = n) has the stride s and doubles the side; the others are
    stride 1, so every intermediate activity has layer l-1's size (a block must map H_l to H_{l-1}).
  - Pool: 3x3 max pooling at stride 1 with SAME padding (size kept): the paper gives no size or stride, and a
    shrinking pool would leave the error pathway of Eqs. 8-11, which skips it, with mismatched shapes.
  - ReLU inside the block is the plain ReLU printed in Eq. 7; "ReLU(z^l)" at its input is the model's phi.
  - skip "+ z^l_i" only type-checks when z^l and zbar^{l-1} have the same shape ("identity"); otherwise
    ("project", what "auto" picks for the paper's hierarchy) it is a learnable projection S^l (transposed conv,
    stride s, of phi(z^l): He et al.'s projection shortcut) updated by Algorithm 2's rule from e^{l-1}.
    As printed, Eq. 8 sends no error back through the skip.
  - intermediate channels C_l^q (not given): C_{l-1}, the channels of the layer the block predicts.
  - one bias per output map on the block's output (as Eq. 1); none inside (Eq. 7 prints none).
  - E = W^T only (no learnable E, no PCN factor): `base.learn_E` and `base.pcn` are refused.
With ops = ("none",) and skip = "none" the block is Eq. 1 and everything reduces to ngc_ref.model (tested).

feedback = "gradient" is not the paper's: the settle's d^l and the updates are then minus the exact gradient of
F = 1/2 sum ||e||^2 (through phi', Pool, ReLU and the skip; block_gradients), so a small enough beta makes every
settling step a descent, which Eq. 8 as printed is not (bench/residual_settle.py). ngc_cpu.residual computes
it too, from its compiled operators (not fused: a quick-row trial takes about 7x the printed one's time).
"""
from dataclasses import dataclass, field
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import ops, optim
from .checks import check_clamp
from .config import Config
from .model import SettleResult, energy, phi, phi_prime, settle_steps

__all__ = ["ResidualConfig", "EQ7_OPS", "init_params", "n_filter_weights", "maxpool_same", "predict_block",
           "predictions_and_errors", "corrections", "correct", "init_states", "settle", "filter_updates",
           "maxpool_same_adjoint", "block_gradients", "descent_steps", "init_state", "step"]

EQ7_OPS = ("none", "pool+relu", "pool", "relu")      # post-ops of W^{l,4}, W^{l,3}, W^{l,2}, W^{l,1} (Eq. 7)
_POSTS = ("none", "relu", "pool", "pool+relu")


@dataclass(frozen=True)
class ResidualConfig:
    base: Config = field(default_factory=Config)   # channels, sizes, K, s, T, beta, gamma, phi, init, optimiser
    ops: tuple = EQ7_OPS                           # post-op of each transform, from the one reading z^l down
    skip: str = "auto"                             # "auto", "identity", "project" or "none"
    pool: int = 3                                  # max-pool window (stride 1, SAME)
    feedback: str = "printed"                      # "printed" (Eqs. 8-12) or "gradient" (the energy's gradient)
    descent: bool = False                          # gradient only: a step that raises an image's energy is
                                                   # retaken at half its rate (descent_steps)

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops or any(o not in _POSTS for o in self.ops):
            raise ValueError("ResidualConfig: ops must be a non-empty sequence of %s, got %s" % (_POSTS, self.ops))
        if self.skip not in ("auto", "identity", "project", "none"):
            raise ValueError("ResidualConfig: skip must be auto, identity, project or none, got %r" % (self.skip,))
        if self.feedback not in ("printed", "gradient"):
            raise ValueError("ResidualConfig: feedback must be printed or gradient, got %r" % (self.feedback,))
        if self.descent and self.feedback != "gradient":
            raise ValueError("ResidualConfig: descent=True needs feedback='gradient' (Eq. 8 as printed is not a "
                             "gradient, so no step size makes its steps descend)")
        if self.pool < 1 or self.pool % 2 == 0:
            raise ValueError("ResidualConfig: pool must be a positive odd window, got %d" % self.pool)
        if self.base.learn_E or self.base.pcn:
            raise ValueError("ResidualConfig: the residual block uses E = W^T without phi' (learn_E and pcn "
                             "are not supported)")

    @property
    def n(self):
        """Chain length: the number of transforms in a block (Eq. 7: 4)."""
        return len(self.ops)

    def post(self, q):
        """Post-op of transform q (q = n reads z^l, q = 1 produces the prediction)."""
        return self.ops[self.n - q]

    def stride(self, q):
        return self.base.stride if q == self.n else 1

    def skip_kind(self, l):
        if self.skip != "auto":
            return self.skip
        b = self.base
        same = b.stride == 1 and b.layer_channels[l] == b.layer_channels[l - 1]
        return "identity" if same else "project"


def _channels(cfg, l, q):
    """(in, out) channels of W^{l,q}: in = C_l for q = n, out = C_{l-1}; intermediate maps have C_{l-1}."""
    C = cfg.base.layer_channels
    return (C[l] if q == cfg.n else C[l - 1]), C[l - 1]


def init_params(cfg, rng, dtype=np.float32):
    """W[l][q-1] = W^{l,q} ~ N(0, w_std), shape (C_in, C_out, K, K); S[l] the projection skip (or None); b = 0."""
    b_, K = cfg.base, cfg.base.kernel
    W, S, bias = [None], [None], [None]
    for l in range(1, b_.L + 1):
        W.append([(rng.standard_normal(_channels(cfg, l, q) + (K, K)) * b_.w_std).astype(dtype)
                  for q in range(1, cfg.n + 1)])
        if cfg.skip_kind(l) == "identity" and (b_.stride != 1 or b_.layer_channels[l] != b_.layer_channels[l - 1]):
            raise ValueError("ResidualConfig: an identity skip needs z^%d and zbar^%d of the same shape (stride 1, "
                             "equal channels); use skip='project'" % (l, l - 1))
        S.append((rng.standard_normal((b_.layer_channels[l], b_.layer_channels[l - 1], K, K)) * b_.w_std)
                 .astype(dtype) if cfg.skip_kind(l) == "project" else None)
        bias.append(np.zeros(b_.layer_channels[l - 1], dtype))
    return {"W": W, "S": S, "b": bias}


def n_filter_weights(params):
    return sum(w.size for ws in params["W"][1:] for w in ws) + sum(s.size for s in params["S"][1:] if s is not None)


def maxpool_same(x, k):
    """Max pooling, k x k window, stride 1, SAME padding with -inf (the map keeps its size)."""
    if k == 1:
        return x
    p = k // 2
    xp = np.full(x.shape[:2] + (x.shape[2] + 2 * p, x.shape[3] + 2 * p), -np.inf, x.dtype)
    xp[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
    return sliding_window_view(xp, (k, k), axis=(2, 3)).max(axis=(-2, -1))   # (B, C, H, W)


def _post(v, kind, k):
    if "pool" in kind:
        v = maxpool_same(v, k)
    if "relu" in kind:
        v = np.maximum(v, 0, out=v) if v.flags.writeable else np.maximum(v, 0)
    return v


def predict_block(z_l, params, cfg, l, out_hw):
    """Eq. 7 for one block: zbar^{l-1} from z^l, and the input activity a^{l,q} of every transform (q = 1..n)."""
    W, b = params["W"][l], params["b"][l]
    a = phi(z_l, cfg.base.leak)                                                # a^{l,n}
    acts = [None] * (cfg.n + 1)
    for q in range(cfg.n, 0, -1):
        acts[q] = a
        pre = ops.conv2d_transpose(a, W[q - 1], cfg.stride(q), out_hw)          # (B, C_out, H_{l-1}, W_{l-1})
        if q == 1:
            pre += b[None, :, None, None]
        a = _post(pre, cfg.post(q), cfg.pool)
    kind = cfg.skip_kind(l)
    if kind == "identity":
        a = a + z_l
    elif kind == "project":
        a = a + ops.conv2d_transpose(acts[cfg.n], params["S"][l], cfg.base.stride, out_hw)
    return a, acts


def predictions_and_errors(z, params, cfg, with_acts=False):
    """zbar^{l-1} from every block, e^{l-1} = z^{l-1} - zbar^{l-1}, e^L = 0 (and the blocks' activities)."""
    L = cfg.base.L
    out = [predict_block(z[l], params, cfg, l, z[l - 1].shape[2:]) for l in range(1, L + 1)]
    zbar = [o[0] for o in out]
    e = [z[l] - zbar[l] for l in range(L)] + [np.zeros_like(z[L])]
    return (zbar, e, [None] + [o[1] for o in out]) if with_acts else (zbar, e)


def perturbations(e_below, params, cfg, l):
    """Eqs. 11-9: d^{l,0} = e^{l-1}, d^{l,q} = E^{l,q} *_stride d^{l,q-1} for q = 1..n-1 (skipping Pool, ReLU)."""
    d = [e_below]
    for q in range(1, cfg.n):
        d.append(ops.conv2d(d[-1], params["W"][l][q - 1], cfg.stride(q)))
    return d                                                                    # d[q] = d^{l,q}, q = 0..n-1


def maxpool_same_adjoint(x, g, k):
    """The adjoint of maxpool_same at x: each output's g goes back to its window's largest input (the first in
    row-major order on a tie, as numpy's argmax). -> an array shaped as x."""
    if k == 1:
        return g
    p = k // 2
    B, C, H, W = x.shape
    xp = np.full((B, C, H + 2 * p, W + 2 * p), -np.inf, x.dtype)
    xp[:, :, p:p + H, p:p + W] = x
    arg = sliding_window_view(xp, (k, k), axis=(2, 3)).reshape(B, C, H, W, k * k).argmax(axis=-1)
    out = np.zeros_like(xp)
    for i in range(k):                                  # window offset (i, j): the outputs whose argmax it is
        for j in range(k):
            out[:, :, i:i + H, j:j + W] += np.where(arg == i * k + j, g, 0)
    return out[:, :, p:p + H, p:p + W]


def block_gradients(z_l, e_below, params, cfg, l, out_hw, conv=ops, pool=maxpool_same, pool_adjoint=None):
    """feedback="gradient": minus the gradient of F = 1/2 sum ||e||^2 through block l, exactly (phi', Pool's
    argmax routing, ReLU's mask, the skip): -> (J^T e^{l-1}, the term the block adds to d^l; [dW^{l,q}, q = 1..n];
    dS^l or None), the weight terms as displacements that descent adds, like filter_updates'. Not in the paper:
    Eqs. 8-12 skip Pool and ReLU and send nothing back through the skip, and that settle is not a descent
    (results/residual-settle.json). conv, pool, pool_adjoint: the operators (ngc_cpu.residual passes its
    compiled ones; default: this reference's)."""
    pool_adjoint = pool_adjoint or maxpool_same_adjoint
    W, K = params["W"][l], cfg.base.kernel
    a = phi(z_l, cfg.base.leak)
    acts, pres, pooled = [None] * (cfg.n + 1), [None] * (cfg.n + 1), [None] * (cfg.n + 1)
    for q in range(cfg.n, 0, -1):
        acts[q] = a
        pre = conv.conv2d_transpose(a, W[q - 1], cfg.stride(q), out_hw)
        if q == 1:
            pre += params["b"][l][None, :, None, None]
        pres[q] = pre
        pooled[q] = pool(pre, cfg.pool) if "pool" in cfg.post(q) else pre
        a = np.maximum(pooled[q], 0) if "relu" in cfg.post(q) else pooled[q]
    g, dW = e_below, [None] * cfg.n
    for q in range(1, cfg.n + 1):                       # from the block's output back to phi(z^l)
        kind = cfg.post(q)
        if "relu" in kind:
            g = g * (pooled[q] > 0)
        if "pool" in kind:
            g = pool_adjoint(pres[q], g, cfg.pool)
        dW[q - 1] = conv.conv2d_weight_grad(g, acts[q], K, cfg.stride(q))
        g = conv.conv2d(g, W[q - 1], cfg.stride(q))
    kind, dS = cfg.skip_kind(l), None
    if kind == "project":
        dS = conv.conv2d_weight_grad(e_below, acts[cfg.n], K, cfg.base.stride)
        g = g + conv.conv2d(e_below, params["S"][l], cfg.base.stride)
    g = g * phi_prime(z_l, cfg.base.leak)
    if kind == "identity":
        g = g + e_below
    return g, dW, dS


def corrections(z, e, params, cfg, free_bottom=False):
    """Eq. 8: d^l = -e^l + E^{l,n} *_s d^{l,n-1}; d^0 = -e^0 when the bottom is free (denoising). With
    feedback="gradient", d^l = -e^l + J^T e^{l-1} (block_gradients): minus the energy's gradient."""
    d = [-e[0] if free_bottom else None]
    for l in range(1, cfg.base.L + 1):
        if cfg.feedback == "gradient":
            d.append(block_gradients(z[l], e[l - 1], params, cfg, l, z[l - 1].shape[2:])[0] - e[l])
            continue
        chain = perturbations(e[l - 1], params, cfg, l)
        up = ops.conv2d(chain[cfg.n - 1], params["W"][l][cfg.n - 1], cfg.base.stride)   # (B, C_l, H_l, W_l)
        up -= e[l]
        d.append(up)
    return d


def correct(z, e, params, cfg, free_bottom=False):
    """z^l <- z^l + beta d^l - gamma z^l for every free layer, synchronously (Eq. 2 with Eq. 8's d^l)."""
    beta, gamma = z[0].dtype.type(cfg.base.beta), z[0].dtype.type(cfg.base.gamma)
    d = corrections(z, e, params, cfg, free_bottom)
    return [zl if dl is None else zl + beta * dl - gamma * zl for zl, dl in zip(z, d)]


def init_states(x, params, cfg, z_top):
    """Algorithm 1 lines 3-10 through the blocks: z^L given, z^l = zbar^l for l = L-1..1, z^0 = x."""
    L = cfg.base.L
    z = [None] * (L + 1)
    z[0], z[L] = x, z_top
    for l in range(L - 1, 0, -1):
        z[l] = predict_block(z[l + 1], params, cfg, l + 1, cfg.base.map_hw(l))[0]
    return z


MAX_HALVINGS = 30      # descent_steps: an image whose step still climbs at beta / 2^30 stays where it is


def descent_steps(z, T, predictions_and_errors, corrections, cfg, free_bottom, energy=energy):
    """descent=True (not the paper's): T steps of Eq. 2 with the exact gradient that never raise any image's
    objective G = F + gamma / (2 beta) sum ||z^l||^2 over its free layers, the function such a step descends.
    A step that would raise an image's G (beyond rounding: 100 eps relative) is retaken for that image at half
    its beta and half its gamma, so G and its minimum stay the same, and the halved rate is kept for the rest of
    the settle; after MAX_HALVINGS the image stays put. Learning raises the blocks' gain past the stability edge
    of a fixed beta (results/residual-gradient.jsonl); this keeps each settle a descent at any gain, at the cost
    of a forward pass per retaken step. With no step retaken it is settle_steps exactly (tested).
    -> SettleResult; its energy is F before each step and after the last, as settle_steps'."""
    beta, gamma = cfg.base.beta, cfg.base.gamma
    B, dt = z[0].shape[0], z[0].dtype
    rtol = 100 * np.finfo(dt).eps

    def objective(z, e):
        leak = sum(np.sum(np.square(z[l].reshape(B, -1), dtype=np.float64), axis=1)
                   for l in range(len(z)) if l or free_bottom)
        return np.asarray(energy(e), np.float64) + gamma / (2 * beta) * leak

    def pick(mask, a, b):                       # per image: a where mask, else b
        return a if a is b else np.where(mask.reshape((B,) + (1,) * (a.ndim - 1)), a, b)

    zbar, e = predictions_and_errors(z)
    G, rate, trace = objective(z, e), np.ones(B), []
    for _ in range(T):
        trace.append(energy(e))
        d = corrections(z, e)
        todo = np.ones(B, bool)
        for _ in range(MAX_HALVINGS + 1):
            r = rate.astype(dt).reshape((B, 1, 1, 1))
            cand = [zl if dl is None else zl + (dt.type(beta) * r) * dl - (dt.type(gamma) * r) * zl
                    for zl, dl in zip(z, d)]
            zbar_c, e_c = predictions_and_errors(cand)
            G_c = objective(cand, e_c)
            take = todo & (G_c <= G + rtol * np.abs(G))          # NaN / Inf never pass
            z = [pick(take, c, o) for c, o in zip(cand, z)]
            zbar = [pick(take, c, o) for c, o in zip(zbar_c, zbar)]
            e = [pick(take, c, o) for c, o in zip(e_c, e)]
            G = np.where(take, G_c, G)
            todo &= ~take
            if not todo.any():
                break
            rate[todo] /= 2
    trace.append(energy(e))
    return SettleResult(z, zbar, e, np.stack(trace))


def settle(params, x, cfg, z_top, T=None, clamp="always"):
    """Algorithm 1 with residual blocks; the same contract as ngc_ref.model.settle (descent=True: descent_steps)."""
    check_clamp(clamp)
    T = cfg.base.T if T is None else T
    z = init_states(x, params, cfg, z_top)
    if cfg.descent:
        return descent_steps(z, T, lambda z: predictions_and_errors(z, params, cfg),
                             lambda z, e: corrections(z, e, params, cfg, free_bottom=(clamp == "first")), cfg,
                             clamp == "first")
    return settle_steps(z, T, lambda z: predictions_and_errors(z, params, cfg),
                        lambda z, e: correct(z, e, params, cfg, free_bottom=(clamp == "first")))


def filter_updates(res, params, cfg):
    """Eq. 12 from the final states: dW^{l,q} = d^{l,q-1} *_1 Dilate(a^{l,q}, stride), d^{l,0} = e^{l-1};
    dS^l = e^{l-1} *_1 Dilate(phi(z^l), s) (Algorithm 2's rule for the projection skip); db^{l-1} = sum e^{l-1}.
    Summed over the batch; displacements that descent adds (as ngc_ref.model.filter_updates). With
    feedback="gradient": minus the energy's exact gradient for every kernel (block_gradients)."""
    K = cfg.base.kernel
    if cfg.feedback == "printed":
        acts = predictions_and_errors(res.z, params, cfg, with_acts=True)[2]
    dW, dS, db = [None], [None], [None]
    for l in range(1, cfg.base.L + 1):
        db.append(res.e[l - 1].sum(axis=(0, 2, 3)))
        if cfg.feedback == "gradient":
            _, w, s_ = block_gradients(res.z[l], res.e[l - 1], params, cfg, l, res.z[l - 1].shape[2:])
            dW.append(w)
            dS.append(s_)
            continue
        d = perturbations(res.e[l - 1], params, cfg, l)
        dW.append([ops.conv2d_weight_grad(d[q - 1], acts[l][q], K, cfg.stride(q)) for q in range(1, cfg.n + 1)])
        dS.append(None if params["S"][l] is None else
                  ops.conv2d_weight_grad(res.e[l - 1], acts[l][cfg.n], K, cfg.base.stride))
    return {"W": dW, "S": dS, "b": db}


def _flat(tree):
    """{"W": [None, [..q..]], "S": [...], "b": [...]} -> ngc_ref.optim's layout {"W": [None, k, ...], "b": ...}."""
    kernels = [w for ws in tree["W"][1:] for w in ws] + [s for s in tree["S"][1:] if s is not None]
    return {"W": [None] + kernels, "b": list(tree["b"]), "E": None}


def init_state(params):
    return optim.init_state(_flat(params))


def step(params, deltas, opt_state, cfg):
    """ngc_ref.optim.step on every kernel of every block (Adam or the normalised step, then each K x K kernel
    projected to norm <= max_kernel_norm), in place."""
    flat = _flat(params)
    optim.step(flat, _flat(deltas), opt_state, cfg.base)
    it = iter(flat["W"][1:])
    for l in range(1, cfg.base.L + 1):
        params["W"][l] = [next(it) for _ in range(cfg.n)]
    for l in range(1, cfg.base.L + 1):
        if params["S"][l] is not None:
            params["S"][l] = next(it)
    params["b"] = flat["b"]
    return params
