"""ngc_ref.ops on the kernels: the same names, signatures and results, computed in float32.

    conv2d(x, w, stride=2)                       kernels/conv2d.cu            conv2d_fwd_v1
    conv2d_transpose(z, w, stride=2, out_hw)     kernels/conv2d_transpose.cu  conv2d_transpose_fwd_v1
    conv2d_weight_grad(e, a, K, stride=2)        kernels/conv2d_weight_grad.cu conv2d_wgrad_v1

plus the fused per-layer kernels the model runs (kernels/ngc_step.cu, kernels/optim.cu):
    predict, predict_error, correct_, energy_, bias_grad, weight_grad_phi.

NumPy arrays in -> the kernels run on the CPU emulator (backend "cuda-emu") -> NumPy out;
CuPy arrays in -> the kernels run on the GPU (backend "cuda") -> CuPy out.

CuPy's RawKernel checks nothing (it ignores strides and takes a Python int as long long), so this
module does it: float32 only (TypeError otherwise; a float64 array is NOT cast silently, since the
reference would then be float64 and the kernel float32), C-contiguous copies where needed, shapes and
channel counts as ngc_ref checks them (ValueError), scalars as np.int32/np.float32, grid by ceil_div.
"""
import contextlib
import functools

import numpy as np

from ngc_ref.ops import conv_out_size, same_padding  # noqa: F401  (one SAME rule for both backends)

from . import array_module, backend_of

__all__ = ["conv2d", "conv2d_transpose", "conv2d_weight_grad", "conv_out_size", "same_padding",
           "predict", "predict_error", "correct_", "energy_", "bias_grad", "weight_grad_phi",
           "emulation", "emu_settings", "BLOCK", "REDUCE_THREADS"]

BLOCK = 256            # threads per block of the one-thread-per-output kernels
REDUCE_THREADS = 256   # threads per block of the tree reductions (NGC_REDUCE_THREADS in common.cuh)
DEFINES = {"NGC_REDUCE_THREADS": REDUCE_THREADS}

_i32, _f32 = np.int32, np.float32
_EMU = {"order": "forward", "sanitize": False}


# ---- the emulator's settings (tests run the kernels under other thread orders and the sanitizer) ----
@contextlib.contextmanager
def emulation(order="forward", sanitize=False):
    """Run emulated launches inside the block with another thread order ("forward", "reverse",
    "shuffle": a missing __syncthreads() then changes the result) or with the ASan/UBSan build."""
    if order not in ("forward", "reverse", "shuffle"):
        raise ValueError("emulation: order must be 'forward', 'reverse' or 'shuffle', got %r" % (order,))
    old = dict(_EMU)
    _EMU.update(order=order, sanitize=bool(sanitize))
    try:
        yield
    finally:
        _EMU.update(old)


def emu_settings():
    """The current emulator settings: {'order': ..., 'sanitize': ...}."""
    return dict(_EMU)


@functools.lru_cache(maxsize=None)
def _function_cached(file, kernel, backend, device, order, sanitize):
    from . import _load
    if backend == "cuda":
        mod = _load.load_module(file, "cuda", DEFINES)
    else:
        mod = _load.emu_module(file, DEFINES, order=order, sanitize=sanitize)
    return mod.get_function(kernel)


def _function(file, kernel, backend):
    if backend == "cuda":
        import cupy as cp
        return _function_cached(file, kernel, backend, cp.cuda.runtime.getDevice(), None, None)
    return _function_cached(file, kernel, backend, None, _EMU["order"], _EMU["sanitize"])


def _launch(backend, file, kernel, grid, block, args):
    _function(file, kernel, backend)((int(grid),), (int(block),), args)


