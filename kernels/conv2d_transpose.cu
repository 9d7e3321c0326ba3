// conv2d_transpose.cu: the transposed convolution `⊙_s` of Eq. 1, the exact adjoint of conv2d.
#include "common.cuh"

// conv2d_transpose_fwd_v1  ==  ngc_ref.ops.conv2d_transpose   (Eq. 1, W_ij ⊙_s z_i)
// out[b, j, Y, X] = sum_{i, ky, kx : p*s + ky - pt == Y, q*s + kx - pl == X} z[b, i, p, q] * w[i, j, ky, kx]
// z: (B, Cz, H, W), w: (Cz, Cout, K, K) -> out: (B, Cout, Ho, Wo) with ceil(Ho/s) == H, ceil(Wo/s) == W.
// A gather: one thread per output pixel (b, j, Y, X) sums the input pixels and taps that reach it,
// so the dilated, padded copy of the reference is never built and no two threads write one pixel.
// Version 1: a naive gather (no dev/cuda harness or later versions yet).
// Only the tests run it (rung 1 of kernels/README.md): the model runs the fused kernels of ngc_step.cu,
// which call the same per-pixel function of common.cuh.
extern "C" __global__ void conv2d_transpose_fwd_v1(const float* __restrict__ z, const float* __restrict__ w,
                                                   float* __restrict__ out, int B, int Cz, int H, int W,
                                                   int Cout, int Ho, int Wo, int K, int s) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * Cout * Ho * Wo) return;
    const int X = idx % Wo;
    const int Y = (idx / Wo) % Ho;
    const int j = (idx / (Wo * Ho)) % Cout;
    const int b = idx / (Wo * Ho * Cout);
    const int pt = same_pad_before(Ho, K, s), pl = same_pad_before(Wo, K, s);
    out[idx] = conv2d_transpose_pixel(z, w, b, j, Y, X, Cz, H, W, Cout, K, s, pt, pl, 0, 0.0f);
}
