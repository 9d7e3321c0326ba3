"""The whole of Algorithm 1 in one kernel launch: `settle_whole` == `ngc_ref.model.settle`.

kernels/ngc_settle.cu (`ngc_settle_v1`) runs one thread block per image. The block keeps that image's
states z^0..z^L, errors e^0..e^{L-1}, all filters W (and E when learnable) and biases in shared memory,
does the ancestral initialisation and all T synchronous steps (Eq. 1, Eq. 2) with two barriers per step,
and writes back the final z, zbar, e and the energy trace. Nothing goes back to global memory between
steps and there is one launch instead of ~T*(2L+1), which is why it exists (bench/gpu_bench.py measures
whether it wins; model.settle(kernel="auto") uses it whenever it fits), i.e. when

    smem_bytes(cfg, learn_E) <= the device's opt-in shared memory per block
    (paper configuration: 125,688 bytes, 162,588 with learnable E, 169,404 with bias="pixel";
    A100 allows 163 KB, H100/H200 227 KB).

The shared-memory layout is `layout` below; the kernel computes the same one from the -D constants of
defines.py, and in the emulator it names each area so that cuda_emu checks the guard zones between them
(tests/cuda/test_cuda_settle_whole.py compares the two layouts area by area).
"""
import numpy as np

from ngc_ref.model import SettleResult

from .defines import SETTLE_HDR_INTS, SETTLE_FLAGS, SETTLE_MAX_LAYERS, SETTLE_RED_FLOATS
from .launch import i32, f32

__all__ = ["layout", "smem_bytes", "fits", "settle_whole", "SettleDoesNotFit", "MAX_LAYERS", "KERNEL_FILE",
           "KERNEL_NAME", "DEFAULT_THREADS"]

KERNEL_FILE = "ngc_settle"
KERNEL_NAME = "ngc_settle_v1"
MAX_LAYERS = SETTLE_MAX_LAYERS
DEFAULT_THREADS = 512         # one block per SM fits (smem-bound): more warps hide latency; bench sweeps 256-1024


class SettleDoesNotFit(ValueError):
    """The network's per-image state and filters exceed the shared memory one block may use."""


def _sizes(cfg):
    """Per-layer (C_l, H_l, W_l) for l = 0..L and the float count of each layer's maps."""
    dims = [(cfg.layer_channels[l],) + tuple(cfg.map_hw(l)) for l in range(cfg.L + 1)]
    return dims, [c * h * w for c, h, w in dims]


def layout(cfg, learn_E=False, guard=0):
    """The dynamic shared memory of one block (one image), as kernels/ngc_settle.cu lays it out:
    [(area, byte offset, bytes)], every area followed by `guard` unused floats (0 on a GPU):
        hdr  the header ints (sizes, offsets, work lists)     red  one partial energy per warp
        z    states z^0..z^L                                   e    errors e^0..e^{L-1} (e^L = 0 is not stored)
        W    filters W^1..W^L, each (C_l, C_{l-1}, K, K)      b    biases b^1..b^L: b^l has C_{l-1} values, or
                                                                   C_{l-1} H_{l-1} W_{l-1} with cfg.bias="pixel"
        E    like W, only when the error filters are learnable (else the kernel reads W: E = W^T)"""
    C, K = cfg.layer_channels, cfg.kernel
    _, n = _sizes(cfg)
    n_w = sum(C[l] * C[l - 1] * K * K for l in range(1, cfg.L + 1))
    n_b = sum(n[:-1]) if cfg.bias == "pixel" else sum(C[:-1])
    areas = [("hdr", SETTLE_HDR_INTS), ("red", SETTLE_RED_FLOATS), ("z", sum(n)), ("e", sum(n[:-1])),
             ("W", n_w), ("b", n_b)] + ([("E", n_w)] if learn_E else [])
    out, off = [], 0
    for name, count in areas:
        out.append((name, 4 * off, 4 * count))
        off += count + guard
    return out


def smem_bytes(cfg, learn_E=False, guard=0):
    """Bytes of dynamic shared memory one block needs: the end of the last area of `layout` and its guard."""
    name, off, size = layout(cfg, learn_E, guard)[-1]
    return off + size + 4 * guard


def fits(cfg, learn_E, device_smem_bytes):
    """Can `settle_whole` run this configuration on a device allowing `device_smem_bytes` per block
    (backend.Device.smem_limit)? Layers <= MAX_LAYERS and the shared memory fits."""
    return cfg.L <= MAX_LAYERS and smem_bytes(cfg, learn_E) <= int(device_smem_bytes)


