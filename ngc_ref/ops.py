"""The paper's operators, written literally in NumPy (Conv-NGC, Sec. 3 "Notation").

Layout, stated once for the whole project:
  activations  NCHW: (B, C, H, W)
  filters      W^l stored as (C_l, C_{l-1}, K, K): W[i, j] is the paper's W_ij, the kernel by which
               map i of layer l predicts map j of layer l-1 (Eq. 1).

Padding is TensorFlow's "SAME" (docs/reading.md, "Shapes and padding"): the strided convolution of an input of side n
produces ceil(n / s) outputs and pads max((out-1)*s + K - n, 0) zeros in total, the smaller half
before (top/left), the extra one after (bottom/right). For K=3, s=2 that is 0 before, 1 after. The
transposed convolution is the exact adjoint of that strided convolution.

Every convolution is written the way the paper defines it (Sec. 3 "Notation"): the transposed one is
dilate -> pad -> correlate with the flipped kernel, and the correlation is a plain loop over the K*K
filter taps, each contracting the channels with one matmul; no Python loop over pixels, channels or
batch. This is slow on purpose: it is the definition. The fast paths are ngc_cpu and ngc_cuda.
Everything computes in the dtype it is given.
"""
import numpy as np

__all__ = ["dilate", "same_padding", "pad2d", "conv2d", "conv2d_transpose", "conv2d_weight_grad",
           "conv_out_size"]


def conv_out_size(n, s):
    """SAME output side of a stride-s convolution over n inputs: ceil(n / s)."""
    return -(-n // s)


def same_padding(n, K, s):
    """TensorFlow SAME padding for a stride-s, K-tap convolution over n inputs: (before, after).

    total = max((ceil(n/s) - 1) * s + K - n, 0); before = total // 2; after = total - before.
    """
    out = conv_out_size(n, s)
    total = max((out - 1) * s + K - n, 0)
    return total // 2, total - total // 2


def dilate(x, s):
    """Dilate(v, s) (paper notation): insert s-1 zeros between neighbouring pixels.

    (B, C, H, W) -> (B, C, (H-1)*s + 1, (W-1)*s + 1); the stride-s transpose trick
    (Dumoulin & Visin, 2016).
    """
    B, C, H, W = x.shape
    out = np.zeros((B, C, (H - 1) * s + 1, (W - 1) * s + 1), x.dtype)
    out[:, :, ::s, ::s] = x                                           # (B, C, H', W')
    return out


def pad2d(x, top, bottom, left, right):
    """Zero-pad the two spatial axes of an NCHW array (zeros, then copy x into the middle)."""
    B, C, H, W = x.shape
    out = np.zeros((B, C, top + H + bottom, left + W + right), x.dtype)
    out[:, :, top:top + H, left:left + W] = x                         # (B, C, H+top+bottom, W+left+right)
    return out


def _correlate(x, w, s=1):
    """Multi-channel 'valid' cross-correlation at stride s (no padding here); every conv in this file ends here.

    out[b, o, y, x] = sum_{c, ky, kx} x[b, c, y*s + ky, x*s + kx] * w[o, c, ky, kx]
    x: (B, C, Hp, Wp), w: (O, C, K, K) -> (B, O, (Hp-K)//s + 1, (Wp-K)//s + 1)

    A loop over the K*K taps: the tap (ky, kx) sees the window x[:, :, ky::s, kx::s] (cropped to Ho x Wo),
    and its (O, C) matrix of weights mixes the channels of that window with one matmul
    (np.einsum("oc,bchw->bohw", ...) would say the same, measured 3-20x slower).
    """
    B, C, Hp, Wp = x.shape
    O, K = w.shape[0], w.shape[-1]
    Ho, Wo = (Hp - K) // s + 1, (Wp - K) // s + 1
    out = np.zeros((B, O, Ho, Wo), np.result_type(x, w))
    for ky in range(K):
        for kx in range(K):
            window = x[:, :, ky:ky + s * (Ho - 1) + 1:s, kx:kx + s * (Wo - 1) + 1:s]      # (B, C, Ho, Wo)
            out += (w[:, :, ky, kx] @ window.reshape(B, C, Ho * Wo)).reshape(B, O, Ho, Wo)
    return out


def conv2d(x, w, stride=2):
    """Strided convolution `*_s` (Eq. 2's bottom-up message E_ji *_s e_j^{l-1}).

    out[b, i] = sum_j SAMEpad(x[b, j]) (correlate, stride s) w[i, j]
    x: (B, C_{l-1}, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_l, ceil(H/s), ceil(W/s)).
    Like every deep-learning "convolution" it is a cross-correlation; with E = W^T (the paper's
    setting) pass the generative filters W unchanged: this op is then the adjoint of conv2d_transpose.
    """
    check_filters("conv2d", x, w, x.shape[1] == w.shape[1], "conv2d: x has %d channels, w expects %d"
                  % (x.shape[1], w.shape[1]))
    K = w.shape[-1]
    pt, pb = same_padding(x.shape[2], K, stride)
    pl, pr = same_padding(x.shape[3], K, stride)
    return _correlate(pad2d(x, pt, pb, pl, pr), w, stride)              # (B, C_l, Ho, Wo)


def conv2d_transpose(z, w, stride=2, out_hw=None):
    """Transposed convolution `⊙_s` (Eq. 1's W_ij ⊙_s phi(z_i)): dilate, pad, correlate with the flipped kernel.

    z: (B, C_l, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_{l-1}, H_out, W_out), H_out = s*H unless
    `out_hw` names the size of the layer below (needed when that size is odd: ceil(H_out/s) must be H).
    It is exactly the adjoint of conv2d with SAME padding over an input of side H_out:
      pad before = K - 1 - pad_before(SAME),  pad after = H_out + pad_before(SAME) - (H-1)*s - 1.
    """
    check_filters("conv2d_transpose", z, w, z.shape[1] == w.shape[0],
                  "conv2d_transpose: z has %d channels, w expects %d" % (z.shape[1], w.shape[0]))
    B, C, H, W = z.shape
    K = w.shape[-1]
    Ho, Wo = check_out_hw("conv2d_transpose", H, W, stride, out_hw)     # s*H x s*W unless out_hw names it
    pt, _ = same_padding(Ho, K, stride)
    pl, _ = same_padding(Wo, K, stride)
    zd = dilate(z, stride)                                              # (B, C_l, (H-1)s+1, (W-1)s+1)
    zp = pad2d(zd, K - 1 - pt, Ho + pt - zd.shape[2], K - 1 - pl, Wo + pl - zd.shape[3])
    w_flip = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)                  # (C_{l-1}, C_l, K, K), flipped
    return _correlate(zp, w_flip, 1)                                    # (B, C_{l-1}, Ho, Wo)


