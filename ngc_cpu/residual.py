"""ngc_ref.residual on the CPU, fast: residual Conv-NGC (Appendix C, Eqs. 7-12), settling and filter updates.

Same names, arguments and results as ngc_ref.residual (its docstring reads the appendix line by line): NumPy
arrays in NCHW, float32 or float64, every ResidualConfig (the post-ops of the chain, skip none / identity /
project / auto, the pool window, any channels, kernel, stride and map sizes the base Config accepts).
What the reference does not read, this does not either: the bias is one value per map (the reference has
no per-pixel bias), dW is summed over the batch whatever `reduce` says, and a free z^0 leaks by gamma
whatever `gamma_bottom` says.

How it is fast (res_kernels.py): the tiles, vectors and gathers of ngc_cpu.model (kernels.py), with one
thread running all of Algorithm 1 for a tile of 16 images (8 in float64): every block's chain of transposed
convolutions, its pools and ReLUs, the skip, the perturbations of Eqs. 8-11 and the corrections, for all T
steps, with the states and two maps of work in the caches. Filter updates (Eq. 12) are made per tile in
one pass per block and summed tile after tile in float64 (nothing depends on the thread count).

The single-block helpers (predict_block, perturbations, corrections, maxpool_same) are built from the
compiled operators (ngc_cpu.ops) for testing and inspection; settle, correct, init_states,
predictions_and_errors and filter_updates run the fused tile kernels. The optimiser step is the
reference's own (a few thousand weights: microseconds, see ngc_cpu/optim.py).

feedback="gradient" (ngc_ref.residual.block_gradients: the energy's exact gradient, not the paper's) runs
unfused: the fused kernels predict, and each step's corrections and the updates come from the compiled
operators on the whole batch plus a compiled pool adjoint. A quick-row trial takes about 7x the printed one's
time (results/README.md, "Residual Conv-NGC"). descent=True settles by the reference's descent_steps with
this backend's operators.
"""
import numpy as np
from numba import njit

from ngc_ref import checks
from ngc_ref.model import SettleResult, settle_steps
from ngc_ref.residual import EQ7_OPS, ResidualConfig, _channels, init_params, init_state, n_filter_weights, step
from ngc_ref.residual import block_gradients as ref_block_gradients, descent_steps as ref_descent_steps

from . import ops, res_kernels as rk, threads
from .kernels import _opts, padded
from .layout import from_tiles, geometry, lanes, n_tiles, pack_conv, pack_predict, to_tiles
from .model import energy, phi

__all__ = ["ResidualConfig", "EQ7_OPS", "init_params", "n_filter_weights", "maxpool_same", "predict_block",
           "predictions_and_errors", "perturbations", "corrections", "correct", "init_states", "settle",
           "filter_updates", "maxpool_same_adjoint", "block_gradients", "init_state", "step", "energy", "DTYPES"]

DTYPES = (np.float32, np.float64)


# ---- checks ------------------------------------------------------------------------------------------------

