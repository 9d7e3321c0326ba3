"""Moving arrays between the API's layout (NCHW, the reference's filters) and the kernels' tiles (kernels.py).

    to_tiles(a, V)              (B, C, H, W) -> (n_tiles, H*W*C*V): image b in tile b // V, lane b % V;
                                the lanes past B are zeros
    from_tiles(t, B, chw, V)    the inverse, (n_tiles, H*W*C*V) -> (B, C, H, W)
    geometry(cfg, V)            geo (L+1, 6) and the per-tile length P of the layered state buffer
    pack(params, cfg, dtype)    the filters and biases re-laid out for the inner loops: Wp, Ec, bm, poff
"""
import numpy as np

from ngc_ref.model import error_filters
from ngc_ref.ops import same_padding

from .kernels import padded
from .simd import lanes

__all__ = ["to_tiles", "from_tiles", "geometry", "pack", "n_tiles", "lanes"]


def n_tiles(B, V):
    return -(-B // V)


def to_tiles(a, V, out=None):
    """(B, C, H, W) -> (n_tiles, H*W*C*V), lanes past B zero; into `out` (n_tiles, >= H*W*C*V) if given."""
    B, C, H, W = a.shape
    n = C * H * W
    nt = n_tiles(B, V)
    if out is None:
        out = np.empty((nt, n * V), a.dtype)
    view = out[:, :n * V].reshape(nt, H, W, C, V)
    assert np.shares_memory(view, out), "to_tiles: the target must be a row-major block of rows"
    full = B // V
    if full:
        view[:full] = a[:full * V].reshape(full, V, C, H, W).transpose(0, 3, 4, 2, 1)
    if full < nt:                                     # the last, partial tile: zeros in the unused lanes
        view[full] = 0
        view[full, ..., :B - full * V] = a[full * V:].transpose(2, 3, 1, 0)
    return out


def from_tiles(t, B, chw, V):
    """(n_tiles, >= H*W*C*V) -> (B, C, H, W), a fresh C-contiguous array."""
    C, H, W = chw
    nt = t.shape[0]
    tiles = t[:, :C * H * W * V].reshape(nt, H, W, C, V).transpose(0, 4, 3, 1, 2)      # (nt, V, C, H, W)
    return np.ascontiguousarray(tiles.reshape(nt * V, C, H, W)[:B])


def geometry(cfg, V):
    """geo[l] = (C_l, H_l, W_l, offset of layer l in a tile's buffer, SAME pad before (rows, cols) of the
    strided conv from layer l-1 to l); and P, the length of one tile's buffer (all layers)."""
    L, C, K, s = cfg.L, cfg.layer_channels, cfg.kernel, cfg.stride
    geo = np.zeros((L + 1, 6), np.int64)
    off = 0
    for l in range(L + 1):
        H, W = cfg.map_hw(l)
        geo[l, :4] = C[l], H, W, off
        off += C[l] * H * W * V
        if l:
            Hb, Wb = cfg.map_hw(l - 1)
            geo[l, 4] = same_padding(Hb, K, s)[0]
            geo[l, 5] = same_padding(Wb, K, s)[0]
    return geo, off


def pack_predict(W, dtype):
    """W^l (C_l, C_{l-1}, K, K) -> flat [ky, kx, i, j], j padded to a multiple of JB with zeros."""
    Cu, Cl, K, _ = W.shape
    out = np.zeros((K, K, Cu, padded(Cl)), dtype)
    out[:, :, :, :Cl] = W.transpose(2, 3, 0, 1)
    return out.ravel()


def pack_conv(E, dtype):
    """E^l (C_l, C_{l-1}, K, K) -> flat [ky, kx, j, i], i padded to a multiple of JB with zeros."""
    Cu, Cl, K, _ = E.shape
    out = np.zeros((K, K, Cl, padded(Cu)), dtype)
    out[:, :, :, :Cu] = E.transpose(2, 3, 1, 0)
    return out.ravel()


def pack_bias(b, hw, dtype):
    """b^l, (C,) or (C, H, W) -> flat bias map [Y, X, j], j padded to a multiple of JB with zeros."""
    C = b.shape[0]
    out = np.zeros(tuple(hw) + (padded(C),), dtype)
    out[:, :, :C] = b if b.ndim == 1 else b.transpose(1, 2, 0)
    return out.ravel()


def pack(params, cfg, dtype, pi0=1.0):
    """All layers: Wp, Ec (E, or W itself when E = W^T), bm (flat) and poff (L+1, 3) = their offsets.
    pi0 scales E^1: pi0 E^1 *_s e^0 is the precision-weighted message of ngc_ref.model.corrections."""
    L = cfg.L
    E = error_filters(params)
    Wp, Ec, bm = [], [], []
    poff = np.zeros((L + 1, 3), np.int64)
    sizes = [0, 0, 0]
    for l in range(1, L + 1):
        parts = (pack_predict(params["W"][l], dtype), pack_conv(E[l] * pi0 if l == 1 and pi0 != 1 else E[l], dtype),
                 pack_bias(params["b"][l], cfg.map_hw(l - 1), dtype))
        for k, (lst, a) in enumerate(zip((Wp, Ec, bm), parts)):
            poff[l, k] = sizes[k]
            sizes[k] += a.size
            lst.append(a)
    return np.concatenate(Wp), np.concatenate(Ec), np.concatenate(bm), poff

