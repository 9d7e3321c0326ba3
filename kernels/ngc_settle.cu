// ngc_settle.cu: the whole of Algorithm 1 (ancestral initialisation + T synchronous settling steps) in
// ONE launch, one thread block per image, everything that image needs held in shared memory.
//
// ngc_settle_v1  ==  ngc_ref.model.settle   (Algorithm 1; Eq. 1 predictions, Eq. 2 corrections, Eq. 3 energy)
//   grid  = (B,), one block per image b;  block = any multiple of 32 up to 1024 threads (512 by default).
//   K = 3, s = 2 (the paper) runs fully unrolled tap loops (templates <3, 2>); any other K, s the generic <0, 0>.
//   Threads stride over "items" of a flattened list that spans all layers at once, so a tiny top layer
//   does not leave most of the block idle:
//     predict item   (l, j-chunk, parity py/px, y', x'): NGC_SETTLE_JT maps j of layer l-1 at pixel
//                    (y, x) = (y'*s + py, x'*s + px). Items are grouped by the pixel's parity (phase), so the
//                    32 lanes of a warp visit the same taps of the transposed conv and do not diverge.
//     correct item   (l, i-chunk, y, x): NGC_SETTLE_JT maps i of layer l at one pixel.
//   dev/cuda version: first version (v1), written directly against the reference; no earlier versions.
//
// Shared memory (dynamic, float32 unless said otherwise), per image, in this order:
//   hdr   NGC_HDR_INTS ints   C_l, H_l, W_l, state/weight/bias offsets, item counts (filled by thread 0 from `dims`)
//   red   NGC_RED_FLOATS      per-warp partial energies for the block reduction
//   z     sum_{l=0..L}   C_l H_l W_l       states z^0..z^L
//   e     sum_{l=0..L-1} C_l H_l W_l       errors e^0..e^{L-1} (e^L = 0 is never stored)
//   W     sum_l C_l C_{l-1} K K            generative filters W^1..W^L, the reference's layout
//   b     sum_{l=1..L} C_{l-1}             biases b^1..b^L, b^l one scalar per map of layer l-1; with
//                                          NGC_BIAS_PIXEL (cfg.bias = "pixel") bias maps b^l (C_{l-1}, H_{l-1},
//                                          W_{l-1}): sum_{l=1..L} C_{l-1} H_{l-1} W_{l-1} floats, as many as e
//   E     like W, only if the error filters are learnable (otherwise phase 2 reads W: E = W^T)
// each area followed by NGC_SMEM_GUARD unused floats: 0 on a GPU; in the CPU emulator a guard zone, and the
// kernel names its areas (CUDA_EMU_SHARED_AREA) so that a write running out of one is reported by name.
// ngc_cuda/settle_whole.py:layout describes the same areas, and tests/cuda/test_cuda_settle_whole.py compares it
// with the areas this kernel names.
//
// Global layout of the outputs: each of z_out, zbar_out, e_out is the concatenation over layers of
// (B, C_l, H_l, W_l) blocks, so every layer is one contiguous slice on the host. energy_out is (T+1, B).
//
// Numerics: float32, same operation order as the reference where it is cheap
// (zbar = sum + b; d = -e + up; z = z + beta*d - gamma*z). No fast math.
#include "common.cuh"

// Constants shared with the wrapper come as -D options from ngc_cuda/defines.py (kernel_defines).
#if !defined(NGC_MAXL) || !defined(NGC_HDR_INTS) || !defined(NGC_RED_FLOATS) || !defined(NGC_SMEM_GUARD) || \
    !defined(NGC_PCN) || !defined(NGC_CLAMP_FIRST) || !defined(NGC_LEARN_E) || !defined(NGC_BIAS_PIXEL) || \
    !defined(NGC_NO_GAMMA_BOTTOM)
#error "compile ngc_settle.cu with the -D options of ngc_cuda/defines.py (kernel_defines(\"ngc_settle\"))"
#endif
#ifndef NGC_SETTLE_JT
#define NGC_SETTLE_JT 4            // maps per item: one loaded input value feeds JT FMAs (a tuning knob)
#endif

