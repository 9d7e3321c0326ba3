"""The compiled loops of the CPU backend (Numba), on batch tiles: the paper's operators without the zeros.

Layout. A *tile* is V images side by side, V = one vector of lanes (16 float32 or 8 float64, see simd.py).
Every layer of a tile is stored (H, W, C, V): the V images of one pixel and channel are one vector, so
each multiply-add below does the same arithmetic for V images at once, and the C channels of one pixel
are consecutive, so the inner loop over channels reads memory in order (a prototype of the paper's largest
prediction, one core: 106 GFLOP/s in this layout, 27 GFLOP/s in (C, H, W, V), whose channel planes are 4 KB
apart and fall out of L1). The states of all layers of one tile are one flat buffer (layer l at offset
geo[l, OFF]); errors and predictions use the same offsets.

    geo[l] = (C_l, H_l, W_l, OFF_l, PT_l, PL_l)    PT_l, PL_l: SAME padding before (rows, columns) of
                                                  the strided convolution from layer l-1 to layer l

Filters are re-laid out once per call (layout.py) so that the inner loop reads consecutive weights:
    Wp  (prediction, Eq. 1):   [ky, kx, i, j]   j (map of layer l-1) padded to a multiple of JB with zeros
    Ec  (bottom-up, Eq. 2):    [ky, kx, j, i]   i (map of layer l) padded to a multiple of JB with zeros
    bm  (bias of layer l-1):   [Y, X, j]        j padded likewise; a per-channel bias is broadcast to a map
    poff[l] = (offset of W^l in Wp, of E^l in Ec, of b^l in bm)

Both convolutions are gathers, so the zeros that `dilate` inserts are never multiplied:
  transposed conv (Eq. 1):  zbar[j, Y, X] = b[j, Y, X] + sum_i sum_{ky, kx : Y + PT - ky = s y, X + PL - kx = s x}
                                                          W[i, j, ky, kx] phi(z[i, y, x])
  strided conv (Eq. 2):     up[i, y, x] = sum_j sum_{ky, kx} E[i, j, ky, kx] e[j, s y + ky - PT, s x + kx - PL]
with zero outside the maps: exactly ngc_ref.ops.conv2d_transpose and ngc_ref.ops.conv2d.

Register blocking: one output pixel computes JB = 4 output maps at once. The accumulators a0..a3 are
vector values (simd.py), so they stay in registers while the loop over input maps streams one vector
per input map and feeds it to 4 multiply-adds (8 maps at once measured slower: more padding waste).

Threads: every entry point below runs tiles t0..t1-1 and releases the GIL (nogil), so threads.py runs
disjoint tile ranges at once (Python threads, not `parallel=True`: measured, Numba's parallel
lowering added ~4 s of compile time per entry point for a loop over independent tiles).
Determinism: every image's arithmetic runs in one fixed order inside its own lane, and sums over images
(the filter updates) are made per tile, then added tile after tile. Nothing depends on the number of
threads.

Numba compiles a callee once per distinct *literal* integer argument; the np.int64(...) around constant
arguments below keep each function at one compiled version (compile time counts: CI, `make run`).

The entry points of a settle and of the filter updates take their many arguments in three named tuples
(Numba passes a namedtuple of arrays and scalars as one value; reading a field costs nothing):
    Net    what every tile reads: the network packed for the inner loops and its geometry (model._Run)
    Tiles  the batch's buffers: states, errors, predictions, energies
    Steps  what a settle_tiles call runs (settle_tile's docstring)
"""
from collections import namedtuple

import numpy as np
from numba import njit
from numba.extending import register_jitable

from .simd import vadd, vbroadcast, vfmav, vload, vmul, vphi, vphi_prime, vscale, vstore, vsub, vzeros

C_, H_, W_, OFF, PT, PL = range(6)            # columns of geo
JB = 4                                        # output maps per register block

_opts = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)
_inline = dict(_opts, inline="always")     # per-pixel helpers: no call, no reference counting per pixel

