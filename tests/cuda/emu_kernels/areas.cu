// Test kernel for cuda_emu's guard zones (tests/cuda/test_emu.py): dynamic shared memory split into two named
// areas, `a` and `b` (n floats each), with `gap` unused floats after each.
#ifndef CUDA_EMU_SHARED_AREA                       // only the emulator checks areas (kernels/common.cuh does the same)
#define CUDA_EMU_SHARED_AREA(name, ptr, count) ((void)0)
#endif

// y = x + 2x through the two areas; over_a / over_b extra floats are written past the end of a / b (planted bugs).
extern "C" __global__ void two_areas(const float* __restrict__ x, float* __restrict__ y, int n, int gap,
                                     int over_a, int over_b) {
    extern __shared__ float smem[];
    float* a = smem;
    float* b = smem + n + gap;
    CUDA_EMU_SHARED_AREA("a", a, n);
    CUDA_EMU_SHARED_AREA("b", b, n);
    for (int k = threadIdx.x; k < n + over_a; k += blockDim.x) a[k] = x[k % n];
    for (int k = threadIdx.x; k < n + over_b; k += blockDim.x) b[k] = 2.0f * x[k % n];
    __syncthreads();                                   // both areas complete before they are read
    for (int k = threadIdx.x; k < n; k += blockDim.x) y[k] = a[k] + b[k];
}
