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
    # weight gradients, bias sums, energies, block reductions: sums over B*H*W products
    "reduction": dict(rtol=1e-4, atol=1e-5),
    # after T settling steps (drift accumulated over T steps of float32); also filters after a few updates
    "settled": dict(rtol=1e-3, atol=1e-4),
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