Net = namedtuple("Net", [
    "geo",       # (L+1, 6) int64: C, H, W, OFF, PT, PL of every layer (above)
    "L",         # layers above the image
    "Wp",        # prediction filters [ky, kx, i, j] (layout.pack, above)
    "Ec",        # error filters [ky, kx, j, i]: E, or W when E = W^T; pi0 E^1 in place of E^1
    "bm",        # bias maps [Y, X, j]
    "poff",      # (L+1, 3) int64: where layer l starts in Wp, Ec, bm
    "K",         # kernel size
    "s",         # stride
    "consts",    # (leak, beta, gamma, gamma_0, momentum) in the dtype; gamma_0 = 0 without the leak on a free z^0
    "pcn",       # multiply the bottom-up message by phi'(z) (Eq. 2, PCN mode)
    "V",         # lanes of a vector: the images of one tile
    "nph",       # floats of the phi(z^l) buffer: the largest layer of one tile
])
Tiles = namedtuple("Tiles", "z e zb en zp")  # (n_tiles, P) states, errors, predictions; (n_tiles, T+1, V) energies;
                                              # zp: the previous states (heavy-ball momentum; (n_tiles, 0) without)
Steps = namedtuple("Steps", "T free_bottom init correct_first final")     # settle_tile's plan