def _dtype_of(a, where, what):
    if not (hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError("%s: %s must be an array, got %s" % (where, what, type(a).__name__))
    dt = np.dtype(a.dtype)
    if dt not in [np.dtype(d) for d in DTYPES]:
        raise TypeError("%s: %s has dtype %s; the cpu backend computes in float32 or float64" % (where, what, dt))
    return dt


def check_params(params, cfg, where="settle"):
    """params as ngc_ref.residual.init_params makes them for cfg: {"W": [None, [W^{l,1} .. W^{l,n}] ...],
    "S": [None, S^l or None ...], "b": [None, b^l ...]}, one dtype (float32 or float64), finite. Returns the dtype."""
    if not isinstance(params, dict) or any(k not in params for k in ("W", "S", "b")):
        raise TypeError("%s: params must be a dict with keys 'W', 'S' and 'b', as made by "
                        "ngc_ref.residual.init_params" % where)
    base, L, n = cfg.base, cfg.base.L, cfg.n
    C, K = base.layer_channels, base.kernel
    dtype = None

    def one(a, what, shape):
        nonlocal dtype
        dt = _dtype_of(a, where, what)
        if tuple(a.shape) != shape:
            raise ValueError("%s: %s has shape %s, the config needs %s" % (where, what, tuple(a.shape), shape))
        if dtype is None:
            dtype = dt
        elif dt != dtype:
            raise TypeError("%s: %s is %s but params['W'][1][0] is %s; pass every array in one dtype"
                            % (where, what, dt, dtype))
        if not np.isfinite(a).all():
            raise ValueError("%s: %s contains NaN or Inf" % (where, what))

    for key in ("W", "S", "b"):
        if not isinstance(params[key], (list, tuple)) or len(params[key]) != L + 1:
            raise ValueError("%s: params[%r] must be a list of L + 1 = %d entries (index 0 unused)" % (where, key, L + 1))
    for l in range(1, L + 1):
        ws = params["W"][l]
        if not isinstance(ws, (list, tuple)) or len(ws) != n:
            raise ValueError("%s: params['W'][%d] must list the block's n = %d kernels W^{%d,1..%d}"
                             % (where, l, n, l, n))
        for q in range(1, n + 1):
            one(ws[q - 1], "params['W'][%d][%d]" % (l, q - 1), _channels(cfg, l, q) + (K, K))
        kind = cfg.skip_kind(l)
        if kind == "identity" and (base.stride != 1 or C[l] != C[l - 1]):
            raise ValueError("%s: an identity skip needs z^%d and zbar^%d of the same shape (stride 1, equal "
                             "channels); use skip='project'" % (where, l, l - 1))
        if kind == "project":
            if params["S"][l] is None:
                raise ValueError("%s: params['S'][%d] is None but the config's skip for block %d is 'project'"
                                 % (where, l, l))
            one(params["S"][l], "params['S'][%d]" % l, (C[l], C[l - 1], K, K))
        elif params["S"][l] is not None:
            raise ValueError("%s: params['S'][%d] is given but the config's skip for block %d is %r"
                             % (where, l, l, kind))
        one(params["b"][l], "params['b'][%d]" % l, (C[l - 1],))
    return dtype


def _check_states(z, cfg, what, where, dtype):
    base = cfg.base
    if len(z) != base.L + 1:
        raise ValueError("%s: %s must hold L + 1 = %d layers, got %d" % (where, what, base.L + 1, len(z)))
    B = z[0].shape[0]
    if B == 0:
        raise ValueError("%s: the batch is empty" % where)
    for l in range(base.L + 1):
        want = (B, base.layer_channels[l]) + base.map_hw(l)
        if tuple(z[l].shape) != want:
            raise ValueError("%s: %s[%d] has shape %s, the config needs %s" % (where, what, l, tuple(z[l].shape), want))
        if np.dtype(z[l].dtype) != dtype:
            raise TypeError("%s: %s[%d] is %s but the parameters are %s; pass one dtype" % (where, what, l, z[l].dtype,
                                                                                            dtype))
    return B


def _check_inputs(params, x, cfg, z_top, where):
    dtype = check_params(params, cfg, where)
    base = cfg.base
    C, L = base.layer_channels, base.L
    for what, a, want in (("x", x, (C[0],) + base.map_hw(0)), ("z_top", z_top, (C[L],) + base.map_hw(L))):
        if not hasattr(a, "shape"):
            raise TypeError("%s: %s must be an array, got %s" % (where, what, type(a).__name__))
        _dtype_of(a, where, what)
        if a.ndim != 4 or tuple(a.shape[1:]) != want or a.shape[0] != x.shape[0]:
            raise ValueError("%s: %s has shape %s, the config needs (B,) + %s with the batch of x"
                             % (where, what, tuple(a.shape), want))
        if np.dtype(a.dtype) != dtype:
            raise TypeError("%s: %s is %s but the parameters are %s; pass one dtype" % (where, what, a.dtype, dtype))
        if not np.isfinite(a).all():
            raise ValueError("%s: %s contains NaN or Inf" % (where, what))
    if x.shape[0] == 0:
        raise ValueError("%s: the batch is empty (x has shape %s)" % (where, tuple(x.shape)))
    return dtype


# ---- the tiles of one batch --------------------------------------------------------------------------------

class _Run:
    """States in tiles (z, e, zbar as ngc_cpu.model) and the packed block parameters: res_kernels' arguments."""

    def __init__(self, params, cfg, B, dtype):
        base = cfg.base
        self.cfg, self.B, self.dtype = cfg, B, np.dtype(dtype)
        L, n, V = base.L, cfg.n, lanes(dtype)
        self.V, self.L, self.n = V, L, n
        self.geo, P = geometry(base, V)
        self.nt = n_tiles(B, V)
        self.z = np.empty((self.nt, P), dtype)
        self.e = np.empty((self.nt, P), dtype)
        self.zb = np.empty((self.nt, P), dtype)
        self.region(self.e, L)[:] = 0                        # e^L: the top has no prediction
        size = [int(np.prod(self.geo[l, :3])) * V for l in range(L + 1)]
        self.nph, self.M = max(size[1:]), max(size[:-1])
        self.pad1 = (base.kernel - 1) // 2                   # SAME at stride 1
        self.woff = np.zeros((L + 1, n + 1), np.int64)
        self.eoff = np.zeros((L + 1, n + 1), np.int64)
        self.boff = np.zeros(L + 1, np.int64)
        Wp, Ec, bp, sizes = [], [], [], [0, 0, 0]
        for l in range(1, L + 1):
            for q in range(0, n + 1):
                w = params["S"][l] if q == 0 else params["W"][l][q - 1]
                if w is None:
                    continue
                self.woff[l, q] = sizes[0]
                Wp.append(pack_predict(w, dtype))
                sizes[0] += Wp[-1].size
                if q:
                    self.eoff[l, q] = sizes[1]
                    Ec.append(pack_conv(w, dtype))
                    sizes[1] += Ec[-1].size
            b = np.zeros(padded(base.layer_channels[l - 1]), dtype)
            b[:base.layer_channels[l - 1]] = params["b"][l]
            self.boff[l] = sizes[2]
            bp.append(b)
            sizes[2] += b.size
        self.Wp, self.Ec, self.bp = np.concatenate(Wp), np.concatenate(Ec), np.concatenate(bp)
        self.posts = np.array([0] + [rk.POST_CODES[cfg.post(q)] for q in range(1, n + 1)], np.int64)
        self.skipk = np.array([0] + [rk.SKIP_CODES[cfg.skip_kind(l)] for l in range(1, L + 1)], np.int64)
        # leak, beta, gamma, and the leak of a free z^0: gamma too (ngc_ref.residual.correct does not read
        # gamma_bottom)
        self.consts = np.array([base.leak, base.beta, base.gamma, base.gamma], dtype)

    def region(self, buf, l):
        C, H, W, off = (int(v) for v in self.geo[l, :4])
        return buf[:, off:off + C * H * W * self.V]

    def put(self, buf, l, a):
        to_tiles(np.ascontiguousarray(a), self.V, out=self.region(buf, l))

    def get(self, buf, l):
        C, H, W = (int(v) for v in self.geo[l, :3])
        return from_tiles(self.region(buf, l), self.B, (C, H, W), self.V)

    def blocks(self):
        """The arguments every kernel shares: geo .. pool."""
        b = self.cfg.base
        return (self.geo, self.L, self.n, self.posts, self.skipk, self.Wp, self.woff, self.bp, self.boff, self.Ec,
                self.eoff, b.kernel, b.stride, self.pad1, self.cfg.pool)

    def run(self, T=0, free_bottom=False, init=False, correct_first=False, final=False):
        en = np.zeros((self.nt, T + 1, self.V), np.float64)
        threads.run(rk.settle_tiles, self.nt, self.z, self.e, self.zb, en, *self.blocks(), self.consts, T,
                    free_bottom, self.nph, self.M, init, correct_first, final, self.V)
        return en.transpose(1, 0, 2).reshape(T + 1, self.nt * self.V)[:, :self.B].astype(self.dtype)


# ---- the building blocks, from the compiled operators ------------------------------------------------------

def maxpool_same(x, k):
    """Max pooling, k x k window, stride 1, SAME padding with -inf (the map keeps its size): (B, C, H, W)."""
    if k == 1:
        return x
    dt = _dtype_of(x, "maxpool_same", "x")
    V = lanes(dt)
    B, C, H, W = x.shape
    src = to_tiles(np.ascontiguousarray(x), V)
    out = np.empty_like(src)
    threads.run(_pool_tiles, src.shape[0], src, out, C, H, W, k, V)
    return from_tiles(out, B, (C, H, W), V)


def _pool_tiles(t0, t1, src, out, C, H, W, k, V):
    for t in range(t0, t1):
        rk.pool_map(src[t], 0, out[t], 0, C, H, W, k, False, V)


def _post(v, kind, k):
    if "pool" in kind:
        v = maxpool_same(v, k)
    if "relu" in kind:
        v = np.maximum(v, 0)
    return v


def predict_block(z_l, params, cfg, l, out_hw):
    """Eq. 7 for one block: zbar^{l-1} from z^l, and the input activity a^{l,q} of every transform (q = 1..n)."""
    W, b = params["W"][l], params["b"][l]
    a = phi(z_l, cfg.base.leak)
    acts = [None] * (cfg.n + 1)
    for q in range(cfg.n, 0, -1):
        acts[q] = a
        pre = ops.conv2d_transpose(np.ascontiguousarray(a), W[q - 1], cfg.stride(q), out_hw)
        if q == 1:
            pre += b[None, :, None, None]
        a = _post(pre, cfg.post(q), cfg.pool)
    kind = cfg.skip_kind(l)
    if kind == "identity":
        a = a + z_l
    elif kind == "project":
        a = a + ops.conv2d_transpose(np.ascontiguousarray(acts[cfg.n]), params["S"][l], cfg.base.stride, out_hw)
    return a, acts


def perturbations(e_below, params, cfg, l):
    """Eqs. 11-9: d^{l,0} = e^{l-1}, d^{l,q} = E^{l,q} *_1 d^{l,q-1} for q = 1..n-1 (skipping Pool, ReLU)."""
    d = [e_below]
    for q in range(1, cfg.n):
        d.append(ops.conv2d(np.ascontiguousarray(d[-1]), params["W"][l][q - 1], cfg.stride(q)))
    return d


def corrections(z, e, params, cfg, free_bottom=False):
    """Eq. 8: d^l = -e^l + E^{l,n} *_s d^{l,n-1}; d^0 = -e^0 when the bottom is free (denoising). With
    feedback="gradient", d^l = -e^l + J^T e^{l-1} (block_gradients)."""
    if cfg.feedback == "gradient":
        return _gradient_corrections(z, e, params, cfg, free_bottom)
    d = [-e[0] if free_bottom else None]
    for l in range(1, cfg.base.L + 1):
        chain = perturbations(e[l - 1], params, cfg, l)
        d.append(ops.conv2d(np.ascontiguousarray(chain[cfg.n - 1]), params["W"][l][cfg.n - 1], cfg.base.stride)
                 - e[l])
    return d


# ---- feedback="gradient": the energy's exact gradient, from the compiled operators -------------------------
# Not fused: each settling step runs the block's transforms and their adjoints as separate compiled operators
# (ngc_cpu.ops) on the whole batch, with the pool's adjoint below; the predictions and errors are the fused
# kernels'. The math, line by line, is ngc_ref.residual.block_gradients.

@njit(**_opts)
def _pool_adjoint(x, g, k, out):
    """out += the adjoint of maxpool_same at x applied to g, all (B, C, H, W): each output's g goes to its
    window's largest input, the first in row-major order on a tie (the reference's argmax)."""
    B, C, H, W = x.shape
    p = k // 2
    for b in range(B):
        for c in range(C):
            for Y in range(H):
                for X in range(W):
                    by, bx, m = Y, X, x[b, c, Y, X]
                    for yy in range(max(Y - p, 0), min(Y + p + 1, H)):
                        for xx in range(max(X - p, 0), min(X + p + 1, W)):
                            v = x[b, c, yy, xx]
                            if v > m or (v == m and (yy < by or (yy == by and xx < bx))):
                                by, bx, m = yy, xx, v
                    out[b, c, by, bx] += g[b, c, Y, X]


def maxpool_same_adjoint(x, g, k):
    """The adjoint of maxpool_same at x (== ngc_ref.residual.maxpool_same_adjoint)."""
    if k == 1:
        return g
    out = np.zeros_like(g)
    _pool_adjoint(np.ascontiguousarray(x), np.ascontiguousarray(g), k, out)
    return out


def block_gradients(z_l, e_below, params, cfg, l, out_hw):
    """== ngc_ref.residual.block_gradients, run with the compiled operators: (J^T e^{l-1}, [dW^{l,q}], dS^l)."""
    return ref_block_gradients(z_l, e_below, params, cfg, l, out_hw, conv=ops, pool=maxpool_same,
                               pool_adjoint=maxpool_same_adjoint)


def _gradient_corrections(z, e, params, cfg, free_bottom):
    return [-e[0] if free_bottom else None] + [
        block_gradients(z[l], e[l - 1], params, cfg, l, z[l - 1].shape[2:])[0] - e[l]
        for l in range(1, cfg.base.L + 1)]


def _gradient_correct(z, e, params, cfg, free_bottom):
    beta, gamma = z[0].dtype.type(cfg.base.beta), z[0].dtype.type(cfg.base.gamma)
    d = _gradient_corrections(z, e, params, cfg, free_bottom)
    return [zl if dl is None else zl + beta * dl - gamma * zl for zl, dl in zip(z, d)]


# ---- the fused kernels --------------------------------------------------------------------------------------

def init_states(x, params, cfg, z_top):
    """Algorithm 1 lines 3-10 through the blocks: z^L given, z^l = zbar^l for l = L-1..1, z^0 = x."""
    dtype = _check_inputs(params, x, cfg, z_top, "init_states")
    L = cfg.base.L
    r = _Run(params, cfg, x.shape[0], dtype)
    r.put(r.z, 0, x)
    r.put(r.z, L, z_top)
    r.run(init=True)
    return [x.copy()] + [r.get(r.z, l) for l in range(1, L)] + [z_top.copy()]


def predictions_and_errors(z, params, cfg, with_acts=False):
    """zbar^{l-1} from every block, e^{l-1} = z^{l-1} - zbar^{l-1}, e^L = 0 (and, with_acts, the blocks'
    activities, from predict_block)."""
    dtype = check_params(params, cfg, "predictions_and_errors")
    B = _check_states(z, cfg, "z", "predictions_and_errors", dtype)
    L = cfg.base.L
    r = _Run(params, cfg, B, dtype)
    for l in range(L + 1):
        r.put(r.z, l, z[l])
    r.run(final=True)
    zbar = [r.get(r.zb, l) for l in range(L)]
    e = [r.get(r.e, l) for l in range(L)] + [np.zeros_like(z[L])]
    if not with_acts:
        return zbar, e
    acts = [None] + [predict_block(z[l], params, cfg, l, z[l - 1].shape[2:])[1] for l in range(1, L + 1)]
    return zbar, e, acts


def correct(z, e, params, cfg, free_bottom=False):
    """z^l <- z^l + beta d^l - gamma z^l for every free layer, synchronously (Eq. 2 with Eq. 8's d^l); new
    arrays, z is not modified (z^0 itself is returned when it is clamped)."""
    dtype = check_params(params, cfg, "correct")
    B = _check_states(z, cfg, "z", "correct", dtype)
    _check_states(e, cfg, "e", "correct", dtype)
    if cfg.feedback == "gradient":
        return _gradient_correct(z, e, params, cfg, free_bottom)
    L = cfg.base.L
    r = _Run(params, cfg, B, dtype)
    for l in range(L + 1):
        r.put(r.z, l, z[l])
        r.put(r.e, l, e[l])
    r.run(free_bottom=free_bottom, correct_first=True)
    return [r.get(r.z, l) if (l or free_bottom) else z[0] for l in range(L + 1)]


def settle(params, x, cfg, z_top, T=None, clamp="always"):
    """Algorithm 1 with residual blocks (== ngc_ref.residual.settle): the ancestral pass through the blocks,
    T synchronous steps (every prediction and error from the same states, then every correction of Eq. 8),
    the final predictions and errors. clamp="always": z^0 = x throughout; "first": z^0 = x at t = 1 only,
    then d^0 = -e^0. Returns a SettleResult: final z, zbar and e, and the energy per image before each step
    and after the last, (T+1, B)."""
    if clamp not in ("always", "first"):
        raise ValueError("settle: clamp must be 'always' or 'first', got %r" % (clamp,))
    dtype = _check_inputs(params, x, cfg, z_top, "settle")
    T = cfg.base.T if T is None else checks.check_steps(T)
    L = cfg.base.L
    if cfg.descent:                                 # the reference's loop, this backend's operators
        return ref_descent_steps(init_states(x, params, cfg, z_top), T,
                                 lambda z: predictions_and_errors(z, params, cfg),
                                 lambda z, e: _gradient_corrections(z, e, params, cfg, clamp == "first"), cfg,
                                 clamp == "first", energy=energy)
    if cfg.feedback == "gradient":                  # the fused predictions, the unfused exact corrections
        return settle_steps(init_states(x, params, cfg, z_top), T,
                            lambda z: predictions_and_errors(z, params, cfg),
                            lambda z, e: _gradient_correct(z, e, params, cfg, clamp == "first"), energy=energy)
    r = _Run(params, cfg, x.shape[0], dtype)
    r.put(r.z, 0, x)
    r.put(r.z, L, z_top)
    trace = r.run(T, free_bottom=(clamp == "first"), init=True, final=True)
    z = [r.get(r.z, l) for l in range(L + 1)]
    zbar = [r.get(r.zb, l) for l in range(L)]
    e = [r.get(r.e, l) for l in range(L)] + [np.zeros_like(z[L])]
    return SettleResult(z, zbar, e, trace)


def filter_updates(res, params, cfg):
    """Eq. 12 from the final states (== ngc_ref.residual.filter_updates): dW^{l,q} = d^{l,q-1} *_1
    Dilate(a^{l,q}, stride), d^{l,0} = e^{l-1}; dS^l = e^{l-1} *_1 Dilate(phi(z^l), s); db^{l-1} = sum e^{l-1}.
    Summed per tile in the dtype, then tile after tile in float64 (fixed order)."""
    dtype = check_params(params, cfg, "filter_updates")
    B = _check_states(res.z, cfg, "res.z", "filter_updates", dtype)
    L, n, K = cfg.base.L, cfg.n, cfg.base.kernel
    if len(res.e) < L:
        raise ValueError("filter_updates: res.e must hold the errors e^0..e^{L-1}, got %d arrays" % len(res.e))
    if cfg.feedback == "gradient":
        out = {"W": [None], "S": [None], "b": [None]}
        for l in range(1, L + 1):
            _, w, s_ = block_gradients(res.z[l], res.e[l - 1], params, cfg, l, res.z[l - 1].shape[2:])
            out["W"].append(w)
            out["S"].append(s_)
            out["b"].append(res.e[l - 1].sum(axis=(0, 2, 3)))
        return out
    r = _Run(params, cfg, B, dtype)
    for l in range(L + 1):
        if l:
            r.put(r.z, l, res.z[l])
        if l < L:
            r.put(r.e, l, res.e[l])
    shapes, obase, total = {}, np.zeros((L + 1, n + 1), np.int64), 0
    for l in range(1, L + 1):
        for q in range(0, n + 1):
            if q == 0 and params["S"][l] is None:
                continue
            shapes[l, q] = (params["S"][l] if q == 0 else params["W"][l][q - 1]).shape
            obase[l, q] = total
            total += int(np.prod(shapes[l, q]))
    parts = np.zeros((r.nt, total), np.float64)
    threads.run(rk.filter_update_tiles, r.nt, r.z, r.e, parts, *r.blocks(), r.consts[0], obase, r.nph, r.M, r.V)
    flat = parts.sum(axis=0)

    def take(l, q):
        o = obase[l, q]
        return flat[o:o + int(np.prod(shapes[l, q]))].reshape(shapes[l, q]).astype(dtype)

    dW = [None] + [[take(l, q) for q in range(1, n + 1)] for l in range(1, L + 1)]
    dS = [None] + [take(l, 0) if params["S"][l] is not None else None for l in range(1, L + 1)]
    db = [None] + [res.e[l - 1].sum(axis=(0, 2, 3)) for l in range(1, L + 1)]
    return {"W": dW, "S": dS, "b": db}
