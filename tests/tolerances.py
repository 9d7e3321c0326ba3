"""Every tolerance of the tests, in one table (STYLE.md section 5), and assert_close.

Kernel tests draw their inputs as float32 and upcast them for the reference, so the only difference
measured is the kernels' float32 arithmetic (and its summation order). A tolerance raised above
STYLE.md's values carries a comment saying why.
"""
import numpy as np

TOL = {
    # ---- float32 kernels (and the float32 backends through convngc) against the float64 reference ----
    # elementwise: one or two float32 roundings per value (Adam, the normalised step, the projection)
    "elementwise": dict(rtol=1e-6, atol=1e-6),
    # convolutions: sums of C*K*K products (what CuPy's own ndimage convolve tests use)
    "conv": dict(rtol=1e-5, atol=1e-5),
    # one fused settling step (predict + error, or correct): a conv plus two elementwise roundings
    "step": dict(rtol=1e-5, atol=1e-5),
    # weight gradients, bias sums, energies, block reductions: float32 sums of n terms (B*H*W products for a
    # weight gradient); the absolute part grows with n and the sums' size: reduction(n, desired) below
    "reduction": dict(rtol=1e-4),
    # residual Conv-NGC's blocks (tests/cpu/test_cpu_residual.py): a chain of up to five transforms per block, each
    # a convolution (C*K*K products) with its own roundings, and max-pool / ReLU between: ten times a conv's rtol
    "residual-chain": dict(rtol=1e-4, atol=1e-5),
    # after T settling steps (drift accumulated over T steps of float32); also filters after a few updates
    "settled": dict(rtol=1e-3, atol=1e-4),
    # filters after a few Adam steps, each side's from its own float32 gradients of the same states (through
    # ConvNGC): a relative difference of the gradients moves Adam's normalised step by about as much (1e-4 lr),
    # the updated filters keep one float32 rounding; the near-zero gradients, which Adam's eps turns into
    # visible differences, are held apart by assert_adam_close
    "adam-steps": dict(rtol=1e-4, atol=1e-5),
    # ---- float64 on both sides: only the order of the sums differs ------------------------------------
    # the reference against independent oracles (literal loops, scipy) and the PyTorch baseline
    "float64": dict(rtol=1e-10, atol=1e-12),
    # <conv(x), y> = <x, conv_transpose(y)>: two dot products of the same products; atol is per
    # sqrt(number of terms) (the round-off of a sum of n terms grows as sqrt(n))
    "adjoint": dict(rtol=1e-12, atol=1e-12),
    # the reference against the golden file: its outputs are stored as float32, so one float32 rounding
    "golden-ref": dict(rtol=1e-6, atol=1e-7),
    # analytic derivatives against central differences (the absolute part: central_difference_atol)
    "finite-difference": dict(rtol=1e-6),
}


def central_difference_atol(F, h):
    """The absolute error of (F(v + h) - F(v - h)) / 2h, for an energy F of size |F| in float64.

    F is quadratic in each state, filter or bias away from phi's kink (the tests keep the stencil away
    from it), so the truncation error is zero and round-off is what is left: each evaluation of F carries
    a few ulps of |F| from its sums, k * eps * |F| with k = 4 (generous: about 0.4 is measured), so the
    difference carries 2 k eps |F| and the quotient k eps |F| / h. For |F| = 320 and h = 1e-6 that is
    2.8e-7; the 1e-8 used before was below the 3e-8 of round-off seen, so a harmless change of the
    order of a sum could fail it."""
    return 4 * np.finfo(np.float64).eps * abs(F) / h


def reduction_atol(n, scale, k=4.0):
    """The absolute error of a float32 sum of n terms whose results are of typical size `scale`: k sqrt(n) eps S.

    Summed one term after another (the worst order), the partial sums of terms of either sign grow to about S,
    each addition rounds by up to eps/2 of its partial sum, and the n roundings add up as a random walk: the
    error is a fraction of sqrt(n) eps S (measured: 0.11 of it on average, 0.67 at most over 400 sums of
    8 to 25,600 Gaussian products; pairwise, blocked and tiled sums do better on long sums: 0.04 for NumPy's
    BLAS and 0.02 for the cpu backend on the paper's layer-1 weight gradient). Short sums reach more, because
    one entry's few large products can outweigh S: 1.7 on 8-term entries of the reference's own float32 path.
    k = 4 leaves twice that.
    A fixed atol cannot serve: at the paper's shapes (layer 1, B = 500: 128,000 products per entry of dW,
    S = 347) the reference itself in float32 misses atol 1e-5 by a factor 2 on the entries near zero, while
    the 11-pixel maps of the op tests stay far below it (tests/ref/test_ref_ops.py measures both)."""
    return k * np.sqrt(n) * np.finfo(np.float32).eps * scale