@register_jitable
def padded(c):
    """Channel count rounded up to the register block (the padding holds zero weights)."""
    return -(-c // JB) * JB


# ---- building blocks: one tile, one layer ------------------------------------------------------------

@njit(**_opts)
def phi_map(out, zt, off, n, leak, V):
    """out[:n] = phi(zt[off : off + n]), n a multiple of V."""
    for k in range(0, n, V):
        vstore(out, k, vphi(vload(zt, off + k), leak))


@njit(**_opts)
def _lane_sum_into(acc64, v, scratch, V):
    """acc64[q] += v[q] for every lane (the energy is accumulated in float64 per image)."""
    vstore(scratch, 0, v)
    for q in range(V):
        acc64[q] += scratch[q]


@njit(**_opts)
def transpose_taps(n_out, n_in, K, s, pad, k_tab, i_tab, count):
    """For each output row (or column) Y of a transposed convolution, the taps that land on a real input
    pixel: ky with Y + pad - ky = s y, 0 <= y < n_in (the others would multiply a dilation zero).
    Tabulated once per layer, so the pixel loop does no integer division."""
    for Y in range(n_out):
        n = 0
        for k in range(K):
            t = Y + pad - k
            if t >= 0 and t % s == 0 and t // s < n_in:
                k_tab[Y, n] = k
                i_tab[Y, n] = t // s
                n += 1
        count[Y] = n


@njit(**_inline)
def tconv_pixel(src, soff, Cu, Wu, Wp, wbase, Clp, j0, Y, X, K, ky_t, y_t, ny, kx_t, x_t, nx, a0, a1, a2, a3, V):
    """Add to a0..a3 the transposed convolution (Eq. 1) at output pixel (Y, X), output maps j0..j0+3:
    sum over the taps (ky, kx) that land on a real input pixel (y, x) (transpose_taps) and over the Cu
    input maps of src[soff:] (Hu, Wu, Cu, V)."""
    for a in range(ny[Y]):
        ky, y = ky_t[Y, a], y_t[Y, a]
        for c in range(nx[X]):
            kx, x = kx_t[X, c], x_t[X, c]
            p = soff + (y * Wu + x) * Cu * V
            w = wbase + (ky * K + kx) * Cu * Clp + j0
            for i in range(Cu):
                v = vload(src, p)
                a0 = vfmav(a0, vbroadcast(Wp, w), v)
                a1 = vfmav(a1, vbroadcast(Wp, w + 1), v)
                a2 = vfmav(a2, vbroadcast(Wp, w + 2), v)
                a3 = vfmav(a3, vbroadcast(Wp, w + 3), v)
                p += V
                w += Clp
    return a0, a1, a2, a3


@njit(**_inline)
def conv_pixel(src, soff, Cl, Hl, Wl, Ec, ebase, Cup, i0, y, x, K, s, pt, pl, a0, a1, a2, a3, V):
    """Add to a0..a3 the strided convolution (Eq. 2's E *_s e) at output pixel (y, x), output maps
    i0..i0+3, over the Cl input maps of src[soff:] (Hl, Wl, Cl, V), zero outside them (SAME).
    Away from the left and right edges, the K taps of a row and their channels are K*Cl consecutive
    vectors (and consecutive weights in Ec), so they are one loop."""
    X0 = x * s - pl
    inside = X0 >= 0 and X0 + K <= Wl
    for ky in range(K):
        Y = y * s + ky - pt
        if Y < 0 or Y >= Hl:
            continue
        if inside:
            p = soff + (Y * Wl + X0) * Cl * V
            w = ebase + ky * K * Cl * Cup + i0
            for j in range(K * Cl):
                v = vload(src, p)
                a0 = vfmav(a0, vbroadcast(Ec, w), v)
                a1 = vfmav(a1, vbroadcast(Ec, w + 1), v)
                a2 = vfmav(a2, vbroadcast(Ec, w + 2), v)
                a3 = vfmav(a3, vbroadcast(Ec, w + 3), v)
                p += V
                w += Cup
            continue
        for kx in range(K):
            X = X0 + kx
            if X < 0 or X >= Wl:
                continue
            p = soff + (Y * Wl + X) * Cl * V
            w = ebase + (ky * K + kx) * Cl * Cup + i0
            for j in range(Cl):
                v = vload(src, p)
                a0 = vfmav(a0, vbroadcast(Ec, w), v)
                a1 = vfmav(a1, vbroadcast(Ec, w + 1), v)
                a2 = vfmav(a2, vbroadcast(Ec, w + 2), v)
                a3 = vfmav(a3, vbroadcast(Ec, w + 3), v)
                p += V
                w += Cup
    return a0, a1, a2, a3


@njit(**_opts)
def predict_layer(ph, zt, et, zbt, en, scratch, geo, l, Wp, bm, poff, K, s, mode, V):
    """Eq. 1 for layer l-1 from ph = phi(z^l) (Hu, Wu, Cu, V). mode 0: write the prediction into z itself
    (the ancestral pass); 1: write the error e = z - zbar; 2: the error and zbar (the final pass).
    Modes 1 and 2 add each image's sum of e^2 to en."""
    Cu, Hu, Wu = geo[l, C_], geo[l, H_], geo[l, W_]
    Cl, Hl, Wl, off = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_], geo[l - 1, OFF]
    Clp = padded(Cl)
    wbase, bbase = poff[l, 0], poff[l, 2]
    ky_t, y_t, ny = np.empty((Hl, K), np.int64), np.empty((Hl, K), np.int64), np.empty(Hl, np.int64)
    kx_t, x_t, nx = np.empty((Wl, K), np.int64), np.empty((Wl, K), np.int64), np.empty(Wl, np.int64)
    transpose_taps(Hl, Hu, K, s, geo[l, PT], ky_t, y_t, ny)
    transpose_taps(Wl, Wu, K, s, geo[l, PL], kx_t, x_t, nx)
    for Y in range(Hl):
        ev = vzeros(zt)
        for X in range(Wl):
            for j0 in range(0, Cl, JB):
                bi = bbase + (Y * Wl + X) * Clp + j0
                a0, a1, a2, a3 = tconv_pixel(ph, np.int64(0), Cu, Wu, Wp, wbase, Clp, j0, Y, X, K, ky_t, y_t, ny,
                                             kx_t, x_t, nx, vbroadcast(bm, bi), vbroadcast(bm, bi + 1),
                                             vbroadcast(bm, bi + 2), vbroadcast(bm, bi + 3), V)
                o = off + ((Y * Wl + X) * Cl + j0) * V
                nj = min(JB, Cl - j0)
                # written out here and in res_kernels.predict_block: the same store as an inline="always" helper
                # made a settle 35% slower (160 CIFAR-10 images, T 60, one thread: 0.47 s against 0.35 s)
                for jj in range(nj):
                    a = a0 if jj == 0 else (a1 if jj == 1 else (a2 if jj == 2 else a3))
                    oo = o + jj * V
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
def correct_layer(zt, et, zp, geo, l, Ec, poff, K, s, consts, pcn, V):
    """Eq. 2 for the free layer l >= 1, in place: up = E^l *_s e^{l-1}; d = -e^l + up (up times phi'(z^l)
    in PCN mode; e^L is kept at zero while settling); z^l <- z^l + beta d - gamma z^l. With momentum
    (consts[4] > 0, ngc_ref.model.heavy_ball) also + momentum (z^l - zp^l), and zp^l <- the old z^l."""
    Cu, Hu, Wu, off = geo[l, C_], geo[l, H_], geo[l, W_], geo[l, OFF]
    Cl, Hl, Wl, offl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_], geo[l - 1, OFF]
    pt, pl = geo[l, PT], geo[l, PL]
    leak, beta, gamma, mom = consts[0], consts[1], consts[2], consts[4]
    Cup = padded(Cu)
    ebase = poff[l, 1]
    for y in range(Hu):
        for x in range(Wu):
            for i0 in range(0, Cu, JB):
                zero = vzeros(zt)
                a0, a1, a2, a3 = conv_pixel(et, offl, Cl, Hl, Wl, Ec, ebase, Cup, i0, y, x, K, s, pt, pl,
                                            zero, zero, zero, zero, V)
                o = off + ((y * Wu + x) * Cu + i0) * V
                for ii in range(min(JB, Cu - i0)):
                    up = a0 if ii == 0 else (a1 if ii == 1 else (a2 if ii == 2 else a3))
                    oo = o + ii * V
                    z = vload(zt, oo)
                    if pcn:
                        up = vmul(up, vphi_prime(z, leak))
                    d = vsub(up, vload(et, oo))
                    zn = vsub(vadd(z, vscale(d, beta)), vscale(z, gamma))
                    if mom != 0:
                        zn = vadd(zn, vscale(vsub(z, vload(zp, oo)), mom))
                        vstore(zp, oo, z)
                    vstore(zt, oo, zn)


