"""The compiled loops of residual Conv-NGC on the CPU (ngc_cpu/residual.py; the math: ngc_ref/residual.py).

The layout, the vectors and the per-pixel gathers are kernels.py's (read its docstring first): a tile of V
images, every map stored (H, W, C, V), the states of all layers in one flat buffer per tile (z, e, zbar at
geo[l, OFF]). tconv_pixel and conv_pixel are the same inlined gathers the plain settle runs; here they are
called for every transform of a block (stride s for the transform that reads z^l, stride 1 for the others),
so one thread runs the whole of Algorithm 1 for a tile, every block, all T steps, with its states in cache.

Per tile, one work buffer holds
    [0, nph)                 phi(z^l), the input of the first transform (and of the projection skip)
    [A, A + M), [B, B + M)   two maps of layer l-1's size: a transform writes one while it reads the other;
                             a pooled post-op reads the transform's output and writes the other
    [D_1 .. D_{n-1}]         (learning only) the perturbations d^{l,1} .. d^{l,n-1}, M each
with M the largest C H W V of the layers 0..L-1 (every intermediate activity of block l has layer l-1's size).

Parameters (packed once per call by residual.py):
    Wp   pack_predict of W^{l,q} at woff[l, q] (q = 1..n), of the projection skip S^l at woff[l, 0]
    Ec   pack_conv of W^{l,q} at eoff[l, q] (E = W^T: the perturbations of Eqs. 8-11 read the same kernels)
    bp   b^l, one value per map, padded to a multiple of JB, at boff[l]
    posts[q]  the post-op of transform q: NONE, RELU, POOL, POOL_RELU (Eq. 7: none, pool+relu, pool, relu)
    skipk[l]  the skip of block l: SKIP_NONE, SKIP_IDENTITY (+ z^l), SKIP_PROJECT (+ S^l ⊙_s phi(z^l))
The stride-1 transforms pad (K - 1) // 2 before (SAME at stride 1: the map keeps its size).

The sums differ from the reference only in their order (tested to the tolerances of tests/tolerances.py);
max pooling and ReLU are exact. Every tile is computed by one thread in a fixed order (determinism as kernels.py).
"""
import numpy as np
from numba import njit

from .kernels import (C_, H_, JB, OFF, PL, PT, W_, _lane_sum_into, _opts, _wgrad_tile, conv_pixel, correct_bottom,
                      padded, phi_map, tconv_pixel, transpose_taps)
from .simd import vadd, vbroadcast, vfmav, vload, vmax, vrelu, vscale, vstore, vsub, vzeros

NONE, RELU, POOL, POOL_RELU = 0, 1, 2, 3
SKIP_NONE, SKIP_IDENTITY, SKIP_PROJECT = 0, 1, 2
POST_CODES = {"none": NONE, "relu": RELU, "pool": POOL, "pool+relu": POOL_RELU}
SKIP_CODES = {"none": SKIP_NONE, "identity": SKIP_IDENTITY, "project": SKIP_PROJECT}


# ---- one map of one tile -------------------------------------------------------------------------------

