// ngc_step.cu: one synchronous settling step of Conv-NGC (Eq. 1, Eq. 2, Eq. 3), fused per layer.
//
// A step runs ngc_predict_error_v1 for every layer l = 1..L (all from the current states), then
// ngc_correct_v1 for every free layer (in place: each thread reads and writes only its own z pixel,
// and no kernel of the correction phase reads another layer's z), then ngc_energy_v1 for the trace.
// Every kernel here is version 1: a direct port of the reference (no dev/cuda harness or later versions yet).
// In shapes, m stands for the layer below, l - 1: (Cm, Hm, Wm).
#include "common.cuh"

// b^l at output pixel idx of a (B, Cm, Hm, Wm) prediction: bias[j], one scalar per map (cfg.bias = "channel"),
// or bias[j, Y, X] of a bias map (Cm, Hm, Wm) when bias_pixel (cfg.bias = "pixel").
__device__ __forceinline__ float ngc_bias_at(const float* __restrict__ bias, int idx, int j, int CHWm, int bias_pixel) {
    return bias_pixel ? bias[idx % CHWm] : bias[j];
}

// ngc_predict_v1  ==  ngc_ref.model.predict   (Eq. 1; also the ancestral pass of Algorithm 1)
// zbar[b, j, Y, X] = g( sum_{i, ky, kx} W[i, j, ky, kx] phi(z_l[b, i, p, q]) + bias[j (, Y, X)] ),  g = identity
// z_l: (B, Cl, H, W), W = W^l: (Cl, Cm, K, K), bias = b^l: (Cm,), or (Cm, Hm, Wm) when bias_pixel
// -> zbar: (B, Cm, Hm, Wm), ceil(Hm/s) == H.
// One thread per output pixel (b, j, Y, X); the transposed conv is a gather (common.cuh).
extern "C" __global__ void ngc_predict_v1(const float* __restrict__ z_l, const float* __restrict__ W,
                                          const float* __restrict__ bias, float* __restrict__ zbar,
                                          int B, int Cl, int H, int Wd, int Cm, int Hm, int Wm,
                                          int K, int s, float leak, int bias_pixel) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * Cm * Hm * Wm) return;
    const int X = idx % Wm, Y = (idx / Wm) % Hm, j = (idx / (Wm * Hm)) % Cm, b = idx / (Wm * Hm * Cm);
    const int pt = same_pad_before(Hm, K, s), pl = same_pad_before(Wm, K, s);
    zbar[idx] = conv2d_transpose_pixel(z_l, W, b, j, Y, X, Cl, H, Wd, Cm, K, s, pt, pl, 1, leak)
              + ngc_bias_at(bias, idx, j, Cm * Hm * Wm, bias_pixel);
}

// ngc_predict_error_v1  ==  ngc_ref.model.predictions_and_errors, one layer   (Eq. 1 + error units)
// zbar^{l-1} = g(W^l ⊙_s phi(z^l) + b^l),  e^{l-1} = z^{l-1} - zbar^{l-1}, in one pass.
// z_l: (B, Cl, H, W), z_below: (B, Cm, Hm, Wm) -> zbar, e: (B, Cm, Hm, Wm); bias as ngc_predict_v1.
// write_zbar = 0 inside the settling loop: only e is stored (the correction needs e, not zbar), so a
// step keeps nothing in device memory beyond states and errors; the final pass stores zbar too.
// One thread per pixel of the layer below.
extern "C" __global__ void ngc_predict_error_v1(const float* __restrict__ z_l, const float* __restrict__ W,
                                                const float* __restrict__ bias, const float* __restrict__ z_below,
                                                float* __restrict__ zbar, float* __restrict__ e,
                                                int B, int Cl, int H, int Wd, int Cm, int Hm, int Wm,
                                                int K, int s, float leak, int bias_pixel, int write_zbar) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * Cm * Hm * Wm) return;
    const int X = idx % Wm, Y = (idx / Wm) % Hm, j = (idx / (Wm * Hm)) % Cm, b = idx / (Wm * Hm * Cm);
    const int pt = same_pad_before(Hm, K, s), pl = same_pad_before(Wm, K, s);
    const float pred = conv2d_transpose_pixel(z_l, W, b, j, Y, X, Cl, H, Wd, Cm, K, s, pt, pl, 1, leak)
                     + ngc_bias_at(bias, idx, j, Cm * Hm * Wm, bias_pixel);
    if (write_zbar) zbar[idx] = pred;
    e[idx] = z_below[idx] - pred;
}

// ngc_correct_v1  ==  ngc_ref.model.correct, one layer   (Eq. 2)
// d^l = -e^l + sum_j E^l_ji (strided conv, stride s) e^{l-1}_j   [times phi'(z^l) when pcn]
// z^l <- z^l + beta d^l - gamma z^l                                 (in place)
// z^l <- z^l + beta d^l             when no_leak (a free z^0 with cfg.gamma_bottom = False)
// z, e_own: (B, Cl, H, W); e_below: (B, Cm, Hm, Wm) with ceil(Hm/s) == H; E: (Cl, Cm, K, K).
// has_own = 0 for the top layer (e^L = 0), has_below = 0 for a free bottom layer (d^0 = -e^0);
// the unused array arguments are then never read. One thread per pixel of layer l.
extern "C" __global__ void ngc_correct_v1(float* __restrict__ z, const float* __restrict__ e_own,
                                          const float* __restrict__ e_below, const float* __restrict__ E,
                                          int B, int Cl, int H, int Wd, int Cm, int Hm, int Wm,
                                          int K, int s, float beta, float gamma, float leak,
                                          int has_own, int has_below, int pcn, int no_leak) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * Cl * H * Wd) return;
    const int x = idx % Wd, y = (idx / Wd) % H, i = (idx / (Wd * H)) % Cl, b = idx / (Wd * H * Cl);
    const float zv = z[idx];
    float d = has_own ? -e_own[idx] : 0.0f;
    if (has_below) {
        const int pt = same_pad_before(Hm, K, s), pl = same_pad_before(Wm, K, s);
        float up = conv2d_pixel(e_below, E, b, i, y, x, Cm, Hm, Wm, K, s, pt, pl);
        if (pcn) up *= leaky_relu_prime(zv, leak);
        d += up;
    }
    z[idx] = no_leak ? zv + beta * d : zv + beta * d - gamma * zv;
}

// ngc_energy_v1  ==  ngc_ref.model.energy, one layer's term   (Eq. 3, positive: F = 1/2 sum_l ||e^l||^2)
// energy[b] (+)= 1/2 sum_k e[b, k]^2 over the n = C*H*W values of image b; accumulate = 0 overwrites.
// One block of NGC_REDUCE_THREADS threads per image b = blockIdx.x, tree sum in shared memory
// (deterministic). Launch once per layer l = 0..L-1 in a fixed order to build the per-image total.
extern "C" __global__ void ngc_energy_v1(const float* __restrict__ e, float* __restrict__ energy,
                                         int n, int accumulate) {
    __shared__ float buf[NGC_REDUCE_THREADS];
    const float* eb = e + (long long)blockIdx.x * n;
    float part = 0.0f;
    for (int k = threadIdx.x; k < n; k += NGC_REDUCE_THREADS) part += eb[k] * eb[k];
    const float total = 0.5f * block_sum(part, buf);
    if (threadIdx.x == 0) energy[blockIdx.x] = accumulate ? energy[blockIdx.x] + total : total;
}