@njit(**_opts)
def correct_bottom(zt, et, n, consts, V):
    """A free z^0 (denoising after t = 1): d^0 = -e^0, z^0 <- z^0 + beta d^0 - gamma_0 z^0 (consts[3] = gamma_0)."""
    beta, gamma0 = consts[1], consts[3]
    for k in range(0, n, V):
        z = vload(zt, k)
        d = vsub(vzeros(zt), vload(et, k))
        vstore(zt, k, vsub(vadd(z, vscale(d, beta)), vscale(z, gamma0)))


# ---- Algorithm 1 for one tile, and for all tiles in parallel -------------------------------------------

@njit(**_opts)
def _predict_all(zt, et, zbt, ph, en, scratch, geo, L, Wp, bm, poff, K, s, leak, mode, V):
    """Eq. 1 for every layer from the same states: e^{l-1} (and zbar^{l-1} in mode 2), en = 1/2 sum e^2."""
    for l in range(1, L + 1):
        phi_map(ph, zt, geo[l, OFF], geo[l, C_] * geo[l, H_] * geo[l, W_] * V, leak, V)
        predict_layer(ph, zt, et, zbt, en, scratch, geo, l, Wp, bm, poff, K, s, mode, V)
    for q in range(V):
        en[q] *= 0.5


@njit(**_opts)
def _correct_all(zt, et, zp, geo, L, Ec, poff, K, s, consts, free_bottom, pcn, V):
    """Eq. 2 for every free layer, from the errors in et (all computed before any state moves)."""
    for l in range(1, L + 1):
        correct_layer(zt, et, zp, geo, l, Ec, poff, K, s, consts, pcn, V)
    if free_bottom:
        correct_bottom(zt, et, geo[0, C_] * geo[0, H_] * geo[0, W_] * V, consts, V)


@njit(**_opts)
def settle_tile(zt, et, zbt, zp, ph, en, scratch, net, steps):
    """Algorithm 1 on one tile of the network `net`, z^0 and z^L filled in zt; `steps` says what runs:
        init           the ancestral pass z^{l-1} = zbar^{l-1}, l = L..2 (Algorithm 1 lines 5-10)
        correct_first  one correction from the errors already in et (model.correct)
        T steps        every prediction and error from the same states (energy into en[t]), then every correction
                       (a free z^0 too when free_bottom); with momentum (consts[4]) zp holds the previous states,
                       set to the states themselves before the first step (no velocity)
        final          the predictions and errors of the final states (energy into en[T])"""
    geo, L, Wp, Ec, bm, poff, K, s, consts, pcn, V = (net.geo, net.L, net.Wp, net.Ec, net.bm, net.poff, net.K,
                                                      net.s, net.consts, net.pcn, net.V)
    T, free_bottom = steps.T, steps.free_bottom
    leak = consts[0]
    if steps.init:
        for l in range(L, 1, -1):
            phi_map(ph, zt, geo[l, OFF], geo[l, C_] * geo[l, H_] * geo[l, W_] * V, leak, V)
            predict_layer(ph, zt, et, zbt, en[0], scratch, geo, l, Wp, bm, poff, K, s, np.int64(0), V)
    if steps.correct_first:
        _correct_all(zt, et, zp, geo, L, Ec, poff, K, s, consts, free_bottom, pcn, V)
    if consts[4] != 0:
        zp[:] = zt
    for t in range(T):
        _predict_all(zt, et, zbt, ph, en[t], scratch, geo, L, Wp, bm, poff, K, s, leak, np.int64(1), V)
        _correct_all(zt, et, zp, geo, L, Ec, poff, K, s, consts, free_bottom, pcn, V)
    if steps.final:
        _predict_all(zt, et, zbt, ph, en[T], scratch, geo, L, Wp, bm, poff, K, s, leak, np.int64(2), V)