@njit(**_opts)
def tconv_map(src, soff, Cu, Hu, Wu, dst, doff, Cl, Hl, Wl, Wp, wbase, bp, bbase, K, s, pt, pl, relu, V):
    """dst[doff:] (Hl, Wl, Cl, V) = W ⊙_s src[soff:] (Hu, Wu, Cu, V), plus the bias bp[bbase + j] when
    bbase >= 0, then max(., 0) when relu."""
    Clp = padded(Cl)
    ky_t, y_t, ny = np.empty((Hl, K), np.int64), np.empty((Hl, K), np.int64), np.empty(Hl, np.int64)
    kx_t, x_t, nx = np.empty((Wl, K), np.int64), np.empty((Wl, K), np.int64), np.empty(Wl, np.int64)
    transpose_taps(Hl, Hu, K, s, pt, ky_t, y_t, ny)
    transpose_taps(Wl, Wu, K, s, pl, kx_t, x_t, nx)
    zero = vzeros(dst)
    for Y in range(Hl):
        for X in range(Wl):
            for j0 in range(0, Cl, JB):
                if bbase >= 0:
                    b0, b1 = vbroadcast(bp, bbase + j0), vbroadcast(bp, bbase + j0 + 1)
                    b2, b3 = vbroadcast(bp, bbase + j0 + 2), vbroadcast(bp, bbase + j0 + 3)
                else:
                    b0 = b1 = b2 = b3 = zero
                a0, a1, a2, a3 = tconv_pixel(src, soff, Cu, Wu, Wp, wbase, Clp, j0, Y, X, K, ky_t, y_t, ny,
                                             kx_t, x_t, nx, b0, b1, b2, b3, V)
                o = doff + ((Y * Wl + X) * Cl + j0) * V
                for jj in range(min(JB, Cl - j0)):
                    a = a0 if jj == 0 else (a1 if jj == 1 else (a2 if jj == 2 else a3))
                    if relu:
                        a = vrelu(a)
                    vstore(dst, o + jj * V, a)


@njit(**_opts)
def conv_map(src, soff, Cl, Hl, Wl, dst, doff, Cu, Hu, Wu, Ec, ebase, K, s, pt, pl, V):
    """dst[doff:] (Hu, Wu, Cu, V) = E *_s src[soff:] (Hl, Wl, Cl, V), SAME padding pt, pl before."""
    Cup = padded(Cu)
    zero = vzeros(dst)
    for y in range(Hu):
        for x in range(Wu):
            for i0 in range(0, Cu, JB):
                a0, a1, a2, a3 = conv_pixel(src, soff, Cl, Hl, Wl, Ec, ebase, Cup, i0, y, x, K, s, pt, pl,
                                            zero, zero, zero, zero, V)
                o = doff + ((y * Wu + x) * Cu + i0) * V
                for ii in range(min(JB, Cu - i0)):
                    vstore(dst, o + ii * V, a0 if ii == 0 else (a1 if ii == 1 else (a2 if ii == 2 else a3)))


@njit(**_opts)
def pool_map(src, soff, dst, doff, C, H, W, k, relu, V):
    """dst[doff:] = max over the k x k window (stride 1, SAME; outside the map is -inf, so it is left out)
    of src[soff:] (H, W, C, V), then max(., 0) when relu. Exact: the order of a max does not matter."""
    p = k // 2
    for Y in range(H):
        y0, y1 = max(Y - p, 0), min(Y + p + 1, H)
        for X in range(W):
            x0, x1 = max(X - p, 0), min(X + p + 1, W)
            o = (Y * W + X) * C * V
            for c in range(C):
                m = vload(src, soff + o + c * V)                    # the window's centre: always inside
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        m = vmax(m, vload(src, soff + ((yy * W + xx) * C + c) * V))
                if relu:
                    m = vrelu(m)
                vstore(dst, doff + o + c * V, m)


@njit(**_opts)
def _post_map(work, out, other, C, H, W, post, pool, V):
    """Apply a pooled post-op to the transform's output at `out` (ReLU alone is fused into tconv_map);
    returns where the activity now is."""
    if post == POOL or post == POOL_RELU:
        pool_map(work, out, work, other, C, H, W, pool, post == POOL_RELU, V)
        return other
    return out


@njit(**_opts)
def _chain_step(work, src, A, B, l, q, n, geo, posts, Wp, woff, bp, boff, K, s, pad1, pool, V):
    """Transform q of block l on the activity at work[src:]: W^{l,q} ⊙ (stride s if q = n, else 1), the bias
    when q = 1, then its post-op. Returns the offset of its output (A or B, never src)."""
    Cl, Hl, Wl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_]
    if q == n:
        Cin, Hin, Win, st, pt, pl = geo[l, C_], geo[l, H_], geo[l, W_], s, geo[l, PT], geo[l, PL]
    else:
        Cin, Hin, Win, st, pt, pl = Cl, Hl, Wl, np.int64(1), pad1, pad1
    out = B if src == A else A
    other = A if out == B else B
    post = posts[q]
    tconv_map(work, src, Cin, Hin, Win, work, out, Cl, Hl, Wl, Wp, woff[l, q], bp, boff[l] if q == 1 else -1,
              K, st, pt, pl, post == RELU, V)
    return _post_map(work, out, other, Cl, Hl, Wl, post, pool, V)