def ceil_div(a, b):
    return -(-a // b)


# ---- argument checks ----------------------------------------------------------------------------
def _prep(op, backend, **arrays):
    """float32 check + C-contiguous arrays of the backend's type, in the order given."""
    xp = array_module(backend)
    out = []
    for name, a in arrays.items():
        if a.dtype != np.float32:
            raise TypeError("%s: %s must be float32 (the kernels compute in float32 only), got %s; convert "
                            "with .astype(np.float32)" % (op, name, a.dtype))
        out.append(xp.ascontiguousarray(a))
    return out


def _check4(op, x, w, ok, msg):
    """ngc_ref.ops._check: 4-D arrays, square filters, agreeing channels (ValueError otherwise)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("expected 4-D arrays (B, C, H, W) and (C_out, C_in, K, K), got %s and %s"
                         % (tuple(x.shape), tuple(w.shape)))
    if w.shape[2] != w.shape[3]:
        raise ValueError("filters must be square, got %s" % (tuple(w.shape),))
    if not ok:
        raise ValueError(msg)


def _check_stride(op, stride):
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError("%s: stride must be an int >= 1, got %r" % (op, stride))
    return int(stride)


def _empty(backend, shape):
    return array_module(backend).empty(shape, np.float32)


def _grid(n, block=BLOCK):
    return ceil_div(n, block)


# ---- ngc_ref.ops ----------------------------------------------------------------------------------
def conv2d(x, w, stride=2):
    """Strided SAME convolution `*_s` (Eq. 2): == ngc_ref.ops.conv2d, kernel conv2d_fwd_v1.

    x: (B, C_{l-1}, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_l, ceil(H/s), ceil(W/s)), float32.
    """
    backend = backend_of(x, w)
    s = _check_stride("conv2d", stride)
    _check4("conv2d", x, w, x.shape[1] == w.shape[1],
            "conv2d: x has %d channels, w expects %d" % (x.shape[1], w.shape[1]))
    x, w = _prep("conv2d", backend, x=x, w=w)
    B, Cin, H, W = x.shape
    Cout, K = w.shape[0], w.shape[-1]
    out = _empty(backend, (B, Cout, conv_out_size(H, s), conv_out_size(W, s)))
    if out.size:
        _launch(backend, "conv2d", "conv2d_fwd_v1", _grid(out.size), BLOCK,
                (x, w, out, _i32(B), _i32(Cin), _i32(H), _i32(W), _i32(Cout), _i32(K), _i32(s)))
    return out


def _out_hw(op, H, W, s, out_hw):
    Ho, Wo = (int(v) for v in out_hw) if out_hw is not None else (H * s, W * s)
    if conv_out_size(Ho, s) != H or conv_out_size(Wo, s) != W:
        raise ValueError("%s: output %dx%d does not map back to input %dx%d at stride %d "
                         "(SAME needs ceil(out/s) == in)" % (op, Ho, Wo, H, W, s))
    return Ho, Wo


def conv2d_transpose(z, w, stride=2, out_hw=None):
    """Transposed convolution `⊙_s` (Eq. 1), the adjoint of conv2d: == ngc_ref.ops.conv2d_transpose,
    kernel conv2d_transpose_fwd_v1 (a gather; no dilated copy is built).

    z: (B, C_l, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_{l-1}, H_out, W_out), H_out = s*H unless
    out_hw names the size of the layer below.
    """
    backend = backend_of(z, w)
    s = _check_stride("conv2d_transpose", stride)
    _check4("conv2d_transpose", z, w, z.shape[1] == w.shape[0],
            "conv2d_transpose: z has %d channels, w expects %d" % (z.shape[1], w.shape[0]))
    B, Cz, H, W = z.shape
    Cout, K = w.shape[1], w.shape[-1]
    Ho, Wo = _out_hw("conv2d_transpose", H, W, s, out_hw)
    z, w = _prep("conv2d_transpose", backend, z=z, w=w)
    out = _empty(backend, (B, Cout, Ho, Wo))
    if out.size:
        _launch(backend, "conv2d_transpose", "conv2d_transpose_fwd_v1", _grid(out.size), BLOCK,
                (z, w, out, _i32(B), _i32(Cz), _i32(H), _i32(W), _i32(Cout), _i32(Ho), _i32(Wo), _i32(K), _i32(s)))
    return out


def _wgrad(op, e, a, K, stride, apply_phi, leak):
    backend = backend_of(e, a)
    s = _check_stride(op, stride)
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError("%s: K must be an int >= 1, got %r" % (op, K))
    K = int(K)
    if e.ndim != 4 or a.ndim != 4:
        raise ValueError("expected 4-D arrays e (B, C_{l-1}, H, W) and a (B, C_l, h, w), got %s and %s"
                         % (tuple(e.shape), tuple(a.shape)))
    B, Ce, He, We = e.shape
    Ca = a.shape[1]
    want = (B, Ca, conv_out_size(He, s), conv_out_size(We, s))
    if tuple(a.shape) != want:
        raise ValueError("%s: a has shape %s; for e of shape %s at stride %d it must be %s"
                         % (op, tuple(a.shape), tuple(e.shape), s, want))
    e, a = _prep(op, backend, e=e, a=a)
    dW = _empty(backend, (Ca, Ce, K, K))
    if dW.size:
        if B * He * We == 0:
            dW[...] = 0
        else:
            _launch(backend, "conv2d_weight_grad", "conv2d_wgrad_v1", Ca * Ce, REDUCE_THREADS,
                    (e, a, dW, _i32(B), _i32(Ce), _i32(He), _i32(We), _i32(Ca), _i32(K), _i32(s),
                     _i32(apply_phi), _f32(leak)))
    return dW


def conv2d_weight_grad(e, a, K, stride=2):
    """Sec. 3.2 / Alg. 2 line 9, dW_ij = e_j *_1 Dilate(a_i, s) summed over the batch:
    == ngc_ref.ops.conv2d_weight_grad, kernel conv2d_wgrad_v1 (deterministic block reduction).

    e: (B, C_{l-1}, Ho, Wo), a: (B, C_l, ceil(Ho/s), ceil(Wo/s)) -> (C_l, C_{l-1}, K, K).
    Stricter than the reference: a's spatial size must be ceil(e's / s) (ValueError otherwise).
    """
    return _wgrad("conv2d_weight_grad", e, a, K, stride, 0, 0.0)


def weight_grad_phi(e, z, K, stride, leak):
    """conv2d_weight_grad(e, phi(z), K, stride) with phi = leaky ReLU applied inside the kernel."""
    return _wgrad("weight_grad_phi", e, z, K, stride, 1, leak)


# ---- the fused per-layer kernels of the model (kernels/ngc_step.cu, kernels/optim.cu) --------------
def _check_layer(op, z_l, W, b, below_hw, s):
    """Shapes of one layer pair: z_l (B, C_l, H, W), W (C_l, C_{l-1}, K, K), b (C_{l-1},)."""
    _check4(op, z_l, W, z_l.shape[1] == W.shape[0],
            "%s: z has %d channels, W expects %d" % (op, z_l.shape[1], W.shape[0]))
    if b is not None and tuple(b.shape) != (W.shape[1],):
        raise ValueError("%s: bias has shape %s, W predicts %d maps" % (op, tuple(b.shape), W.shape[1]))
    return _out_hw(op, z_l.shape[2], z_l.shape[3], s, below_hw)


def predict(z_l, W, b, leak, stride, out_hw):
    """Eq. 1: zbar^{l-1} = g(W ⊙_s phi(z^l) + b), g = identity (== ngc_ref.model.predict); ngc_predict_v1."""
    backend = backend_of(z_l, W, b)
    s = _check_stride("predict", stride)
    Hb, Wb = _check_layer("predict", z_l, W, b, out_hw, s)
    z_l, W, b = _prep("predict", backend, z=z_l, W=W, b=b)
    B, Cl, H, Wd = z_l.shape
    Cb, K = W.shape[1], W.shape[-1]
    zbar = _empty(backend, (B, Cb, Hb, Wb))
    if zbar.size:
        _launch(backend, "ngc_step", "ngc_predict_v1", _grid(zbar.size), BLOCK,
                (z_l, W, b, zbar, _i32(B), _i32(Cl), _i32(H), _i32(Wd), _i32(Cb), _i32(Hb), _i32(Wb),
                 _i32(K), _i32(s), _f32(leak)))
    return zbar


def predict_error(z_l, W, b, z_below, leak, stride, zbar=None, e=None, write_zbar=True):
    """Eq. 1 and the error units of one layer pair in one pass (ngc_predict_error_v1):
    zbar^{l-1} = W ⊙_s phi(z^l) + b,  e^{l-1} = z^{l-1} - zbar^{l-1}. -> (zbar, e)

    zbar/e: optional preallocated float32 C-contiguous outputs (the settling loop reuses them).
    write_zbar=False stores only e (inside the settling loop; zbar is left untouched).
    """
    backend = backend_of(z_l, W, b, z_below)
    s = _check_stride("predict_error", stride)
    if z_below.ndim != 4:
        raise ValueError("predict_error: z_below must be (B, C, H, W), got %s" % (tuple(z_below.shape),))
    Hb, Wb = _check_layer("predict_error", z_l, W, b, z_below.shape[2:], s)
    B, Cl, H, Wd = z_l.shape
    Cb, K = W.shape[1], W.shape[-1]
    if tuple(z_below.shape) != (B, Cb, Hb, Wb):
        raise ValueError("predict_error: z_below has shape %s, W and z predict %s"
                         % (tuple(z_below.shape), (B, Cb, Hb, Wb)))
    z_l, W, b, z_below = _prep("predict_error", backend, z=z_l, W=W, b=b, z_below=z_below)
    zbar = _empty(backend, z_below.shape) if zbar is None else _out_buffer("predict_error", zbar, z_below.shape)
    e = _empty(backend, z_below.shape) if e is None else _out_buffer("predict_error", e, z_below.shape)
    if zbar.size:
        _launch(backend, "ngc_step", "ngc_predict_error_v1", _grid(zbar.size), BLOCK,
                (z_l, W, b, z_below, zbar, e, _i32(B), _i32(Cl), _i32(H), _i32(Wd), _i32(Cb), _i32(Hb), _i32(Wb),
                 _i32(K), _i32(s), _f32(leak), _i32(1 if write_zbar else 0)))
    return zbar, e


def _out_buffer(op, a, shape):
    """An array the kernel writes: it must already be float32, C-contiguous and of the right shape."""
    if a.dtype != np.float32:
        raise TypeError("%s: output array must be float32, got %s" % (op, a.dtype))
    if tuple(a.shape) != tuple(shape) or not a.flags.c_contiguous:
        raise ValueError("%s: output array must be C-contiguous of shape %s, got shape %s (contiguous: %s)"
                         % (op, tuple(shape), tuple(a.shape), bool(a.flags.c_contiguous)))
    return a


@functools.lru_cache(maxsize=None)
def _dummy_cached(backend, device):
    return array_module(backend).zeros(1, np.float32)


def _dummy(backend):
    """A float32 array standing for an argument the kernel is told not to read (a flag is 0)."""
    if backend == "cuda":
        import cupy as cp
        return _dummy_cached(backend, cp.cuda.runtime.getDevice())
    return _dummy_cached(backend, None)


def correct_(z, e_own, e_below, E, stride, beta, gamma, leak, pcn=False):
    """Eq. 2 for one layer, IN PLACE on z (ngc_correct_v1):
        d = -e_own + E *_s e_below   [times phi'(z) when pcn];   z <- z + beta d - gamma z.
    e_own=None: the top layer (e^L = 0). e_below=None (and E=None): a free bottom layer (d^0 = -e^0).
    z must be a C-contiguous float32 array of the backend (it is written).
    """
    backend = backend_of(z, e_own, e_below, E)
    s = _check_stride("correct_", stride)
    _out_buffer("correct_", z, z.shape)
    if z.ndim != 4:
        raise ValueError("correct_: z must be (B, C, H, W), got %s" % (tuple(z.shape),))
    B, Cl, H, Wd = z.shape
    dummy = _dummy(backend)
    has_own, has_below = e_own is not None, e_below is not None
    if has_own:
        if tuple(e_own.shape) != tuple(z.shape):
            raise ValueError("correct_: e_own has shape %s, z has %s" % (tuple(e_own.shape), tuple(z.shape)))
        e_own, = _prep("correct_", backend, e_own=e_own)
    else:
        e_own = dummy
    if has_below:
        if E is None:
            raise ValueError("correct_: e_below given without the error filters E")
        _check4("correct_", e_below, E, e_below.shape[1] == E.shape[1] and E.shape[0] == Cl,
                "correct_: e_below has %d channels and z %d, E is %s" % (e_below.shape[1], Cl, tuple(E.shape)))
        Cb, Hb, Wb = e_below.shape[1:]
        if e_below.shape[0] != B or (conv_out_size(Hb, s), conv_out_size(Wb, s)) != (H, Wd):
            raise ValueError("correct_: e_below of shape %s does not map onto z of shape %s at stride %d"
                             % (tuple(e_below.shape), tuple(z.shape), s))
        e_below, E = _prep("correct_", backend, e_below=e_below, E=E)
        K = E.shape[-1]
    else:
        e_below, E, Cb, Hb, Wb, K = dummy, dummy, 0, 0, 0, 1
    if z.size:
        _launch(backend, "ngc_step", "ngc_correct_v1", _grid(z.size), BLOCK,
                (z, e_own, e_below, E, _i32(B), _i32(Cl), _i32(H), _i32(Wd), _i32(Cb), _i32(Hb), _i32(Wb),
                 _i32(K), _i32(s), _f32(beta), _f32(gamma), _f32(leak), _i32(has_own), _i32(has_below),
                 _i32(bool(pcn))))
    return z


def energy_(errors, out=None):
    """Eq. 3 as a positive energy per image, F = 1/2 sum_l ||e^l||^2 (== ngc_ref.model.energy) -> (B,).

    One ngc_energy_v1 launch per layer, in order, each adding its term: deterministic.
    out: optional (B,) C-contiguous float32 array to write into (e.g. a row of the energy trace).
    """
    errors = [e for e in errors if e is not None]
    backend = backend_of(*errors)
    B = errors[0].shape[0]
    out = _empty(backend, (B,)) if out is None else _out_buffer("energy_", out, (B,))
    if B == 0:
        return out
    first = True
    for e in errors:
        if e.shape[0] != B:
            raise ValueError("energy_: error arrays disagree on the batch size (%d vs %d)" % (e.shape[0], B))
        e, = _prep("energy_", backend, e=e)
        n = e.size // B
        if n == 0:
            continue
        _launch(backend, "ngc_step", "ngc_energy_v1", B, REDUCE_THREADS, (e, out, _i32(n), _i32(0 if first else 1)))
        first = False
    if first:
        out[...] = 0
    return out


def bias_grad(e):
    """db = sum of e over batch and space, per channel (ngc_ref.model.filter_updates' db): bias_reduce_v1."""
    backend = backend_of(e)
    if e.ndim != 4:
        raise ValueError("bias_grad: e must be (B, C, H, W), got %s" % (tuple(e.shape),))
    e, = _prep("bias_grad", backend, e=e)
    B, C, H, W = e.shape
    db = _empty(backend, (C,))
    if C:
        if B * H * W == 0:
            db[...] = 0
        else:
            _launch(backend, "optim", "bias_reduce_v1", C, REDUCE_THREADS, (e, db, _i32(B), _i32(C), _i32(H * W)))
    return db