@njit(**_opts)
def settle_tiles(t0, t1, tiles, net, steps):
    """settle_tile for tiles t0..t1-1 of `tiles` (a Tiles), on the network `net` (a Net), running `steps` (a Steps)."""
    ph = np.empty(net.nph, tiles.z.dtype)
    scratch = np.empty(net.V, tiles.z.dtype)
    for t in range(t0, t1):
        settle_tile(tiles.z[t], tiles.e[t], tiles.zb[t], tiles.zp[t], ph, tiles.en[t], scratch, net, steps)


# ---- the single operators, on tiles (ops.py), and the filter updates ---------------------------------

@njit(**_opts)
def conv2d_transpose_tiles(t0, t1, src, out, geo, Wp, V):
    """out = W ⊙_s src for tiles t0..t1-1: geo = [(C_out, H_out, W_out, 0, 0, 0), (C_in, H, W, 0, PT, PL), (K, s)]
    (no bias, no phi)."""
    K, s = geo[2, 0], geo[2, 1]
    Cu, Hu, Wu = geo[1, C_], geo[1, H_], geo[1, W_]
    Cl, Hl, Wl = geo[0, C_], geo[0, H_], geo[0, W_]
    Clp = padded(Cl)
    ky_t, y_t, ny = np.empty((Hl, K), np.int64), np.empty((Hl, K), np.int64), np.empty(Hl, np.int64)
    kx_t, x_t, nx = np.empty((Wl, K), np.int64), np.empty((Wl, K), np.int64), np.empty(Wl, np.int64)
    transpose_taps(Hl, Hu, K, s, geo[1, PT], ky_t, y_t, ny)
    transpose_taps(Wl, Wu, K, s, geo[1, PL], kx_t, x_t, nx)
    for t in range(t0, t1):
        st, ot = src[t], out[t]
        for Y in range(Hl):
            for X in range(Wl):
                for j0 in range(0, Cl, JB):
                    zero = vzeros(ot)
                    a0, a1, a2, a3 = tconv_pixel(st, np.int64(0), Cu, Wu, Wp, np.int64(0), Clp, j0, Y, X, K,
                                                 ky_t, y_t, ny, kx_t, x_t, nx, zero, zero, zero, zero, V)
                    o = ((Y * Wl + X) * Cl + j0) * V
                    vstore(ot, o, a0)
                    if j0 + 1 < Cl:
                        vstore(ot, o + V, a1)
                    if j0 + 2 < Cl:
                        vstore(ot, o + 2 * V, a2)
                    if j0 + 3 < Cl:
                        vstore(ot, o + 3 * V, a3)


@njit(**_opts)
def conv2d_tiles(t0, t1, src, out, geo, Ec, V):
    """out = E *_s src for tiles t0..t1-1: geo = [(C_in, H, W, 0, 0, 0), (C_out, Ho, Wo, 0, PT, PL), (K, s)]."""
    K, s = geo[2, 0], geo[2, 1]
    Cu, Hu, Wu = geo[1, C_], geo[1, H_], geo[1, W_]
    Cl, Hl, Wl = geo[0, C_], geo[0, H_], geo[0, W_]
    pt, pl = geo[1, PT], geo[1, PL]
    Cup = padded(Cu)
    for t in range(t0, t1):
        st, ot = src[t], out[t]
        for y in range(Hu):
            for x in range(Wu):
                for i0 in range(0, Cu, JB):
                    zero = vzeros(ot)
                    a0, a1, a2, a3 = conv_pixel(st, np.int64(0), Cl, Hl, Wl, Ec, np.int64(0), Cup, i0, y, x, K, s,
                                                pt, pl, zero, zero, zero, zero, V)
                    o = ((y * Wu + x) * Cu + i0) * V
                    vstore(ot, o, a0)
                    if i0 + 1 < Cu:
                        vstore(ot, o + V, a1)
                    if i0 + 2 < Cu:
                        vstore(ot, o + 2 * V, a2)
                    if i0 + 3 < Cu:
                        vstore(ot, o + 3 * V, a3)