# ---- Eq. 7: one block's prediction; Eq. 8: one layer's correction -------------------------------------

@njit(**_opts)
def predict_block(zt, et, zbt, work, nph, M, en, scratch, geo, l, n, posts, skipk, Wp, woff, bp, boff, K, s, pad1,
                  pool, leak, mode, V):
    """zbar^{l-1} = post_1(W^{l,1} ⊙ a^{l,1} + b^l) + skip(z^l), the chain a^{l,n} = phi(z^l) .. a^{l,1} in the
    work buffer. mode 0: write the prediction into z^{l-1} (the ancestral pass); 1: write e^{l-1} = z - zbar;
    2: e and zbar (the final pass). Modes 1 and 2 add each image's sum of e^2 to en."""
    Cu, Hu, Wu, offu = geo[l, C_], geo[l, H_], geo[l, W_], geo[l, OFF]
    Cl, Hl, Wl, offl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_], geo[l - 1, OFF]
    A, B = nph, nph + M
    phi_map(work, zt, offu, Cu * Hu * Wu * V, leak, V)              # a^{l,n} at work[0:]
    src = np.int64(0)
    for q in range(n, 0, -1):
        src = _chain_step(work, src, A, B, l, q, n, geo, posts, Wp, woff, bp, boff, K, s, pad1, pool, V)
    kind = skipk[l]
    Clp = padded(Cl)
    ky_t, y_t, ny = np.empty((Hl, K), np.int64), np.empty((Hl, K), np.int64), np.empty(Hl, np.int64)
    kx_t, x_t, nx = np.empty((Wl, K), np.int64), np.empty((Wl, K), np.int64), np.empty(Wl, np.int64)
    if kind == SKIP_PROJECT:
        transpose_taps(Hl, Hu, K, s, geo[l, PT], ky_t, y_t, ny)
        transpose_taps(Wl, Wu, K, s, geo[l, PL], kx_t, x_t, nx)
    zero = vzeros(zt)
    for Y in range(Hl):
        ev = zero
        for X in range(Wl):
            for j0 in range(0, Cl, JB):
                nj = min(JB, Cl - j0)
                o = ((Y * Wl + X) * Cl + j0) * V
                a0 = vload(work, src + o)
                a1 = vload(work, src + o + V) if nj > 1 else zero
                a2 = vload(work, src + o + 2 * V) if nj > 2 else zero
                a3 = vload(work, src + o + 3 * V) if nj > 3 else zero
                if kind == SKIP_PROJECT:
                    a0, a1, a2, a3 = tconv_pixel(work, np.int64(0), Cu, Wu, Wp, woff[l, 0], Clp, j0, Y, X, K, ky_t,
                                                 y_t, ny, kx_t, x_t, nx, a0, a1, a2, a3, V)
                for jj in range(nj):
                    a = a0 if jj == 0 else (a1 if jj == 1 else (a2 if jj == 2 else a3))
                    if kind == SKIP_IDENTITY:                        # z^l has layer l-1's shape
                        a = vadd(a, vload(zt, offu + o + jj * V))
                    oo = offl + o + jj * V
                    if mode == 0:
                        vstore(zt, oo, a)
                    else:
                        d = vsub(vload(zt, oo), a)
                        vstore(et, oo, d)
                        ev = vfmav(ev, d, d)
                        if mode == 2:
                            vstore(zbt, oo, a)
        if mode != 0:
            _lane_sum_into(en, ev, scratch, V)


