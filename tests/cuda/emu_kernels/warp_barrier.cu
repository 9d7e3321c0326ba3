// Test kernels for cuda_emu's "warp" order (tests/cuda/test_emu.py): a missing __syncthreads() that a warp
// shuffle hides from the orders that run every thread to its next synchronisation point.

// neighbour_warp_sum_v1: y[t] = (sum of x over t's warp, by shuffles) + x[(t + 32) % n], a value of the
// next warp read back from shared memory. The pattern of ngc_settle_v1's phase 1 -> phase 2: values
// stored, a warp reduction, then reads of values another warp stored.
extern "C" __global__ void neighbour_warp_sum_v1(const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float s[1024];
    const int t = threadIdx.x, n = blockDim.x;
    const int i = blockIdx.x * n + t;
    s[t] = x[i];
    float v = s[t];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);   // every lane: warp sum
    __syncthreads();                                   // s[] is complete before a thread reads another warp's entry
    y[i] = v + s[(t + 32) % n];
}

// neighbour_warp_sum_no_barrier: the same without the __syncthreads() (a planted bug). It is correct only
// if the shuffle were a block-wide barrier, which it is in the emulator's forward/reverse/shuffle orders
// (every thread reaches the shuffle before any warp is released) and never on a GPU.
extern "C" __global__ void neighbour_warp_sum_no_barrier(const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float s[1024];
    const int t = threadIdx.x, n = blockDim.x;
    const int i = blockIdx.x * n + t;
    s[t] = x[i];
    float v = s[t];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    y[i] = v + s[(t + 32) % n];                        // BUG: warp t/32 + 1 may not have stored s[] yet
}

// unwritten_static_smem: threads t >= count never write s[t] but read it back (a planted bug): the emulator
// fills static __shared__ memory with NaN before each block, so this reads NaN in every block and order.
extern "C" __global__ void unwritten_static_smem(const float* __restrict__ x, float* __restrict__ y, int count) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    if (t < count) s[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();                                   // every written entry is in place before it is read
    y[blockIdx.x * blockDim.x + t] = s[t];
}
