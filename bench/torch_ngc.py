"""Conv-NGC in eager PyTorch: the baseline the CUDA kernels are timed against (bench/gpu_bench.py).

The same math as ngc_ref.model (Eqs. 1-3, Algorithms 1-2), one cuDNN call per convolution:
  predict (Eq. 1)        F.conv_transpose2d(phi(z^l), W^l, stride s), cropped to TensorFlow's SAME grid
  bottom-up msg (Eq. 2)  F.conv2d(F.pad(e^{l-1}, SAME), E^l, stride s)
  dW (Alg. 2)            torch.nn.grad.conv2d_weight(F.pad(e^{l-1}, SAME), W.shape, phi(z^l), stride s)
SAME padding is done with an explicit F.pad (pt, pb, pl, pr as ngc_ref.ops.same_padding computes them:
for K=3, s=2 that is 0 before and 1 after). PyTorch's padding=1, output_padding=1 would pad 1 before and
shift the whole grid by one pixel, so it is NOT used.

Layouts are the reference's: NCHW, W^l (C_l, C_{l-1}, K, K). That is PyTorch's conv_transpose2d weight
layout (in, out, kH, kW) for Eq. 1 and its conv2d layout (out, in, kH, kW) for Eq. 2, so both read the
same stored tensor (E = W^T).

Run `python -m pytest tests/app/test_torch_ngc.py` for the check against ngc_ref (CPU, float64).
"""
import torch
import torch.nn.functional as F

from ngc_ref.model import error_filters, settle_steps
from ngc_ref.ops import same_padding

__all__ = ["to_torch", "conv2d", "conv2d_transpose", "predict", "predictions_and_errors", "correct",
           "energy", "init_states", "settle", "filter_updates", "Optimizer", "train_step"]


def to_torch(params, device="cpu", dtype=torch.float32):
    """ngc_ref params (lists of NumPy arrays, index 0 unused) -> the same structure of torch tensors."""
    def conv(v):
        return None if v is None else [None if a is None else torch.as_tensor(a).to(device=device, dtype=dtype)
                                       for a in v]
    return {k: conv(v) for k, v in params.items()}


def _same(n, K, s):
    return same_padding(int(n), int(K), int(s))


def conv2d(x, w, stride):
    """ngc_ref.ops.conv2d: SAME-padded strided correlation, (B, C_{l-1}, H, W) -> (B, C_l, ceil(H/s), ceil(W/s))."""
    K = w.shape[-1]
    pt, pb = _same(x.shape[2], K, stride)
    pl, pr = _same(x.shape[3], K, stride)
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, stride=stride)


def conv2d_transpose(z, w, stride, out_hw):
    """ngc_ref.ops.conv2d_transpose: the exact adjoint of conv2d over an input of size out_hw.

    The unpadded transposed conv covers the padded input grid of the forward conv, rows 0..(H-1)s+K-1;
    the SAME output is rows pt..pt+H_out-1 of it (zero rows appended when the pad after reaches further).
    """
    K = w.shape[-1]
    Ho, Wo = out_hw
    pt, _ = _same(Ho, K, stride)
    pl, _ = _same(Wo, K, stride)
    full = F.conv_transpose2d(z, w, stride=stride)                          # (B, C_{l-1}, (H-1)s+K, ...)
    extra_h = max(pt + Ho - full.shape[2], 0)
    extra_w = max(pl + Wo - full.shape[3], 0)
    if extra_h or extra_w:
        full = F.pad(full, (0, extra_w, 0, extra_h))
    return full[:, :, pt:pt + Ho, pl:pl + Wo]


# phi / phi_prime in PyTorch: one of four definitions, one per language; the list of what to change with the
# activation is above ngc_ref.model.phi.
def phi(z, leak):
    """Leaky ReLU: z if z > 0 else leak * z (ngc_ref.model.phi)."""
    return F.leaky_relu(z, leak)


def phi_prime(z, leak):
    return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, leak))


def predict(z_l, W_l, b, cfg, out_hw):
    """Eq. 1: zbar^{l-1} = g(W^l (transposed conv) phi(z^l) + b), g = identity."""
    return conv2d_transpose(phi(z_l, cfg.leak), W_l, cfg.stride, out_hw) + b[None, :, None, None]


def predictions_and_errors(z, params, cfg):
    L = cfg.L
    zbar = [predict(z[l], params["W"][l], params["b"][l], cfg, z[l - 1].shape[2:]) for l in range(1, L + 1)]
    e = [z[l] - zbar[l] for l in range(L)] + [torch.zeros_like(z[L])]
    return zbar, e


