// common.cuh: device helpers shared by kernels/*.cu (one copy of the index arithmetic).
//
// Compiles three ways: nvcc, NVRTC (CuPy RawModule) and g++ through the CPU emulator, which
// force-includes cuda_emu/cuda_emu.h ahead of the source (so nothing is included for it here).
// No standard headers: NVRTC has none, and sqrtf/fmaxf/min are builtins on every side.
#pragma once

// Threads per block of the tree reductions (block_sum). A power of two; the Python wrappers launch
// the reduction kernels with exactly this many threads. Like every constant a kernel shares with its
// wrapper, it comes as a -D option from ngc_cuda/defines.py.
#ifndef NGC_REDUCE_THREADS
#error "compile kernels/*.cu with the -D options of ngc_cuda/defines.py (kernel_defines): NGC_REDUCE_THREADS is missing"
#endif

// A kernel that splits its dynamic shared memory into areas names them, so that the CPU emulator can check
// the guard zones it leaves between them (cuda_emu/README.md). Nothing on a GPU.
#ifndef CUDA_EMU_SHARED_AREA
#define CUDA_EMU_SHARED_AREA(name, ptr, count) ((void)0)
#endif

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

// ngc_ref.ops.conv_out_size: SAME output side of a stride-s convolution over n inputs, ceil(n / s).
__device__ __forceinline__ int conv_out_size(int n, int s) { return ceil_div(n, s); }

// ngc_ref.ops.same_padding(n, K, s)[0]: zeros before (top/left) of TensorFlow SAME padding,
// total = max((ceil(n/s) - 1)*s + K - n, 0), before = total / 2 (the extra one goes after).
__device__ __forceinline__ int same_pad_before(int n, int K, int s) {
    int total = (conv_out_size(n, s) - 1) * s + K - n;
    return total > 0 ? total / 2 : 0;
}

// ngc_ref.model.phi / phi_prime: leaky ReLU with slope `leak` (leak = 1 gives the identity). One of four
// definitions, one per language; the list of what to change with the activation is above ngc_ref.model.phi.
__device__ __forceinline__ float leaky_relu(float v, float leak) { return v > 0.0f ? v : v * leak; }
__device__ __forceinline__ float leaky_relu_prime(float v, float leak) { return v > 0.0f ? 1.0f : leak; }

// One pixel of ngc_ref.ops.conv2d (strided SAME correlation):
//   out[b, co, y, xo] = sum_{c, ky, kx} x[b, c, y*s + ky - pt, xo*s + kx - pl] * w[co, c, ky, kx]
// x: (B, Cin, H, W), w: (Cout, Cin, K, K); taps that land in the padding contribute nothing.
__device__ __forceinline__ float conv2d_pixel(const float* __restrict__ x, const float* __restrict__ w,
                                              int b, int co, int y, int xo, int Cin, int H, int W,
                                              int K, int s, int pt, int pl) {
    float acc = 0.0f;
    for (int c = 0; c < Cin; ++c) {
        const float* xc = x + ((long long)b * Cin + c) * H * W;
        const float* wc = w + ((long long)co * Cin + c) * K * K;
        for (int ky = 0; ky < K; ++ky) {
            const int iy = y * s + ky - pt;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < K; ++kx) {
                const int ix = xo * s + kx - pl;
                if (ix < 0 || ix >= W) continue;
                acc += xc[iy * W + ix] * wc[ky * K + kx];
            }
        }
    }
    return acc;
}

// One pixel of ngc_ref.ops.conv2d_transpose, the adjoint of conv2d_pixel, written as a gather
// (no dilated copy): output (Y, X) of side (Ho, Wo) receives input (p, q) through tap (ky, kx)
// exactly when p*s + ky - pt == Y, i.e. ky = Y + pt - p*s; pt = same_pad_before(Ho, K, s).
//   out[b, cj, Y, X] = sum_{i, ky, kx} act(z[b, i, p, q]) * w[i, cj, ky, kx]
// z: (B, Cz, H, W), w: (Cz, Cout, K, K). act = leaky_relu(., leak) when apply_phi (Eq. 1's phi(z)).
__device__ __forceinline__ float conv2d_transpose_pixel(const float* __restrict__ z, const float* __restrict__ w,
                                                        int b, int cj, int Y, int X, int Cz, int H, int W,
                                                        int Cout, int K, int s, int pt, int pl,
                                                        int apply_phi, float leak) {
    const int ty = Y + pt, tx = X + pl;      // >= 0: a tap ky reaches input row p = (ty - ky) / s
    float acc = 0.0f;
    for (int i = 0; i < Cz; ++i) {
        const float* zi = z + ((long long)b * Cz + i) * H * W;
        const float* wi = w + ((long long)i * Cout + cj) * K * K;
        for (int ky = ty % s; ky < K && ky <= ty; ky += s) {     // only taps with (ty - ky) % s == 0
            const int p = (ty - ky) / s;
            if (p >= H) continue;
            for (int kx = tx % s; kx < K && kx <= tx; kx += s) {
                const int q = (tx - kx) / s;
                if (q >= W) continue;
                float v = zi[p * W + q];
                if (apply_phi) v = leaky_relu(v, leak);
                acc += v * wi[ky * K + kx];
            }
        }
    }
    return acc;
}

// Deterministic tree sum of one value per thread over a block of exactly NGC_REDUCE_THREADS
// threads; every thread gets the total. buf: NGC_REDUCE_THREADS floats of __shared__ memory.
// The order of the additions is fixed, so results are bitwise reproducible (no float atomics).
__device__ __forceinline__ float block_sum(float v, float* buf) {
    const int t = threadIdx.x;
    buf[t] = v;
    __syncthreads();                          // every partial is in buf before any thread reads a neighbour's
    for (int h = NGC_REDUCE_THREADS / 2; h > 0; h >>= 1) {
        if (t < h) buf[t] += buf[t + h];
        __syncthreads();                      // this level is complete before the next level reads it
    }
    const float total = buf[0];
    __syncthreads();                          // everyone has read buf[0] before buf is reused
    return total;
}
