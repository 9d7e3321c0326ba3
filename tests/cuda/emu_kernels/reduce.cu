// Test kernels for cuda_emu (tests/cuda/test_emu.py): block reductions, shuffles, atomics, barrier misuse.
#include "common_test.cuh"

// block_sum_v1: out[blockIdx.x] = sum of x[i]^2 over the block's slice; tree reduction in static smem
extern "C" __global__ void block_sum_v1(const float* __restrict__ x, float* __restrict__ out, int n) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? square(x[i]) : 0.0f;
    __syncthreads();                                   // every s[t] written before anyone reads a partner
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();                               // this level finished before the next reads it
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

// block_sum_racy: the same with the first barrier missing (a deliberate bug)
extern "C" __global__ void block_sum_racy(const float* __restrict__ x, float* __restrict__ out, int n) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? square(x[i]) : 0.0f;
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

// early_exit: threads past n return before the barrier the others reach (a deliberate bug)
extern "C" __global__ void early_exit(float* x, int n) {
    __shared__ float s[128];
    const int t = threadIdx.x;
    if (t >= n) return;
    s[t] = x[t];
    __syncthreads();
    x[t] = s[n - 1 - t];
}

// divergent_barriers: even and odd threads wait at different __syncthreads() (a deliberate bug)
extern "C" __global__ void divergent_barriers(float* x) {
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    x[threadIdx.x] = 1.0f;
}

// reverse_dyn: x reversed per block through dynamic shared memory (count floats per block)
extern "C" __global__ void reverse_dyn(const float* __restrict__ x, float* __restrict__ y, int count) {
    extern __shared__ float buf[];
    const int t = threadIdx.x;
    const int base = blockIdx.x * count;
    for (int k = t; k < count; k += blockDim.x) buf[k] = x[base + k];
    __syncthreads();                                   // whole tile staged before reading it reversed
    for (int k = t; k < count; k += blockDim.x) y[base + k] = buf[count - 1 - k];
}

// atomic_sum: *out += sum of x, one atomicAdd per thread across all blocks; 2D block for index math
extern "C" __global__ void atomic_sum(const float* __restrict__ x, float* out, int n) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    const int i = blockIdx.x * (blockDim.x * blockDim.y) + t;
    if (i < n) atomicAdd(out, x[i]);
}

// warp_sum: out[warp] = sum over a warp with __shfl_down_sync; lane 0 writes
extern "C" __global__ void warp_sum(const float* __restrict__ x, float* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) out[i / 32] = v;
}

// scalars: y[i] = a * x[i] + b for i < n, with an unsigned and a double parameter
extern "C" __global__ void scalars(const float* __restrict__ x, float* __restrict__ y, unsigned n, float a, double b) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + (float)b;
}

// big_stack: a local array larger than the emulator's fiber stack (CUDA would spill to local memory)
extern "C" __global__ void big_stack(float* x, int n) {
    volatile float local[40000];
    for (int k = 0; k < 40000; ++k) local[k] = x[k % n];
    x[threadIdx.x] = local[(threadIdx.x * 7919) % 40000];
}
