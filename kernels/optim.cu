// optim.cu: the filter updates of Sec. 3.2 / Algorithm 2 (Adam, the normalised step, the projection)
// and the bias displacement db. Displacements d are minus the energy gradient: descent adds them.
// Every kernel here is version 1: a direct port of the reference (no dev/cuda harness or later versions yet).
#include "common.cuh"

// adam_v1  ==  ngc_ref.optim._adam   (Kingma & Ba, bias-corrected; gradient g = -d)
// m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  p <- p - lr (m / c1) / (sqrt(v / c2) + eps)
// c1 = 1 - b1^t, c2 = 1 - b2^t and omb1 = 1 - b1, omb2 = 1 - b2 come from the host (float32).
// One thread per element.
extern "C" __global__ void adam_v1(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                                   const float* __restrict__ d, int n, float lr, float b1, float b2,
                                   float omb1, float omb2, float c1, float c2, float eps) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const float g = -d[k];
    const float mk = b1 * m[k] + omb1 * g;
    const float vk = b2 * v[k] + omb2 * (g * g);
    m[k] = mk;
    v[k] = vk;
    p[k] = p[k] - lr * (mk / c1) / (sqrtf(vk / c2) + eps);
}

// normalized_step_v1  ==  ngc_ref.optim._normalized   (Algorithm 2 line 12, descent sign)
// p[g] <- p[g] + lr d[g] / (||d[g]||_2 + eps) for each group g of `group` consecutive values:
// a K x K kernel of W or E (group = K*K), or the whole bias vector (one group of C).
// One thread per group, summing its squares serially (groups are small: 9 taps or tens of biases).
extern "C" __global__ void normalized_step_v1(float* __restrict__ p, const float* __restrict__ d,
                                              int n_groups, int group, float lr, float eps) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_groups) return;
    const float* dg = d + (long long)g * group;
    float* pg = p + (long long)g * group;
    float ss = 0.0f;
    for (int k = 0; k < group; ++k) ss += dg[k] * dg[k];
    const float denom = sqrtf(ss) + eps;
    for (int k = 0; k < group; ++k) pg[k] = pg[k] + lr * dg[k] / denom;
}

// project_kernels_v1  ==  ngc_ref.optim.project_kernels
// every kernel w[g] (KK = K*K consecutive values) with ||w[g]||_2 > max_norm is rescaled to max_norm.
// One thread per kernel.
extern "C" __global__ void project_kernels_v1(float* __restrict__ w, int n_kernels, int KK, float max_norm) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_kernels) return;
    float* wg = w + (long long)g * KK;
    float ss = 0.0f;
    for (int k = 0; k < KK; ++k) ss += wg[k] * wg[k];
    const float norm = sqrtf(ss);
    if (norm > max_norm) {
        const float scale = max_norm / fmaxf(norm, 1e-30f);
        for (int k = 0; k < KK; ++k) wg[k] = wg[k] * scale;
    }
}

// bias_grad_v1  ==  ngc_ref.model.filter_updates' db^l = sum of e^{l-1} over batch and space
// e: (B, C, HW) -> db: (C,), db[c] = sum_{b, r} e[b, c, r] / divisor. One block of NGC_REDUCE_THREADS
// threads per channel c = blockIdx.x, tree sum in shared memory (deterministic, no float atomics).
// A bias map (cfg.bias = "pixel", db summed over the batch only) is the same launch with C = C*H*W, HW = 1.
// divisor: 1 (cfg.reduce = "sum") or the batch size B ("mean"); x / 1 is exact, so "sum" is unchanged.
extern "C" __global__ void bias_grad_v1(const float* __restrict__ e, float* __restrict__ db,
                                        int B, int C, int HW, int divisor) {
    __shared__ float buf[NGC_REDUCE_THREADS];
    const int c = blockIdx.x;
    float part = 0.0f;
    for (int k = threadIdx.x; k < B * HW; k += NGC_REDUCE_THREADS) {
        const int b = k / HW, r = k % HW;
        part += e[((long long)b * C + c) * HW + r];
    }
    const float total = block_sum(part, buf);
    if (threadIdx.x == 0) db[c] = total / (float)divisor;
}