// header slots (ints) at the start of dynamic shared memory, NGC_MAXL + 1 per layer list
#define HDR_C      0                               // C_l, l = 0..L
#define HDR_H      (HDR_C + NGC_MAXL + 1)          // H_l
#define HDR_W      (HDR_H + NGC_MAXL + 1)          // W_l
#define HDR_ZOFF   (HDR_W + NGC_MAXL + 1)          // offset of z^l in the z area (floats); e^l uses the same offsets
#define HDR_WOFF   (HDR_ZOFF + NGC_MAXL + 1)       // offset of W^l (l >= 1) in the W area; HDR_WOFF+0 unused
#define HDR_BOFF   (HDR_WOFF + NGC_MAXL + 1)       // offset of b^l (l >= 1) in the bias area; HDR_BOFF+0 unused
#define HDR_MISC   (HDR_BOFF + NGC_MAXL + 1)       // [+0] n_z, [+1] n_w, [+2] n_b, [+3] n_e (floats of each area)
#define HDR_PSTART (HDR_MISC + 4)                  // first phase-1 item of layer pair l, l = 1..L+1 (prefix sums)
#define HDR_CSTART (HDR_PSTART + NGC_MAXL + 2)     // first phase-2 item of layer l, l = 1..L+1
static_assert(HDR_CSTART + NGC_MAXL + 2 == NGC_HDR_INTS, "NGC_HDR_INTS (ngc_cuda/defines.py) != the header's slots");
static_assert(NGC_RED_FLOATS * 32 >= 1024, "NGC_RED_FLOATS: one partial energy per warp of a 1024-thread block");

// Number of predict items of layer pair l (maps of layer l-1 in chunks of JT, times parity-grouped pixels).
static __device__ __forceinline__ int ngc_predict_items(const int* hdr, int l, int s) {
    int Cm = hdr[HDR_C + l - 1], Hm = hdr[HDR_H + l - 1], Wm = hdr[HDR_W + l - 1];
    return ceil_div(Cm, NGC_SETTLE_JT) * s * s * ceil_div(Hm, s) * ceil_div(Wm, s);
}

// Eq. 1 for one predict item of layer pair l: JT maps j0.. of zbar^{l-1} at pixel (y, x), gather form of
// the transposed conv: zbar[j, y, x] = b^l_j + sum_{i, ky, kx} W[i, j, ky, kx] phi(z^l[i, (y+pt-ky)/s, (x+pl-kx)/s])
// over the taps where (y+pt-ky) and (x+pl-kx) are multiples of s and land inside layer l; b^l_{j, y, x} of a
// bias map when bias_pixel.
// Returns false when the item's pixel falls outside the map (only when H_{l-1} is not a multiple of s).
// KK, SS: compile-time K and s (the paper's 3 and 2, so the tap loops unroll), or 0 to use K_rt, s_rt.
template <int KK, int SS>
static __device__ __forceinline__ bool ngc_predict_item(const int* hdr, const float* zs, const float* Ws,
                                                        const float* bs, int l, int item, int K_rt, int s_rt,
                                                        float leak, bool bias_pixel, float zb[NGC_SETTLE_JT],
                                                        int& j0, int& jn, int& pix) {
    const int K = KK ? KK : K_rt, s = SS ? SS : s_rt;
    const int Cl = hdr[HDR_C + l], Hl = hdr[HDR_H + l], Wl = hdr[HDR_W + l];
    const int Cm = hdr[HDR_C + l - 1], Hm = hdr[HDR_H + l - 1], Wm = hdr[HDR_W + l - 1];
    const int Hq = ceil_div(Hm, s), Wq = ceil_div(Wm, s);
    // item -> (jc, py, px, yq, xq), xq fastest
    const int xq = item % Wq;  int r = item / Wq;
    const int yq = r % Hq;     r /= Hq;
    const int px = r % s;      r /= s;
    const int py = r % s;      const int jc = r / s;
    const int y = yq * s + py, x = xq * s + px;
    if (y >= Hm || x >= Wm) return false;
    j0 = jc * NGC_SETTLE_JT;
    jn = min(NGC_SETTLE_JT, Cm - j0);
    pix = y * Wm + x;
    const int pt = same_pad_before(Hm, K, s), pl = same_pad_before(Wm, K, s);
    const float* z = zs + hdr[HDR_ZOFF + l];                         // (C_l, H_l, W_l)
    const float* w = Ws + hdr[HDR_WOFF + l];                         // (C_l, C_{l-1}, K, K)
    float acc[NGC_SETTLE_JT];
#pragma unroll
    for (int jj = 0; jj < NGC_SETTLE_JT; ++jj) acc[jj] = 0.0f;
    const int ky0 = (y + pt) % s, kx0 = (x + pl) % s;                // first tap of this pixel's phase
    for (int i = 0; i < Cl; ++i) {
        const float* zi = z + i * Hl * Wl;
        const float* wi = w + (i * Cm + j0) * K * K;
        // taps ky = ky0, ky0 + s, ... < K: at most ceil(K/s) of them (a constant trip count when KK, SS are)
#pragma unroll
        for (int ty = 0; ty < (K + s - 1) / s; ++ty) {
            const int ky = ky0 + ty * s;
            if (ky >= K) break;
            const int iy = (y + pt - ky) / s;                        // exact: y+pt-ky is a multiple of s
            if (iy < 0 || iy >= Hl) continue;
#pragma unroll
            for (int tx = 0; tx < (K + s - 1) / s; ++tx) {
                const int kx = kx0 + tx * s;
                if (kx >= K) break;
                const int ix = (x + pl - kx) / s;
                if (ix < 0 || ix >= Wl) continue;
                const float a = leaky_relu(zi[iy * Wl + ix], leak);
#pragma unroll
                for (int jj = 0; jj < NGC_SETTLE_JT; ++jj)
                    if (jj < jn) acc[jj] += wi[jj * K * K + ky * K + kx] * a;
            }
        }
    }
    const float* b = bs + hdr[HDR_BOFF + l];                         // b^l: (C_{l-1},) or (C_{l-1}, H_{l-1}, W_{l-1})
#pragma unroll
    for (int jj = 0; jj < NGC_SETTLE_JT; ++jj)                       // g = identity
        zb[jj] = (jj < jn) ? acc[jj] + (bias_pixel ? b[(j0 + jj) * Hm * Wm + pix] : b[j0 + jj]) : 0.0f;
    return true;
}

