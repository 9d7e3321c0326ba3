// A deliberately broken kernel: writes one element past the end of y (the sanitizer test).
extern "C" __global__ void oob_write(const float* __restrict__ x, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 2.0f * x[i < n ? i : 0];   // BUG: i == n writes past the end
}
