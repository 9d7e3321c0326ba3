// conv2d_weight_grad.cu: the filter displacement of Sec. 3.2 / Algorithm 2 line 9.
#include "common.cuh"

// conv2d_weight_grad_v1  ==  ngc_ref.ops.conv2d_weight_grad   (Alg. 2 line 9: dW_ij = e_j *_1 Dilate(a_i, s))
// dW[i, j, ky, kx] = sum_{b, p, q} act(a[b, i, p, q]) * e[b, j, p*s + ky - pt, q*s + kx - pl]
//   e: (B, Ce, He, We) error of the layer below, a: (B, Ca, ceil(He/s), ceil(We/s)) -> dW: (Ca, Ce, K, K),
//   pt/pl = SAME padding before for He/We; error pixels in the padding count as 0.
//   act = leaky_relu(., leak) when apply_phi (the model passes z^l and lets the kernel apply phi).
//   Each sum is divided by `divisor`: 1 (the op; cfg.reduce = "sum") or the batch size B ("mean": the
//   average over the batch); x / 1 is exact, so the sum is unchanged.
// One block of NGC_REDUCE_THREADS threads per kernel (i, j) = blockIdx.x; for each of the K*K taps
// the threads stride over the B*Ha*Wa products and meet in a shared-memory tree: deterministic,
// no float atomics, so a run reproduces bit for bit. Version 1 (no dev/cuda harness yet).
extern "C" __global__ void conv2d_weight_grad_v1(const float* __restrict__ e, const float* __restrict__ a,
                                                 float* __restrict__ dW, int B, int Ce, int He, int We,
                                                 int Ca, int K, int s, int apply_phi, float leak, int divisor) {
    __shared__ float buf[NGC_REDUCE_THREADS];
    const int i = blockIdx.x / Ce, j = blockIdx.x % Ce;
    const int Ha = conv_out_size(He, s), Wa = conv_out_size(We, s);
    const int pt = same_pad_before(He, K, s), pl = same_pad_before(We, K, s);
    const int n = B * Ha * Wa;
    for (int tap = 0; tap < K * K; ++tap) {
        const int ky = tap / K, kx = tap % K;
        float part = 0.0f;
        for (int k = threadIdx.x; k < n; k += NGC_REDUCE_THREADS) {
            const int q = k % Wa, p = (k / Wa) % Ha, b = k / (Wa * Ha);
            const int y = p * s + ky - pt, x = q * s + kx - pl;
            if (y < 0 || y >= He || x < 0 || x >= We) continue;
            float av = a[(((long long)b * Ca + i) * Ha + p) * Wa + q];
            if (apply_phi) av = leaky_relu(av, leak);
            part += av * e[(((long long)b * Ce + j) * He + y) * We + x];
        }
        const float total = block_sum(part, buf);   // all threads reach this: no early return above
        if (threadIdx.x == 0) dW[(long long)blockIdx.x * K * K + tap] = total / (float)divisor;
    }
}