def correct(z, e, params, cfg, free_bottom=False):
    """Eq. 2: d^l = -e^l + E^l *_s e^{l-1} (x phi'(z^l) in PCN mode); z^l <- z^l + beta d^l - gamma z^l."""
    E = error_filters(params)
    new = list(z)
    for l in range(0 if free_bottom else 1, cfg.L + 1):
        d = -e[l]
        if l > 0:
            up = conv2d(e[l - 1], E[l], cfg.stride)
            d = d + (up * phi_prime(z[l], cfg.leak) if cfg.pcn else up)
        new[l] = z[l] + cfg.beta * d - cfg.gamma * z[l]
    return new


def energy(e):
    """Eq. 3 as a positive energy per image: 1/2 sum_l ||e^l||^2 -> (B,)."""
    return sum(0.5 * el.flatten(1).square().sum(1) for el in e)


def init_states(x, params, cfg, z_top):
    """Algorithm 1 lines 3-10: z^L given, z^l = zbar^l for l = L-1..1, z^0 = x."""
    L = cfg.L
    z = [None] * (L + 1)
    z[0], z[L] = x, z_top
    for l in range(L - 1, 0, -1):
        z[l] = predict(z[l + 1], params["W"][l + 1], params["b"][l + 1], cfg, cfg.map_hw(l))
    return z


@torch.no_grad()
def settle(params, x, cfg, z_top, T=None, clamp="always"):
    """Algorithm 1: same contract as ngc_ref.model.settle, tensors in and out (no host sync inside)."""
    T = cfg.T if T is None else T
    z = init_states(x, params, cfg, z_top)
    return settle_steps(z, T, lambda z: predictions_and_errors(z, params, cfg),
                        lambda z, e: correct(z, e, params, cfg, free_bottom=(clamp == "first")),
                        energy=energy, stack=torch.stack)


@torch.no_grad()
def filter_updates(res, params, cfg):
    """Algorithm 2 lines 9-10 (ngc_ref.model.filter_updates): displacements dW, db (and dE = lambda dW)."""
    K, s = cfg.kernel, cfg.stride
    dW, db = [None], [None]
    for l in range(1, cfg.L + 1):
        e, a = res.e[l - 1], phi(res.z[l], cfg.leak)
        pt, pb = _same(e.shape[2], K, s)
        pl, pr = _same(e.shape[3], K, s)
        w_shape = (a.shape[1], e.shape[1], K, K)
        dW.append(torch.nn.grad.conv2d_weight(F.pad(e, (pl, pr, pt, pb)), w_shape, a, stride=s))
        db.append(e.sum(dim=(0, 2, 3)))
    dE = ([None] + [cfg.lam * w for w in dW[1:]]) if params.get("E") is not None else None
    return {"W": dW, "b": db, "E": dE}


def _project(w, max_norm):
    """Rescale every K x K kernel whose Euclidean norm exceeds max_norm back to max_norm."""
    n = w.square().sum(dim=(2, 3), keepdim=True).sqrt()
    return w * torch.where(n > max_norm, max_norm / n.clamp_min(1e-30), torch.ones_like(n))


class Optimizer:
    """ngc_ref.optim.step: Adam on grad = -displacement (or the normalised step), then kernel projection."""

    def __init__(self, params, cfg):
        self.cfg, self.t = cfg, 0
        self.keys = [k for k in ("W", "b", "E") if params.get(k) is not None]
        self.m = {k: [None] + [torch.zeros_like(p) for p in params[k][1:]] for k in self.keys}
        self.v = {k: [None] + [torch.zeros_like(p) for p in params[k][1:]] for k in self.keys}

    @torch.no_grad()
    def step(self, params, deltas):
        cfg = self.cfg
        self.t += 1
        b1, b2, t = cfg.adam_b1, cfg.adam_b2, self.t
        for k in self.keys:
            for l in range(1, len(params[k])):
                p, d = params[k][l], deltas[k][l]
                if cfg.optimizer == "adam":
                    g = -d
                    m, v = self.m[k][l], self.v[k][l]
                    m.mul_(b1).add_((1 - b1) * g)
                    v.mul_(b2).add_((1 - b2) * g * g)
                    mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
                    p = p - cfg.lr * mhat / (vhat.sqrt() + cfg.adam_eps)
                else:
                    axes = (2, 3) if k != "b" else tuple(range(d.dim()))
                    n = d.square().sum(dim=axes, keepdim=(k != "b")).sqrt()
                    p = p + cfg.lr * d / (n + cfg.norm_eps)
                if k != "b":
                    p = _project(p, cfg.max_kernel_norm)
                params[k][l] = p
        return params


def train_step(params, opt, x, cfg, z_top, T=None):
    """One training batch: settle (clamped), filter displacements, optimiser step. Returns the SettleResult."""
    res = settle(params, x, cfg, z_top, T)
    opt.step(params, filter_updates(res, params, cfg))
    return res