def conv2d_weight_grad(e, a, K, stride=2):
    """Sec. 3.2 / Alg. 2 line 9: Delta W_ij = e_j *_1 Dilate(a_i, s), summed over the batch.

    e: (B, C_{l-1}, Ho, Wo) error of the layer below, a = phi(z^l): (B, C_l, H, W) -> (C_l, C_{l-1}, K, K).
    The error, SAME-padded as for conv2d, is correlated at stride 1 with the dilated activity used as
    the kernel; the K x K 'valid' result is the filter displacement. With e = z - zbar this is minus
    the gradient of 1/2 ||e||^2 with respect to W (tested by finite differences).
    Written like `_correlate`: a loop over the K*K output taps, one contraction (over the batch and
    the pixels of the dilated activity) per tap.
    """
    check_weight_grad("conv2d_weight_grad", e, a, stride)
    B, C, H, W = a.shape
    pt, pb = same_padding(e.shape[2], K, stride)
    pl, pr = same_padding(e.shape[3], K, stride)
    ad = dilate(a, stride)                                              # (B, C_l, Hd, Wd)
    Hd, Wd = ad.shape[2:]
    ep = pad2d(e, pt, pb, pl, pr)                                       # (B, C_{l-1}, Ho+pt+pb, Wo+pl+pr)
    dW = np.zeros((C, e.shape[1], K, K), np.result_type(e, a))
    for ky in range(K):
        for kx in range(K):
            window = ep[:, :, ky:ky + Hd, kx:kx + Wd]                       # (B, C_{l-1}, Hd, Wd)
            dW[:, :, ky, kx] = np.tensordot(ad, window, axes=([0, 2, 3], [0, 2, 3]))   # (C_l, C_{l-1})
    return dW


# ---- the operators' shape rules, for every backend (ngc_cpu.ops, ngc_cuda): published by ngc_ref.checks ----
def check_filters(op, x, w, ok, msg):
    """4-D arrays x (B, C, H, W) and filters w (C_out, C_in, K, K), square, and `ok` (the channels agree; msg
    says how they do not)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("%s: expected 4-D arrays (B, C, H, W) and (C_out, C_in, K, K), got %s and %s"
                         % (op, tuple(x.shape), tuple(w.shape)))
    if w.shape[2] != w.shape[3]:
        raise ValueError("%s: filters must be square, got %s" % (op, tuple(w.shape),))
    if not ok:
        raise ValueError(msg)


def check_out_hw(op, H, W, s, out_hw=None):
    """The size (Ho, Wo) of the map a transposed convolution makes from an H x W map at stride s: s*H x s*W
    unless out_hw names it; it must map back (SAME: ceil(Ho/s) == H)."""
    Ho, Wo = (int(v) for v in out_hw) if out_hw is not None else (H * s, W * s)
    if conv_out_size(Ho, s) != H or conv_out_size(Wo, s) != W:
        raise ValueError("%s: output %dx%d does not map back to input %dx%d at stride %d "
                         "(SAME needs ceil(out/s) == in)" % (op, Ho, Wo, H, W, s))
    return Ho, Wo


def check_weight_grad(op, e, a, stride):
    """A filter displacement's error e (B, C_{l-1}, Ho, Wo) and activity a (B, C_l, ceil(Ho/s), ceil(Wo/s))."""
    if e.ndim != 4 or a.ndim != 4:
        raise ValueError("%s: expected 4-D arrays e (B, C_{l-1}, H, W) and a (B, C_l, h, w), got %s and %s"
                         % (op, tuple(e.shape), tuple(a.shape)))
    if e.shape[0] != a.shape[0] or (conv_out_size(e.shape[2], stride), conv_out_size(e.shape[3], stride)) \
            != tuple(a.shape[2:]):
        raise ValueError("%s: error %s and activity %s do not match at stride %d (the activity must be ceil(error "
                         "size / s) on each side, same batch)" % (op, tuple(e.shape), tuple(a.shape), stride))
