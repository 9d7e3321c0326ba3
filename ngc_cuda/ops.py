"""ngc_ref.ops on the kernels: the same names, signatures and results, computed in float32.

    conv2d(x, w, stride=2)                     kernels/conv2d.cu             conv2d_fwd_v1
    conv2d_transpose(z, w, stride=2, out_hw)   kernels/conv2d_transpose.cu   conv2d_transpose_fwd_v1
    conv2d_weight_grad(e, a, K, stride=2)      kernels/conv2d_weight_grad.cu conv2d_weight_grad_v1

and the two reductions of the filter updates (Sec. 3.2), which ngc_cuda.model.filter_updates runs:
    conv2d_weight_grad_phi(e, z, K, stride, leak, mean)   conv2d_weight_grad_v1 with phi applied to z inside
    bias_grad(e, pixel, mean)                             kernels/optim.cu       bias_grad_v1

NumPy arrays in -> the kernels run on the CPU emulator (backend "cuda-emu") -> NumPy out; CuPy arrays in
-> the kernels run on the GPU (backend "cuda") -> CuPy out. `backend=` names it instead (backend.py). Each
public function is an entry: it decides the device and checks its arguments once (checks.py); the
launches of the two reductions, launch_weight_grad and launch_bias_grad, trust them (model.filter_updates
checks its arguments once and calls those). The per-step model kernels (kernels/ngc_step.cu) have their
wrappers in ngc_step.py.
"""
from ngc_ref import checks as ref_checks
from ngc_ref.ops import conv_out_size, same_padding  # noqa: F401  (one SAME rule for both backends)

from . import checks
from .backend import resolve
from .launch import BLOCK, REDUCE_THREADS, f32, grid, i32

__all__ = ["conv2d", "conv2d_transpose", "conv2d_weight_grad", "conv2d_weight_grad_phi", "bias_grad",
           "conv_out_size", "same_padding"]


def conv2d(x, w, stride=2, backend=None):
    """Strided SAME convolution `*_s` (Eq. 2): == ngc_ref.ops.conv2d, kernel conv2d_fwd_v1.

    x: (B, C_{l-1}, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_l, ceil(H/s), ceil(W/s)), float32.
    """
    dev = resolve(backend, x, w)
    s = checks.stride("conv2d", stride)
    ref_checks.check_filters("conv2d", x, w, x.shape[1] == w.shape[1], "conv2d: x has %d channels, w expects %d"
                             % (x.shape[1], w.shape[1]))
    x, w = checks.inputs("conv2d", dev, x=x, w=w)
    B, Cin, H, W = x.shape
    Cout, K = w.shape[0], w.shape[-1]
    out = dev.empty((B, Cout, conv_out_size(H, s), conv_out_size(W, s)))
    if out.size:
        dev.launch("conv2d", "conv2d_fwd_v1", grid(out.size), BLOCK,
                   (x, w, out, i32(B), i32(Cin), i32(H), i32(W), i32(Cout), i32(K), i32(s)))
    return out


def conv2d_transpose(z, w, stride=2, out_hw=None, backend=None):
    """Transposed convolution `⊙_s` (Eq. 1), the adjoint of conv2d: == ngc_ref.ops.conv2d_transpose,
    kernel conv2d_transpose_fwd_v1 (a gather; no dilated copy is built).

    z: (B, C_l, H, W), w: (C_l, C_{l-1}, K, K) -> (B, C_{l-1}, H_out, W_out), H_out = s*H unless
    out_hw names the size of the layer below.
    """
    dev = resolve(backend, z, w)
    s = checks.stride("conv2d_transpose", stride)
    ref_checks.check_filters("conv2d_transpose", z, w, z.shape[1] == w.shape[0],
                             "conv2d_transpose: z has %d channels, w expects %d" % (z.shape[1], w.shape[0]))
    B, Cz, H, W = z.shape
    Cout, K = w.shape[1], w.shape[-1]
    Ho, Wo = ref_checks.check_out_hw("conv2d_transpose", H, W, s, out_hw)
    z, w = checks.inputs("conv2d_transpose", dev, z=z, w=w)
    out = dev.empty((B, Cout, Ho, Wo))
    if out.size:
        dev.launch("conv2d_transpose", "conv2d_transpose_fwd_v1", grid(out.size), BLOCK,
                   (z, w, out, i32(B), i32(Cz), i32(H), i32(W), i32(Cout), i32(Ho), i32(Wo), i32(K), i32(s)))
    return out