def settle_whole(params, x, cfg, z_top, T, clamp="always", threads=DEFAULT_THREADS, *, device):
    """Algorithm 1 (ancestral initialisation + T synchronous steps of Eq. 1 and Eq. 2) in one launch.

    Same arguments and result as `ngc_ref.model.settle`: x (B, C_0, H, W) image, z_top (B, C_L, H_L, W_L)
    initial top state (`ngc_ref.model.draw_top`), clamp "always" (z^0 = x throughout) or "first"
    (denoising: z^0 = x at t = 1 only). params["E"] not None means separate error filters. `threads` is
    the block size (a multiple of 32). device: a backend.Device, "cuda" runs on its GPU (CuPy arrays),
    "cuda-emu" on the CPU emulation (NumPy arrays, in the thread order of launch.emulation);
    ngc_cuda.model.settle decides it, and checks the inputs (checks.settle_inputs): like a RawKernel, this
    function trusts them.
    T: an int. Returns a SettleResult of float32 arrays of x's type.
    """
    if threads % 32 or not 32 <= threads <= 1024:
        raise ValueError("settle_whole: threads must be a multiple of 32 in [32, 1024], got %d" % threads)
    if x.shape[0] < 1:
        raise ValueError("settle_whole: x must hold at least one image, got shape %s" % (tuple(x.shape),))
    L, B, E = cfg.L, x.shape[0], params.get("E")
    learn_E = E is not None
    if L > MAX_LAYERS:
        raise SettleDoesNotFit("settle_whole: %d layers above the image, the kernel supports at most %d; use the "
                               "per-step kernels (ngc_cuda.model.settle(..., kernel='per-step'))" % (L, MAX_LAYERS))
    avail = device.smem_limit
    if not fits(cfg, learn_E, avail):
        areas = ", ".join("%s %d" % (name, size) for name, _, size in layout(cfg, learn_E))
        raise SettleDoesNotFit(
            "settle_whole: one image needs %d bytes of shared memory (%s), but one block may use at most %d bytes "
            "on this device; this configuration does not fit the whole-settle kernel: use the per-step kernels "
            "(ngc_cuda.model.settle(..., kernel='per-step'), which model.settle's kernel='auto' picks when fits() "
            "is False)" % (smem_bytes(cfg, learn_E), areas, avail))

    # ---- pack: filters and biases into flat buffers, layer sizes into an int array ----
    xp = device.xp
    dims, n = _sizes(cfg)

    def flat(parts):
        return xp.concatenate([xp.ascontiguousarray(p).ravel() for p in parts])
    Wf = flat(params["W"][1:])
    bf = flat(params["b"][1:])
    Ef = flat(E[1:]) if learn_E else Wf
    dims_arr = xp.asarray(np.array(dims, np.int32).ravel())
    z_out = xp.empty(B * sum(n), xp.float32)
    zbar_out = xp.empty(B * sum(n[:-1]), xp.float32)
    e_out = xp.empty(B * sum(n[:-1]), xp.float32)
    energy = xp.empty((T + 1, B), xp.float32)
    on = {"NGC_PCN": cfg.pcn, "NGC_CLAMP_FIRST": clamp == "first", "NGC_LEARN_E": learn_E,
          "NGC_BIAS_PIXEL": cfg.bias == "pixel", "NGC_NO_GAMMA_BOTTOM": not cfg.gamma_bottom}
    flags = sum(bit for name, bit in SETTLE_FLAGS.items() if on[name])
    args = (xp.ascontiguousarray(x), xp.ascontiguousarray(z_top), Wf, bf, Ef, dims_arr, i32(L), i32(cfg.kernel),
            i32(cfg.stride), i32(T), i32(flags), f32(cfg.beta), f32(cfg.gamma), f32(cfg.leak), z_out, zbar_out,
            e_out, energy, i32(B))
    device.launch(KERNEL_FILE, KERNEL_NAME, B, threads, args, shared_mem=smem_bytes(cfg, learn_E, device.smem_guard))

    # ---- unpack: each output buffer is the concatenation over layers of (B, C_l, H_l, W_l) blocks ----
    offs = np.concatenate([[0], np.cumsum(n)]).astype(int)
    z = [z_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L + 1)]
    zbar = [zbar_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L)]
    e = [e_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L)] \
        + [xp.zeros((B,) + dims[L], xp.float32)]
    return SettleResult(z, zbar, e, energy)