@njit(**_opts)
def correct_block(zt, et, work, nph, M, geo, l, n, Ec, eoff, K, s, pad1, beta, gamma, V):
    """Eq. 8 for layer l, in place: d^{l,0} = e^{l-1}, d^{l,q} = W^{l,q} *_1 d^{l,q-1} (q = 1..n-1, Eqs. 9-11),
    d^l = -e^l + W^{l,n} *_s d^{l,n-1}; z^l <- z^l + beta d^l - gamma z^l."""
    Cu, Hu, Wu, offu = geo[l, C_], geo[l, H_], geo[l, W_], geo[l, OFF]
    Cl, Hl, Wl, offl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_], geo[l - 1, OFF]
    A, B = nph, nph + M
    src_buf, src = et, offl
    for q in range(1, n):
        out = B if (q > 1 and src == A) else A
        conv_map(src_buf, src, Cl, Hl, Wl, work, out, Cl, Hl, Wl, Ec, eoff[l, q], K, np.int64(1), pad1, pad1, V)
        src_buf, src = work, out
    Cup = padded(Cu)
    pt, pl = geo[l, PT], geo[l, PL]
    zero = vzeros(zt)
    for y in range(Hu):
        for x in range(Wu):
            for i0 in range(0, Cu, JB):
                a0, a1, a2, a3 = conv_pixel(src_buf, src, Cl, Hl, Wl, Ec, eoff[l, n], Cup, i0, y, x, K, s, pt, pl,
                                            zero, zero, zero, zero, V)
                o = offu + ((y * Wu + x) * Cu + i0) * V
                for ii in range(min(JB, Cu - i0)):
                    up = a0 if ii == 0 else (a1 if ii == 1 else (a2 if ii == 2 else a3))
                    oo = o + ii * V
                    z = vload(zt, oo)
                    d = vsub(up, vload(et, oo))
                    vstore(zt, oo, vsub(vadd(z, vscale(d, beta)), vscale(z, gamma)))


# ---- Algorithm 1 with residual blocks, for one tile and for all tiles -----------------------------------

@njit(**_opts)
def _predict_all(zt, et, zbt, work, nph, M, en, scratch, geo, L, n, posts, skipk, Wp, woff, bp, boff, K, s, pad1,
                 pool, leak, mode, V):
    for l in range(1, L + 1):
        predict_block(zt, et, zbt, work, nph, M, en, scratch, geo, l, n, posts, skipk, Wp, woff, bp, boff, K, s,
                      pad1, pool, leak, mode, V)
    for q in range(V):
        en[q] *= 0.5


@njit(**_opts)
def _correct_all(zt, et, work, nph, M, geo, L, n, Ec, eoff, K, s, pad1, consts, free_bottom, V):
    for l in range(1, L + 1):
        correct_block(zt, et, work, nph, M, geo, l, n, Ec, eoff, K, s, pad1, consts[1], consts[2], V)
    if free_bottom:
        correct_bottom(zt, et, geo[0, C_] * geo[0, H_] * geo[0, W_] * V, consts, V)


