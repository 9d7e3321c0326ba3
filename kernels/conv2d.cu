// conv2d.cu: the strided SAME convolution `*_s` (Eq. 2's bottom-up message E_ji *_s e_j^{l-1}).
#include "common.cuh"

// conv2d_fwd_v1  ==  ngc_ref.ops.conv2d   (Eq. 2, the strided convolution *_s)
// out[b, co, y, x] = sum_{c, ky, kx} SAMEpad(x)[b, c, y*s + ky, x*s + kx] * w[co, c, ky, kx]
// x: (B, Cin, H, W), w: (Cout, Cin, K, K) -> out: (B, Cout, ceil(H/s), ceil(W/s)), all float32 NCHW.
// One thread per output pixel (b, co, y, x) in NCHW order; each loops over Cin*K*K taps.
// Version 1: a naive port of the reference loop (no dev/cuda harness or later versions yet).
// Only the tests run it (rung 1 of kernels/README.md): the model runs the fused kernels of ngc_step.cu,
// which call the same per-pixel function of common.cuh.
extern "C" __global__ void conv2d_fwd_v1(const float* __restrict__ x, const float* __restrict__ w,
                                         float* __restrict__ out, int B, int Cin, int H, int W,
                                         int Cout, int K, int s) {
    const int Ho = conv_out_size(H, s), Wo = conv_out_size(W, s);
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * Cout * Ho * Wo) return;
    const int xo = idx % Wo;
    const int y = (idx / Wo) % Ho;
    const int co = (idx / (Wo * Ho)) % Cout;
    const int b = idx / (Wo * Ho * Cout);
    const int pt = same_pad_before(H, K, s), pl = same_pad_before(W, K, s);
    out[idx] = conv2d_pixel(x, w, b, co, y, xo, Cin, H, W, K, s, pt, pl);
}
