"""The compile-time constants of kernels/*.cu, defined once, here.

Every compile of kernels/<name>.cu (the GPU backend, the emulator, the NVRTC compile check) gets
`kernel_defines(name, backend)` as -D options, and the .cu files #error without them, so a kernel and
its Python wrapper cannot disagree on a constant. tests/cuda/test_cuda_settle_whole.py checks the one layout
that both sides compute: the whole-settle kernel's shared memory, area by area.
"""

__all__ = ["REDUCE_THREADS", "SETTLE_MAX_LAYERS", "SETTLE_HDR_INTS", "SETTLE_RED_FLOATS", "SETTLE_FLAGS",
           "SMEM_GUARD_FLOATS", "kernel_defines"]

# Threads per block of the tree reductions (common.cuh block_sum); a power of two.
REDUCE_THREADS = 256

# kernels/ngc_settle.cu, the whole-settle kernel (settle_whole.layout describes its shared memory):
SETTLE_MAX_LAYERS = 8                   # NGC_MAXL: networks of layers 0..8
# NGC_HDR_INTS: its header of ints: C, H, W, state offset, filter offset, bias offset for each layer 0..MAXL,
# 4 area sizes, and two prefix-sum lists of work items (l = 1..MAXL+1). The kernel static_asserts this sum.
SETTLE_HDR_INTS = 6 * (SETTLE_MAX_LAYERS + 1) + 4 + 2 * (SETTLE_MAX_LAYERS + 2)
SETTLE_RED_FLOATS = 32                  # NGC_RED_FLOATS: one partial energy per warp (1024 threads / 32)
# bits of its `flags` argument: cfg.pcn, clamp="first" (denoising), learnable E, cfg.bias="pixel" (bias maps),
# cfg.gamma_bottom=False (no leak on a free z^0); 0 is the paper's setting
SETTLE_FLAGS = {"NGC_PCN": 1, "NGC_CLAMP_FIRST": 2, "NGC_LEARN_E": 4, "NGC_BIAS_PIXEL": 8, "NGC_NO_GAMMA_BOTTOM": 16}

# NGC_SMEM_GUARD: floats left between the shared-memory areas of a kernel that names them (the whole-settle
# kernel). None on a GPU; in the emulator a guard zone that cuda_emu checks after every block.
SMEM_GUARD_FLOATS = {"cuda": 0, "cuda-emu": 16}


def kernel_defines(name, backend):
    """The -D options (a dict) of kernels/<name>.cu for 'cuda' (also the compile check) or 'cuda-emu'."""
    d = {"NGC_REDUCE_THREADS": REDUCE_THREADS}            # common.cuh, included by every file
    if name == "ngc_settle":
        d.update(NGC_MAXL=SETTLE_MAX_LAYERS, NGC_HDR_INTS=SETTLE_HDR_INTS, NGC_RED_FLOATS=SETTLE_RED_FLOATS,
                 NGC_SMEM_GUARD=SMEM_GUARD_FLOATS[backend], **SETTLE_FLAGS)
    return d