// Eq. 2 for one correct item of layer l: NGC_SETTLE_JT maps i0.. of layer l at pixel (oy, ox).
//   up_i = sum_{j, ky, kx} E[i, j, ky, kx] e^{l-1}[j, oy*s + ky - pt, ox*s + kx - pl]   (SAME strided conv)
//   d = -e^l + up (x phi'(z^l) in PCN mode; e^L = 0);  z^l <- z^l + beta d - gamma z^l, in place.
// Only this thread touches these z^l elements during phase 2, so the in-place update is race-free.
template <int KK, int SS>
static __device__ __forceinline__ void ngc_correct_item(const int* hdr, float* zs, const float* es, const float* Es,
                                                        int l, int L, int item, int K_rt, int s_rt, int flags,
                                                        float beta, float gamma, float leak) {
    const int K = KK ? KK : K_rt, s = SS ? SS : s_rt;
    const int Cl = hdr[HDR_C + l], Hl = hdr[HDR_H + l], Wl = hdr[HDR_W + l];
    const int Cm = hdr[HDR_C + l - 1], Hm = hdr[HDR_H + l - 1], Wm = hdr[HDR_W + l - 1];
    const int ox = item % Wl, oy = (item / Wl) % Hl, i0 = (item / (Wl * Hl)) * NGC_SETTLE_JT;
    const int in = min(NGC_SETTLE_JT, Cl - i0);
    const int pt = same_pad_before(Hm, K, s), pl = same_pad_before(Wm, K, s);
    const float* em = es + hdr[HDR_ZOFF + l - 1];                    // e^{l-1}: (C_{l-1}, H_{l-1}, W_{l-1})
    const float* E = Es + hdr[HDR_WOFF + l];                         // (C_l, C_{l-1}, K, K)
    float up[NGC_SETTLE_JT];
#pragma unroll
    for (int ii = 0; ii < NGC_SETTLE_JT; ++ii) up[ii] = 0.0f;
    for (int j = 0; j < Cm; ++j) {
        const float* ej = em + j * Hm * Wm;
#pragma unroll
        for (int ky = 0; ky < K; ++ky) {
            const int yy = oy * s + ky - pt;
            if (yy < 0 || yy >= Hm) continue;
#pragma unroll
            for (int kx = 0; kx < K; ++kx) {
                const int xx = ox * s + kx - pl;
                if (xx < 0 || xx >= Wm) continue;
                const float ev = ej[yy * Wm + xx];
                const float* Ej = E + (i0 * Cm + j) * K * K + ky * K + kx;
#pragma unroll
                for (int ii = 0; ii < NGC_SETTLE_JT; ++ii)
                    if (ii < in) up[ii] += Ej[ii * Cm * K * K] * ev;
            }
        }
    }
    const int off = hdr[HDR_ZOFF + l];
#pragma unroll
    for (int ii = 0; ii < NGC_SETTLE_JT; ++ii) {
        if (ii >= in) break;
        const int k = off + (i0 + ii) * Hl * Wl + oy * Wl + ox;
        const float zv = zs[k];
        const float u = (flags & NGC_PCN) ? up[ii] * leaky_relu_prime(zv, leak) : up[ii];
        const float d = (l < L ? -es[k] : 0.0f) + u;                    // e^L = 0
        zs[k] = zv + beta * d - gamma * zv;
    }
}

