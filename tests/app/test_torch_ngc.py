"""bench/torch_ngc.py (the PyTorch baseline of the GPU benchmark) against ngc_ref, on the CPU in float64.

The benchmark's speedups only mean something if the baseline computes the same function, so its SAME
padding (explicit F.pad, not padding=1/output_padding=1), settling, filter updates and Adam step are
checked here against the reference on small awkward shapes.
"""
import importlib.util

import numpy as np
import pytest

from ngc_ref import model, ops, optim
from ngc_ref.config import Config

from helpers import REPO
from tolerances import TOL

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch); the baseline of "
                                            "bench/gpu_bench.py is untested, which is NOT a pass")

_spec = importlib.util.spec_from_file_location(
    "torch_ngc", REPO / "bench" / "torch_ngc.py")
tn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tn)

RTOL, ATOL = TOL["float64"]["rtol"], TOL["float64"]["atol"]     # float64 on both sides: only sum order differs
CONFIGS = {
    "paper": Config(),
    "K5_12x20": Config(channels=(4, 5, 2), image_hw=(12, 20), kernel=5, stride=2),
    "K1": Config(channels=(3, 4, 2), image_hw=(8, 12), kernel=1, stride=2),
    "K2_s3": Config(channels=(2, 3, 1), image_hw=(9, 18), kernel=2, stride=3),
    "stride1": Config(channels=(3, 2), image_hw=(5, 7), kernel=3, stride=1),
}


def t64(a):
    return torch.as_tensor(np.asarray(a, np.float64))


def close(a, b, what=""):
    np.testing.assert_allclose(a.detach().numpy() if hasattr(a, "detach") else a, b, rtol=RTOL, atol=ATOL,
                               err_msg=what)


@pytest.mark.parametrize("H,W,K,s", [(8, 8, 3, 2), (7, 10, 3, 2), (9, 9, 5, 3), (6, 5, 1, 2), (5, 7, 3, 1),
                                     (8, 12, 2, 2), (4, 4, 4, 2)])
def test_convs_match_ref(H, W, K, s):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, H, W))
    w = rng.standard_normal((4, 3, K, K))
    close(tn.conv2d(t64(x), t64(w), s), ops.conv2d(x, w, s), "conv2d")
    z = rng.standard_normal((2, 4, ops.conv_out_size(H, s), ops.conv_out_size(W, s)))
    close(tn.conv2d_transpose(t64(z), t64(w), s, (H, W)), ops.conv2d_transpose(z, w, s, (H, W)), "conv2d_transpose")


def test_pytorch_padding1_output_padding1_is_not_same():
    """Why torch_ngc pads by hand: padding=1, output_padding=1 shifts the grid by one pixel."""
    rng = np.random.default_rng(1)
    z, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 3, 3, 3))
    ref = ops.conv2d_transpose(z, w, 2)
    naive = torch.nn.functional.conv_transpose2d(t64(z), t64(w), stride=2, padding=1, output_padding=1)
    assert naive.shape == ref.shape and not np.allclose(naive.numpy(), ref)


def _problem(cfg, B, seed, learn_E=False):
    rng = np.random.default_rng(seed)
    p = model.init_params(cfg, rng, np.float64)
    p["b"] = [None] + [0.1 * rng.standard_normal(b.shape) for b in p["b"][1:]]
    p["E"] = ([None] + [0.1 * rng.standard_normal(w.shape) for w in p["W"][1:]]) if learn_E else None
    x = rng.random((B, cfg.layer_channels[0]) + cfg.map_hw(0))
    return p, x, model.draw_top(cfg, B, rng, np.float64)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("variant", ["ngc", "denoise", "pcn", "learn_E"])
def test_settle_and_update_match_ref(name, variant):
    cfg = CONFIGS[name]
    if variant == "pcn":
        cfg = Config(**{**cfg.to_dict(), "pcn": True})
    learn_E = variant == "learn_E"
    clamp = "first" if variant == "denoise" else "always"
    p, x, z_top = _problem(cfg, 2, 0, learn_E)
    ref = model.settle(p, x, cfg, z_top, T=5, clamp=clamp)
    pt = tn.to_torch(p, dtype=torch.float64)
    out = tn.settle(pt, t64(x), cfg, t64(z_top), T=5, clamp=clamp)
    close(out.energy, ref.energy, "energy")
    for l in range(cfg.L + 1):
        close(out.z[l], ref.z[l], "z^%d" % l)
        close(out.e[l], ref.e[l], "e^%d" % l)
    for l in range(cfg.L):
        close(out.zbar[l], ref.zbar[l], "zbar^%d" % l)

    d_ref = model.filter_updates(ref, p, cfg)
    d = tn.filter_updates(out, pt, cfg)
    for key in ("W", "b") + (("E",) if learn_E else ()):
        for l in range(1, cfg.L + 1):
            close(d[key][l], d_ref[key][l], "d%s[%d]" % (key, l))


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_optimizer_steps_match_ref(optimizer):
    """Three training batches (settle, filter updates, optimiser step, kernel projection) on both sides."""
    cfg = Config(channels=(4, 5, 2), image_hw=(12, 20), kernel=5, stride=2, optimizer=optimizer, lr=0.05,
                 learn_E=True)
    p, x, z_top = _problem(cfg, 2, 3, learn_E=True)
    pt = tn.to_torch(p, dtype=torch.float64)
    state = optim.init_state(p)
    opt = tn.Optimizer(pt, cfg)
    for _ in range(3):
        res = model.settle(p, x, cfg, z_top, T=5)
        optim.step(p, model.filter_updates(res, p, cfg), state, cfg)
        tn.train_step(pt, opt, t64(x), cfg, t64(z_top), T=5)
    for key in ("W", "b", "E"):
        for l in range(1, cfg.L + 1):
            close(pt[key][l], p[key][l], "%s[%d]" % (key, l))