def reduction(n, desired):
    """TOL["reduction"] for float32 sums of n terms each whose exact values are `desired` (the reference): rtol
    1e-4 and atol reduction_atol(n, S) with S the root mean square of the desired values."""
    d = np.asarray(desired.get() if hasattr(desired, "get") else desired, dtype=np.float64)
    scale = float(np.sqrt(np.mean(d * d))) if d.size else 0.0
    return dict(TOL["reduction"], atol=reduction_atol(n, scale))


def assert_close(actual, desired, rtol, atol, name="value"):
    """np.allclose-style check (|a - d| <= atol + rtol |d|) that reports how many values fail, the max abs
    diff, the max rel diff and the worst index (the one furthest outside the bound), not just 'False'.
    NaN or Inf in `actual` fails."""
    a = np.asarray(actual.get() if hasattr(actual, "get") else actual, dtype=np.float64)
    d = np.asarray(desired.get() if hasattr(desired, "get") else desired, dtype=np.float64)
    assert a.shape == d.shape, "%s: shape %s != reference shape %s" % (name, a.shape, d.shape)
    if a.size == 0:
        return
    assert np.all(np.isfinite(a)), "%s: non-finite values at %s" % (name, np.argwhere(~np.isfinite(a))[:5].tolist())
    diff = np.abs(a - d)
    excess = diff - (atol + rtol * np.abs(d))
    worst = np.unravel_index(np.argmax(excess), a.shape)
    rel = diff / np.maximum(np.abs(d), np.finfo(np.float64).tiny)
    ok = excess[worst] <= 0
    assert ok, ("%s: %d of %d values differ; max|diff| %.3g, max rel diff %.3g; worst at index %s: got %.9g, "
                "ref %.9g (|diff| %.3g > atol %.1g + rtol %.1g * |ref|)"
                % (name, int((excess > 0).sum()), a.size, diff.max(), rel.max(), tuple(int(i) for i in worst),
                   a[worst], d[worst], diff[worst], atol, rtol))


def assert_adam_close(actual, desired, v, t, cfg, floor, rtol, atol, name="value", max_share=0.05):
    """Parameters after t Adam steps, each side's from its own gradients, against the reference's.

    Adam's step lr mhat / (sqrt(vhat) + eps), eps = 1e-8, is lr sign(g) at the first step for any gradient well
    above eps: a gradient that rounds to either side of zero moves the weight by +lr on one side and -lr on the
    other, and near eps the step turns a rounding-level difference into a visible one. Comparing every entry
    would make the test hostage to the rare near-zero gradient. So an entry whose gradient RMS over the steps,
    sqrt(v / (1 - b2^t)) from the reference's second moment `v`, lies below `floor` (how far the two sides'
    gradients may differ: the rounding of their sums, reduction_atol, plus what a settle's drift adds) is held
    only to Adam's bound on a step, lr (1 - b1) / sqrt(1 - b2) per step at the most (Kingma and Ba, Sec. 2.1),
    and such entries must be few (max_share, or one entry of a small array); every other entry is held to
    rtol/atol. The gradients themselves (or the moments) are compared where the test has them."""
    a = np.asarray(actual.get() if hasattr(actual, "get") else actual, dtype=np.float64)
    d = np.asarray(desired.get() if hasattr(desired, "get") else desired, dtype=np.float64)
    v = np.asarray(v.get() if hasattr(v, "get") else v, dtype=np.float64)
    assert a.shape == d.shape == v.shape, "%s: shapes %s, %s, v %s" % (name, a.shape, d.shape, v.shape)
    hostage = np.sqrt(v / (1 - cfg.adam_b2 ** t)) <= floor
    assert hostage.sum() <= max(1, max_share * hostage.size), (
        "%s: %d of %d gradients within %.3g of zero: too many for the comparison to mean anything"
        % (name, int(hostage.sum()), hostage.size, floor))
    assert_close(a[~hostage], d[~hostage], rtol, atol, name="%s (gradient above %.3g)" % (name, floor))
    step = cfg.lr * max(1.0, (1 - cfg.adam_b1) / np.sqrt(1 - cfg.adam_b2))
    assert_close(a[hostage], d[hostage], 0.0, 2 * t * step + atol, name="%s (gradient below %.3g: within Adam's "
                                                                          "largest steps)" % (name, floor))