// Sum of a per-thread value over the block: warp shuffles, then one partial per warp into red[].
// The caller must pass a barrier before reading red[] (thread 0 adds the partials up).
static __device__ __forceinline__ void ngc_warp_partial(float v, float* red) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
}

static __device__ __forceinline__ float ngc_block_total(const float* red) {
    float t = 0.0f;
    const int nw = (blockDim.x + 31) >> 5;
    for (int w = 0; w < nw; ++w) t += red[w];
    return t;
}

extern "C" __global__ void __launch_bounds__(1024)
ngc_settle_v1(const float* __restrict__ x,        // (B, C_0, H_0, W_0) image
              const float* __restrict__ z_top,    // (B, C_L, H_L, W_L) initial top state
              const float* __restrict__ Wg,       // W^1..W^L concatenated, each (C_l, C_{l-1}, K, K)
              const float* __restrict__ bg,       // b^1..b^L concatenated, (C_{l-1},) or (C_{l-1}, H_{l-1}, W_{l-1})
              const float* __restrict__ Eg,       // like Wg; read only with NGC_LEARN_E
              const int* __restrict__ dims,       // (L+1, 3): C_l, H_l, W_l for l = 0..L
              int L, int K, int s, int T, int flags, float beta, float gamma, float leak,
              float* __restrict__ z_out,          // per layer (B, C_l, H_l, W_l), l = 0..L, concatenated
              float* __restrict__ zbar_out,       // per layer (B, C_l, H_l, W_l), l = 0..L-1
              float* __restrict__ e_out,          // per layer (B, C_l, H_l, W_l), l = 0..L-1 (e^L = 0 on host)
              float* __restrict__ energy_out,     // (T+1, B)
              int B)
{
    extern __shared__ float smem[];
    int* hdr = reinterpret_cast<int*>(smem);
    float* red = smem + NGC_HDR_INTS + NGC_SMEM_GUARD;
    const int b_img = blockIdx.x;
    const int tid = threadIdx.x, nth = blockDim.x;
    const bool learn_E = (flags & NGC_LEARN_E) != 0;
    const bool bpix = (flags & NGC_BIAS_PIXEL) != 0;                 // bias maps b^l (C_{l-1}, H_{l-1}, W_{l-1})
    const bool k3s2 = (K == 3 && s == 2);                            // the paper's filters: unrolled taps

    if (tid == 0) {                                                  // L <= NGC_MAXL: the wrapper checks it
        int nz = 0, nw = 0, nb = 0;
        for (int l = 0; l <= L; ++l) {
            hdr[HDR_C + l] = dims[3 * l];  hdr[HDR_H + l] = dims[3 * l + 1];  hdr[HDR_W + l] = dims[3 * l + 2];
            hdr[HDR_ZOFF + l] = nz;
            nz += dims[3 * l] * dims[3 * l + 1] * dims[3 * l + 2];
        }
        hdr[HDR_WOFF] = 0;  hdr[HDR_BOFF] = 0;
        for (int l = 1; l <= L; ++l) {
            hdr[HDR_WOFF + l] = nw;  nw += dims[3 * l] * dims[3 * (l - 1)] * K * K;
            hdr[HDR_BOFF + l] = nb;                                  // b^l: C_{l-1} (x H_{l-1} W_{l-1}) floats
            nb += dims[3 * (l - 1)] * (bpix ? dims[3 * (l - 1) + 1] * dims[3 * (l - 1) + 2] : 1);
        }
        hdr[HDR_MISC] = nz;  hdr[HDR_MISC + 1] = nw;  hdr[HDR_MISC + 2] = nb;
        hdr[HDR_MISC + 3] = hdr[HDR_ZOFF + L];                       // errors: layers 0..L-1 only
        // flattened work lists: every layer's items one after the other, so all threads stay busy
        hdr[HDR_PSTART + 1] = 0;  hdr[HDR_CSTART + 1] = 0;
        for (int l = 1; l <= L; ++l) {
            hdr[HDR_PSTART + l + 1] = hdr[HDR_PSTART + l] + ngc_predict_items(hdr, l, s);
            hdr[HDR_CSTART + l + 1] = hdr[HDR_CSTART + l]
                                    + ceil_div(dims[3 * l], NGC_SETTLE_JT) * dims[3 * l + 1] * dims[3 * l + 2];
        }
    }
    __syncthreads();   // hdr is written by thread 0 and read by everyone below

    const int nz = hdr[HDR_MISC], nw = hdr[HDR_MISC + 1], nb = hdr[HDR_MISC + 2], ne = hdr[HDR_MISC + 3];
    float* zs = red + NGC_RED_FLOATS + NGC_SMEM_GUARD;               // each area, then its guard (0 on a GPU)
    float* es = zs + nz + NGC_SMEM_GUARD;
    float* Ws = es + ne + NGC_SMEM_GUARD;
    float* bs = Ws + nw + NGC_SMEM_GUARD;
    float* Es = learn_E ? bs + nb + NGC_SMEM_GUARD : Ws;             // E = W^T: the same stored kernels
    CUDA_EMU_SHARED_AREA("hdr", hdr, NGC_HDR_INTS);                  // the emulator checks the guards between
    CUDA_EMU_SHARED_AREA("red", red, NGC_RED_FLOATS);
    CUDA_EMU_SHARED_AREA("z", zs, nz);
    CUDA_EMU_SHARED_AREA("e", es, ne);
    CUDA_EMU_SHARED_AREA("W", Ws, nw);
    CUDA_EMU_SHARED_AREA("b", bs, nb);
    if (learn_E) CUDA_EMU_SHARED_AREA("E", Es, nw);

    // ---- load: filters, biases, z^0 = x, z^L = z_top (Algorithm 1 lines 3-4) ----
    for (int k = tid; k < nw; k += nth) Ws[k] = Wg[k];
    if (learn_E) for (int k = tid; k < nw; k += nth) Es[k] = Eg[k];
    for (int k = tid; k < nb; k += nth) bs[k] = bg[k];
    const int n0 = hdr[HDR_C] * hdr[HDR_H] * hdr[HDR_W];
    const int nL = hdr[HDR_C + L] * hdr[HDR_H + L] * hdr[HDR_W + L];
    for (int k = tid; k < n0; k += nth) zs[k] = x[(size_t)b_img * n0 + k];
    for (int k = tid; k < nL; k += nth) zs[hdr[HDR_ZOFF + L] + k] = z_top[(size_t)b_img * nL + k];
    __syncthreads();   // filters, biases and z^L must be in place before the ancestral pass reads them

    // ---- ancestral pass z^l = zbar^l, l = L-1 .. 1 (Algorithm 1 lines 5-9) ----
    for (int l = L; l >= 2; --l) {
        const int n_items = ngc_predict_items(hdr, l, s);
        const int Hm = hdr[HDR_H + l - 1], Wm = hdr[HDR_W + l - 1];
        float* zm = zs + hdr[HDR_ZOFF + l - 1];
        for (int it = tid; it < n_items; it += nth) {
            float zb[NGC_SETTLE_JT];  int j0, jn, pix;
            if (!(k3s2 ? ngc_predict_item<3, 2>(hdr, zs, Ws, bs, l, it, K, s, leak, bpix, zb, j0, jn, pix)
                        : ngc_predict_item<0, 0>(hdr, zs, Ws, bs, l, it, K, s, leak, bpix, zb, j0, jn, pix))) continue;
#pragma unroll
            for (int jj = 0; jj < NGC_SETTLE_JT; ++jj)                  // unrolled: zb stays in registers
                if (jj < jn) zm[(j0 + jj) * Hm * Wm + pix] = zb[jj];
        }
        __syncthreads();   // z^{l-1} is complete before it predicts z^{l-2} in the next iteration
    }

    const int* p_start = hdr + HDR_PSTART;                           // p_start[l]: first item of layer pair l
    const int* c_start = hdr + HDR_CSTART;
    const int n_pred = p_start[L + 1], n_corr = c_start[L + 1];

    for (int t = 0; t <= T; ++t) {
        const bool last = (t == T);
        // ---- phase 1: zbar^{l-1} (Eq. 1) and e^{l-1} = z^{l-1} - zbar^{l-1} for l = 1..L; energy ----
        float part = 0.0f;
        for (int g = tid; g < n_pred; g += nth) {
            int l = 1;
            while (g >= p_start[l + 1]) ++l;
            float zb[NGC_SETTLE_JT];  int j0, jn, pix;
            const int it = g - p_start[l];
            if (!(k3s2 ? ngc_predict_item<3, 2>(hdr, zs, Ws, bs, l, it, K, s, leak, bpix, zb, j0, jn, pix)
                       : ngc_predict_item<0, 0>(hdr, zs, Ws, bs, l, it, K, s, leak, bpix, zb, j0, jn, pix))) continue;
            const int Cm = hdr[HDR_C + l - 1], HWm = hdr[HDR_H + l - 1] * hdr[HDR_W + l - 1];
            const int off = hdr[HDR_ZOFF + l - 1];
#pragma unroll
            for (int jj = 0; jj < NGC_SETTLE_JT; ++jj) {
                if (jj >= jn) break;
                const int k = off + (j0 + jj) * HWm + pix;
                const float ev = zs[k] - zb[jj];
                es[k] = ev;
                part += ev * ev;
                if (last) {                                          // final zbar and e go straight out
                    const size_t go = (size_t)B * off + (size_t)b_img * Cm * HWm + (size_t)(j0 + jj) * HWm + pix;
                    zbar_out[go] = zb[jj];
                    e_out[go] = ev;
                }
            }
        }
        ngc_warp_partial(part, red);
        __syncthreads();   // phase 2 reads e^{l-1} of neighbouring pixels/maps written by other threads,
                           // and thread 0 reads every warp's partial energy
        if (tid == 0) energy_out[(size_t)t * B + b_img] = 0.5f * ngc_block_total(red);
        if (last) break;

        // ---- phase 2: d^l = -e^l + E^l *_s e^{l-1} (x phi'(z^l) in PCN); z^l += beta d^l - gamma z^l ----
        for (int g = tid; g < n_corr; g += nth) {
            int l = 1;
            while (g >= c_start[l + 1]) ++l;
            if (k3s2) ngc_correct_item<3, 2>(hdr, zs, es, Es, l, L, g - c_start[l], K, s, flags, beta, gamma, leak);
            else      ngc_correct_item<0, 0>(hdr, zs, es, Es, l, L, g - c_start[l], K, s, flags, beta, gamma, leak);
        }
        if (flags & NGC_CLAMP_FIRST) {                                       // free bottom: d^0 = -e^0
            const bool leak0 = !(flags & NGC_NO_GAMMA_BOTTOM);               // cfg.gamma_bottom: the leak acts on z^0
            for (int k = tid; k < n0; k += nth) {
                const float zv = zs[k];
                const float d = -es[k];
                zs[k] = leak0 ? zv + beta * d - gamma * zv : zv + beta * d;
            }
        }
        __syncthreads();   // next phase 1 reads the corrected states of every layer (and red[] is reused)
    }

    // ---- write back the final states z^0..z^L ----
    for (int l = 0; l <= L; ++l) {
        const int n = hdr[HDR_C + l] * hdr[HDR_H + l] * hdr[HDR_W + l];
        const int off = hdr[HDR_ZOFF + l];
        float* dst = z_out + (size_t)B * off + (size_t)b_img * n;
        for (int k = tid; k < n; k += nth) dst[k] = zs[off + k];
    }
}