@njit(**_opts)
def _wgrad_tile(at, et, aoff, eoff, Cu, Hu, Wu, Cl, Hl, Wl, K, s, pt, pl, out, obase, scratch, V):
    """out[obase + ((i Cl + j) K + ky) K + kx] = sum over this tile's lanes and pixels of
    a[i, y, x] e[j, s y + ky - PT, s x + kx - PL]: Alg. 2 line 9, e *_1 Dilate(a, s), as a gather over the
    real pixels of a (no dilation zeros). Four maps j at once share each load of a; summed over the
    pixels in the dtype, then over the lanes in float64, in a fixed order."""
    for i in range(Cu):
        for ky in range(K):
            for kx in range(K):
                for j0 in range(0, Cl, JB):
                    j1, j2, j3 = min(j0 + 1, Cl - 1), min(j0 + 2, Cl - 1), min(j0 + 3, Cl - 1)   # past Cl: dropped
                    c0 = c1 = c2 = c3 = vzeros(at)
                    for y in range(Hu):
                        Y = y * s + ky - pt
                        if Y < 0 or Y >= Hl:
                            continue
                        for x in range(Wu):
                            X = x * s + kx - pl
                            if X < 0 or X >= Wl:
                                continue
                            a = vload(at, aoff + ((y * Wu + x) * Cu + i) * V)
                            pe = eoff + (Y * Wl + X) * Cl * V
                            c0 = vfmav(c0, a, vload(et, pe + j0 * V))
                            c1 = vfmav(c1, a, vload(et, pe + j1 * V))
                            c2 = vfmav(c2, a, vload(et, pe + j2 * V))
                            c3 = vfmav(c3, a, vload(et, pe + j3 * V))
                    for jj in range(min(JB, Cl - j0)):
                        vstore(scratch, 0, c0 if jj == 0 else (c1 if jj == 1 else (c2 if jj == 2 else c3)))
                        total = 0.0
                        for q in range(V):                   # fixed order over the tile's images
                            total += scratch[q]
                        out[obase + ((i * Cl + j0 + jj) * K + ky) * K + kx] = total


@njit(**_opts)
def weight_grad_tiles(t0, t1, a, e, out, geo, V):
    """Per-tile dW for tiles t0..t1-1: a (n_tiles, C_l*H*W*V), e (n_tiles, C_{l-1}*Ho*Wo*V) ->
    out (n_tiles, C_l*C_{l-1}*K*K) float64; geo as conv2d_tiles."""
    K, s = geo[2, 0], geo[2, 1]
    scratch = np.empty(V, a.dtype)
    for t in range(t0, t1):
        _wgrad_tile(a[t], e[t], np.int64(0), np.int64(0), geo[1, C_], geo[1, H_], geo[1, W_], geo[0, C_],
                    geo[0, H_], geo[0, W_], K, s, geo[1, PT], geo[1, PL], out[t], np.int64(0), scratch, V)


@njit(**_opts)
def filter_update_tiles(t0, t1, z, e, out, net):
    """Alg. 2 line 9 for every layer of tiles t0..t1-1: out[t] = (dW^1, ..., dW^L) of tile t, flat, float64,
    with phi(z^l) made once per layer; z, e (n_tiles, P) as in a Tiles, the network's geometry from `net`."""
    geo, L, K, s, leak, V = net.geo, net.L, net.K, net.s, net.consts[0], net.V
    ph = np.empty(net.nph, z.dtype)
    scratch = np.empty(V, z.dtype)
    for t in range(t0, t1):
        base = 0
        for l in range(1, L + 1):
            Cu, Hu, Wu = geo[l, C_], geo[l, H_], geo[l, W_]
            Cl, Hl, Wl = geo[l - 1, C_], geo[l - 1, H_], geo[l - 1, W_]
            phi_map(ph, z[t], geo[l, OFF], Cu * Hu * Wu * V, leak, V)
            _wgrad_tile(ph, e[t], np.int64(0), geo[l - 1, OFF], Cu, Hu, Wu, Cl, Hl, Wl, K, s, geo[l, PT], geo[l, PL],
                        out[t], base, scratch, V)
            base += Cu * Cl * K * K