@njit(**_opts)
def settle_tiles(t0, t1, z, e, zb, en, geo, L, n, posts, skipk, Wp, woff, bp, boff, Ec, eoff, K, s, pad1, pool,
                 consts, T, free_bottom, nph, M, init, correct_first, final, V):
    """Algorithm 1 through the blocks for tiles t0..t1-1 (z, e, zb (n_tiles, P), en (n_tiles, T+1, V)):
        init           the ancestral pass z^{l-1} = zbar^{l-1}, l = L..2
        correct_first  one correction from the errors already in e (residual.correct)
        T steps        every block's prediction and error from the same states, then every correction
        final          the predictions and errors of the final states (energy into en[T])
    consts = (leak, beta, gamma, gamma of a free z^0)."""
    work = np.empty(nph + 2 * M, z.dtype)
    scratch = np.empty(V, z.dtype)
    leak = consts[0]
    for t in range(t0, t1):
        zt, et, zbt, ent = z[t], e[t], zb[t], en[t]
        if init:
            for l in range(L, 1, -1):
                predict_block(zt, et, zbt, work, nph, M, ent[0], scratch, geo, l, n, posts, skipk, Wp, woff, bp, boff,
                              K, s, pad1, pool, leak, np.int64(0), V)
        if correct_first:
            _correct_all(zt, et, work, nph, M, geo, L, n, Ec, eoff, K, s, pad1, consts, free_bottom, V)
        for step in range(T):
            _predict_all(zt, et, zbt, work, nph, M, ent[step], scratch, geo, L, n, posts, skipk, Wp, woff, bp, boff,
                         K, s, pad1, pool, leak, np.int64(1), V)
            _correct_all(zt, et, work, nph, M, geo, L, n, Ec, eoff, K, s, pad1, consts, free_bottom, V)
        if final:
            _predict_all(zt, et, zbt, work, nph, M, ent[T], scratch, geo, L, n, posts, skipk, Wp, woff, bp, boff,
                         K, s, pad1, pool, leak, np.int64(2), V)


# ---- Eq. 12 ---------------------------------------------------------------------------------------------

@njit(**_opts)
def filter_update_tiles(t0, t1, z, e, out, geo, L, n, posts, skipk, Wp, woff, bp, boff, Ec, eoff, K, s, pad1, pool,
                        leak, obase, nph, M, V):
    """Eq. 12 for tiles t0..t1-1 from the final states z and errors e: out[t, obase[l, q]:] = dW^{l,q} =
    d^{l,q-1} *_1 Dilate(a^{l,q}, stride) of tile t (float64, (C_in, C_out, K, K) flat), and at obase[l, 0]
    the projection skip's dS^l = e^{l-1} *_1 Dilate(phi(z^l), s). The perturbations d^{l,1..n-1} are made
    first (they go up the chain), then the activities a^{l,n} .. a^{l,1} (down the chain), each meeting its
    perturbation as soon as it exists."""
    work = np.empty(nph + (n + 1) * M, z.dtype)
    scratch = np.empty(V, z.dtype)
    A, B = nph, nph + M
    for t in range(t0, t1):
        zt, et, ot = z[t], e[t], out[t]
        for l in range(1, L + 1):
            Cu, Hu, Wu, offu = geo[l, C_], geo[l, H_], geo[l, W_], geo[l, OFF]
            Cl, Hl, Wl, offl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_], geo[l - 1, OFF]
            for q in range(1, n):                                   # d^{l,q} at D_q = nph + (q + 1) M
                src_buf, src = (et, offl) if q == 1 else (work, nph + q * M)
                conv_map(src_buf, src, Cl, Hl, Wl, work, nph + (q + 1) * M, Cl, Hl, Wl, Ec, eoff[l, q], K,
                         np.int64(1), pad1, pad1, V)
            phi_map(work, zt, offu, Cu * Hu * Wu * V, leak, V)
            src = np.int64(0)
            for q in range(n, 0, -1):
                d_buf, d_off = (et, offl) if q == 1 else (work, nph + q * M)       # d^{l,q-1}
                if q == n:
                    _wgrad_tile(work, d_buf, src, d_off, Cu, Hu, Wu, Cl, Hl, Wl, K, s, geo[l, PT], geo[l, PL], ot,
                                obase[l, q], scratch, V)
                    if skipk[l] == SKIP_PROJECT:
                        _wgrad_tile(work, et, src, offl, Cu, Hu, Wu, Cl, Hl, Wl, K, s, geo[l, PT], geo[l, PL], ot,
                                    obase[l, 0], scratch, V)
                else:
                    _wgrad_tile(work, d_buf, src, d_off, Cl, Hl, Wl, Cl, Hl, Wl, K, np.int64(1), pad1, pad1, ot,
                                obase[l, q], scratch, V)
                if q > 1:
                    src = _chain_step(work, src, A, B, l, q, n, geo, posts, Wp, woff, bp, boff, K, s, pad1, pool, V)
