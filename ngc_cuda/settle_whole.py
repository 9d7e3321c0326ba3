"""The whole of Algorithm 1 in one kernel launch: `settle_whole` == `ngc_ref.model.settle`.

kernels/ngc_settle.cu (`ngc_settle_v1`) runs one thread block per image. The block keeps that image's
states z^0..z^L, errors e^0..e^{L-1}, all filters W (and E when learnable) and biases in shared memory,
does the ancestral initialisation and all T synchronous steps (Eq. 1, Eq. 2) with two barriers per step,
and writes back the final z, zbar, e and the energy trace. Nothing goes back to global memory between
steps and there is one launch instead of ~T*(2L+1), which is why it exists (bench/gpu_bench.py measures
whether it wins; model.settle(kernel="auto") uses it whenever it fits), i.e. when

    smem_bytes(cfg, learn_E) <= the device's opt-in shared memory per block
    (paper configuration: 125,712 bytes, 162,612 with learnable E; A100 allows 163 KB, H100/H200 227 KB).

NumPy arrays run through the CPU emulation of the same .cu file (ngc_cuda/emu); CuPy arrays run on
the GPU. Outputs have the input's array type and dtype float32.
"""
import numpy as np

from ngc_ref.model import SettleResult

from . import _is_cupy

__all__ = ["smem_bytes", "fits", "settle_whole", "SettleDoesNotFit", "MAX_LAYERS", "KERNEL_NAME"]

KERNEL_FILE = "ngc_settle"
KERNEL_NAME = "ngc_settle_v1"
MAX_LAYERS = 8                 # NGC_MAXL in the kernel: layers 0..8
HDR_INTS = 84                  # header ints + 32 floats of per-warp partial energies, as in the kernel
RED_FLOATS = 32
EMU_SMEM_BYTES = 227 * 1024    # what the emulator provides (H100's opt-in limit)
DEFAULT_THREADS = 512         # one block per SM fits (smem-bound): more warps hide latency; bench sweeps 256-1024
_FLAG_PCN, _FLAG_CLAMP_FIRST, _FLAG_LEARN_E = 1, 2, 4


class SettleDoesNotFit(ValueError):
    """The network's per-image state and filters exceed the shared memory one block may use."""


def _sizes(cfg):
    """Per-layer (C_l, H_l, W_l) for l = 0..L and the float counts of each shared-memory area."""
    C, K = cfg.layer_channels, cfg.kernel
    dims = [(C[l],) + tuple(cfg.map_hw(l)) for l in range(cfg.L + 1)]
    n = [c * h * w for c, h, w in dims]
    n_z = sum(n)                                   # states z^0..z^L
    n_e = sum(n[:-1])                              # errors e^0..e^{L-1}
    n_w = sum(C[l] * C[l - 1] * K * K for l in range(1, cfg.L + 1))
    n_b = sum(C[:-1])                              # biases b^0..b^{L-1}
    return dims, n, n_z, n_e, n_w, n_b


def smem_bytes(cfg, learn_E=False):
    """Dynamic shared memory of one block (one image), laid out as in kernels/ngc_settle.cu:
    header ints + warp partials + z + e + W (+ E) + b, all 4-byte words."""
    _, _, n_z, n_e, n_w, n_b = _sizes(cfg)
    return 4 * (HDR_INTS + RED_FLOATS + n_z + n_e + n_w * (2 if learn_E else 1) + n_b)


def _device_smem_bytes():
    """Opt-in shared memory per block of the current GPU, or the emulator's when there is none."""
    try:
        import cupy as cp
        if cp.cuda.is_available():
            return int(cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])
    except Exception:                              # no CuPy, or no driver: the emulator is what runs
        pass
    return EMU_SMEM_BYTES


def fits(cfg, learn_E=False, device_smem_bytes=None):
    """Can `settle_whole` run this configuration? (layers <= MAX_LAYERS and shared memory fits)."""
    if cfg.L > MAX_LAYERS:
        return False
    avail = _device_smem_bytes() if device_smem_bytes is None else int(device_smem_bytes)
    return smem_bytes(cfg, learn_E) <= avail


def _check_f32(name, a):
    if a.dtype != np.float32:
        raise TypeError("settle_whole: %s must be float32 (the kernel computes in float32), got %s; "
                        "convert with .astype(np.float32)" % (name, a.dtype))


def _check_shape(name, a, want):
    if tuple(a.shape) != tuple(want):
        raise ValueError("settle_whole: %s has shape %s, the config needs %s" % (name, tuple(a.shape), tuple(want)))


