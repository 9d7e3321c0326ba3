// Does not compile: the NVRTC log must reach the test.
extern "C" __global__ void broken(float* x) {
    x[threadIdx.x] = undefined_name;
}