def conv2d_weight_grad(e, a, K, stride=2, backend=None):
    """Sec. 3.2 / Alg. 2 line 9, dW_ij = e_j *_1 Dilate(a_i, s) summed over the batch:
    == ngc_ref.ops.conv2d_weight_grad, kernel conv2d_weight_grad_v1 (deterministic block reduction).

    e: (B, C_{l-1}, Ho, Wo), a: (B, C_l, ceil(Ho/s), ceil(Wo/s)) -> (C_l, C_{l-1}, K, K).
    Stricter than the reference: a's spatial size must be ceil(e's / s) (ValueError otherwise).
    """
    dev = resolve(backend, e, a)
    e, a, K, s = checks.weight_grad("conv2d_weight_grad", e, a, K, stride, dev)
    return launch_weight_grad(e, a, K, s, False, 0.0, False, device=dev)


def conv2d_weight_grad_phi(e, z, K, stride, leak, mean=False, backend=None):
    """conv2d_weight_grad(e, phi(z), K, stride) with phi = leaky ReLU applied inside the kernel: the dW of
    ngc_ref.model.filter_updates; mean=True divides it by the batch size (cfg.reduce = "mean")."""
    dev = resolve(backend, e, z)
    e, z, K, s = checks.weight_grad("conv2d_weight_grad_phi", e, z, K, stride, dev)
    return launch_weight_grad(e, z, K, s, True, leak, mean, device=dev)


def bias_grad(e, pixel=False, mean=False, backend=None):
    """db of ngc_ref.model.filter_updates (bias_grad_v1): the sum of e over batch and space per channel,
    (C,); pixel=True (cfg.bias = "pixel"): over the batch only, a bias map (C, H, W); mean=True divides
    by the batch size (cfg.reduce = "mean")."""
    dev = resolve(backend, e)
    if e.ndim != 4:
        raise ValueError("bias_grad: e must be (B, C, H, W), got %s" % (tuple(e.shape),))
    e, = checks.inputs("bias_grad", dev, e=e)
    return launch_bias_grad(e, pixel, mean, device=dev)


# ---- below the entry: the launches, on checked arguments -------------------------------------------------
def launch_weight_grad(e, a, K, s, apply_phi, leak, mean, *, device):
    """conv2d_weight_grad_v1: dW (C_l, C_{l-1}, K, K) from e (B, C_{l-1}, Ho, Wo) and a (B, C_l, ceil(Ho/s),
    ceil(Wo/s)), C-contiguous float32 arrays of the device; phi(a) when apply_phi; divided by B when mean."""
    B, Ce, He, We = e.shape
    Ca = a.shape[1]
    dW = device.empty((Ca, Ce, K, K))
    if dW.size:
        if B * He * We == 0:
            dW[...] = 0
        else:
            device.launch("conv2d_weight_grad", "conv2d_weight_grad_v1", Ca * Ce, REDUCE_THREADS,
                          (e, a, dW, i32(B), i32(Ce), i32(He), i32(We), i32(Ca), i32(K), i32(s), i32(apply_phi),
                           f32(leak), i32(B if mean else 1)))
    return dW


def launch_bias_grad(e, pixel, mean, *, device):
    """bias_grad_v1: the sum of e (B, C, H, W), a C-contiguous float32 array of the device, over batch and
    space (C,), or over the batch only, a bias map (C, H, W) when pixel; divided by B when mean."""
    B, C, H, W = e.shape
    db = device.empty((C, H, W) if pixel else (C,))
    # a bias map is the same reduction with every (channel, pixel) a channel of one pixel
    n_out, n_in = (C * H * W, 1) if pixel else (C, H * W)
    if db.size:
        if B * n_in == 0:
            db[...] = 0
        else:
            device.launch("optim", "bias_grad_v1", n_out, REDUCE_THREADS,
                          (e, db, i32(B), i32(n_out), i32(n_in), i32(B if mean else 1)))
    return db