def settle_whole(params, x, cfg, z_top, T=None, clamp="always", threads=DEFAULT_THREADS, order=None,
                 sanitize=False):
    """Algorithm 1 (ancestral initialisation + T synchronous steps of Eq. 1 and Eq. 2) in one launch.

    Same arguments and result as `ngc_ref.model.settle`: x (B, C_0, H, W) image, z_top (B, C_L, H_L, W_L)
    initial top state (`ngc_ref.model.draw_top`), clamp "always" (z^0 = x throughout) or "first"
    (denoising: z^0 = x at t = 1 only). params["E"] not None means separate error filters.
    NumPy inputs run on the CPU emulation (`order` picks its thread order: "forward", "reverse",
    "shuffle"; `sanitize` runs it under ASan/UBSan in a child process); CuPy inputs run on the current GPU. `threads` is the block size (a multiple of 32).
    Returns a SettleResult of float32 arrays of the input's type.
    """
    T = cfg.T if T is None else int(T)
    if T < 0:
        raise ValueError("settle_whole: T must be >= 0, got %d" % T)
    if clamp not in ("always", "first"):
        raise ValueError("settle_whole: clamp must be 'always' or 'first', got %r" % (clamp,))
    if threads % 32 or not 32 <= threads <= 1024:
        raise ValueError("settle_whole: threads must be a multiple of 32 in [32, 1024], got %d" % threads)
    gpu = _is_cupy(x)
    if gpu:
        import cupy as xp
    else:
        xp = np
    L, K = cfg.L, cfg.kernel
    E = params.get("E")
    learn_E = E is not None
    dims, n, n_z, n_e, n_w, n_b = _sizes(cfg)

    # ---- validate (RawKernel checks nothing: wrong dtypes or shapes would read garbage) ----
    arrays = [("x", x), ("z_top", z_top)] + [("W[%d]" % l, params["W"][l]) for l in range(1, L + 1)] \
        + [("b[%d]" % l, params["b"][l]) for l in range(1, L + 1)] \
        + ([("E[%d]" % l, E[l]) for l in range(1, L + 1)] if learn_E else [])
    for name, a in arrays:
        if _is_cupy(a) != gpu:
            raise TypeError("settle_whole: %s is a %s array but x is a %s array; pass all NumPy or all CuPy"
                            % (name, type(a).__module__.split(".")[0], type(x).__module__.split(".")[0]))
        _check_f32(name, a)
    if len(params["W"]) != L + 1 or len(params["b"]) != L + 1:
        raise ValueError("settle_whole: params hold %d layers of filters, the config has L = %d"
                         % (len(params["W"]) - 1, L))
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError("settle_whole: x must be (B, C, H, W) with B >= 1, got shape %s" % (tuple(x.shape),))
    B = x.shape[0]
    _check_shape("x", x, (B,) + dims[0])
    _check_shape("z_top", z_top, (B,) + dims[L])
    C = cfg.layer_channels
    for l in range(1, L + 1):
        _check_shape("W[%d]" % l, params["W"][l], (C[l], C[l - 1], K, K))
        _check_shape("b[%d]" % l, params["b"][l], (C[l - 1],))
        if learn_E:
            _check_shape("E[%d]" % l, E[l], (C[l], C[l - 1], K, K))
    if L > MAX_LAYERS:
        raise SettleDoesNotFit("settle_whole: %d layers above the image, the kernel supports at most %d; "
                               "use the per-step kernels (ngc_cuda.model.settle(..., kernel='per-step'))"
                               % (L, MAX_LAYERS))
    need = smem_bytes(cfg, learn_E)
    avail = _device_smem_bytes() if gpu else EMU_SMEM_BYTES
    if need > avail:
        raise SettleDoesNotFit(
            "settle_whole: one image needs %d bytes of shared memory (states %d + errors %d + filters %d%s "
            "+ biases %d floats), but one block may use at most %d bytes on this device; this configuration "
            "does not fit the whole-settle kernel: use the per-step kernels (ngc_cuda.model.settle(..., "
            "kernel='per-step'), which model.settle's kernel='auto' picks when fits() is False)"
            % (need, n_z, n_e, n_w, " x2 (learnable E)" if learn_E else "", n_b, avail))

    # ---- pack: filters and biases into flat buffers, layer sizes into an int array ----
    def flat(parts):
        return xp.concatenate([xp.ascontiguousarray(p).ravel() for p in parts]).astype(xp.float32, copy=False)
    Wf = flat(params["W"][1:])
    bf = flat(params["b"][1:])
    Ef = flat(E[1:]) if learn_E else Wf
    dims_arr = xp.asarray(np.array(dims, np.int32).ravel())
    x_c = xp.ascontiguousarray(x)
    zt_c = xp.ascontiguousarray(z_top)
    z_out = xp.empty(B * n_z, xp.float32)
    zbar_out = xp.empty(B * n_e, xp.float32)
    e_out = xp.empty(B * n_e, xp.float32)
    energy = xp.empty((T + 1, B), xp.float32)
    flags = (_FLAG_PCN if cfg.pcn else 0) | (_FLAG_CLAMP_FIRST if clamp == "first" else 0) \
        | (_FLAG_LEARN_E if learn_E else 0)

    from ngc_cuda._load import emu_module, load_module
    if gpu:
        fn = load_module(KERNEL_FILE, "cuda", {}).get_function(KERNEL_NAME)
    else:
        fn = emu_module(KERNEL_FILE, {}, order=order or "forward", sanitize=sanitize).get_function(KERNEL_NAME)
    fn.max_dynamic_shared_size_bytes = need        # above 48 KB the opt-in attribute is required
    args = (x_c, zt_c, Wf, bf, Ef, dims_arr, np.int32(L), np.int32(K), np.int32(cfg.stride), np.int32(T),
            np.int32(flags), np.float32(cfg.beta), np.float32(cfg.gamma), np.float32(cfg.leak),
            z_out, zbar_out, e_out, energy, np.int32(B))
    fn((B,), (threads,), args, shared_mem=need)

    # ---- unpack: each output buffer is the concatenation over layers of (B, C_l, H_l, W_l) blocks ----
    offs = np.concatenate([[0], np.cumsum(n)]).astype(int)
    z = [z_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L + 1)]
    zbar = [zbar_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L)]
    e = [e_out[B * offs[l]:B * offs[l + 1]].reshape((B,) + dims[l]) for l in range(L)] \
        + [xp.zeros((B,) + dims[L], xp.float32)]
    return SettleResult(z, zbar, e, energy)

