// Shared helper for the emulator test kernels (checks that #include "..." works on both sides).
#pragma once
__device__ __forceinline__ float square(float x) { return x * x; }
